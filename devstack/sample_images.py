"""The sample catalogue for `make run`: real photographs that are available offline.

By default the photos shipped inside scikit-image's wheel (astronaut, cat, coffee, rocket, ...); set
IMAGES=/some/folder to use your own pictures instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}

# Photographs, not synthetic test patterns (skimage also ships checkerboards and text scans).
SKIMAGE_PHOTOS = (
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "motorcycle_right.png",
    "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "camera.png", "coins.png", "horse.png", "moon.png",
    "brick.png", "grass.png", "gravel.png", "cell.png", "color.png", "page.png", "logo.png",
)


def skimage_photos() -> list[Path]:
    """Paths of the sample photographs inside the installed scikit-image package."""
    import skimage

    data = Path(skimage.__file__).parent / "data"
    return [data / n for n in SKIMAGE_PHOTOS if (data / n).exists()]


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively, sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def populate(image_root: Path, source: Path | None = None) -> list[Path]:
    """Copy the sample photos (or `source`'s images) into `image_root`; returns the copied files."""
    image_root.mkdir(parents=True, exist_ok=True)
    if source is not None:
        files = list_images(source)
        if not files:
            raise SystemExit(f"IMAGES={source} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        pairs = [(f, image_root / f.relative_to(source)) for f in files]
    else:
        pairs = [(f, image_root / f.name) for f in skimage_photos()]
    for src, dst in pairs:
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return [dst for _, dst in pairs]
