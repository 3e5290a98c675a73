"""THE mapping from an image name to a file under IMAGE_ROOT; nothing else touches catalogue paths.

A name is a relative path such as `cats/1.jpg`. Names that are absolute, contain `..`, `.`, empty
segments, backslashes or control characters are refused; a path that leaves IMAGE_ROOT through a
symlink is refused too (checked on the real path). Readers get None (the view answers 404, revealing
nothing); writers get BadName with the reason.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import quote

NAME_MAX_BYTES = 1024  # the collection's VARCHAR primary key limit
SEGMENT_MAX_BYTES = 255  # common file-system limit for one path component

# Image types we serve as images; anything else goes out as an opaque download.
_SIGNATURES = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


class BadName(ValueError):
    """An image name that cannot be stored; the message says why."""


def check_name(name: str) -> str:
    """Return `name` when it is a safe relative path, else raise BadName naming the problem."""
    if not isinstance(name, str) or not name.strip():
        raise BadName("the image name is empty; give a relative path such as 'cats/1.jpg'")
    if len(name.encode("utf-8", "surrogatepass")) > NAME_MAX_BYTES:
        raise BadName(f"the image name is longer than {NAME_MAX_BYTES} bytes")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise BadName("the image name contains control characters (NUL, newline, ...)")
    if "\\" in name:
        raise BadName("the image name contains a backslash; use '/' between folders")
    if name.startswith("/"):
        raise BadName("the image name is an absolute path; give a path relative to IMAGE_ROOT")
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise BadName(f"the image name {name!r} has an empty, '.' or '..' segment")
        if len(part.encode("utf-8", "surrogatepass")) > SEGMENT_MAX_BYTES:
            raise BadName(f"a folder or file name in {name!r} is longer than {SEGMENT_MAX_BYTES} bytes")
    return name


def file_url(name: str) -> str:
    """The URL the service serves the image `name` at."""
    return "/v1/images/" + quote(name, safe="/") + "/file"


def sniff_mimetype(head: bytes) -> str | None:
    """The image type of a file from its first bytes, or None when it is not one we serve as an image."""
    for magic, mime in _SIGNATURES:
        if head.startswith(magic):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


class ImageFiles:
    """Catalogue files under one root directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def _real_root(self) -> str:
        return os.path.realpath(self.root)

    def _inside(self, path: str) -> bool:
        root = self._real_root()
        return os.path.commonpath([root, path]) == root and path != root

    def find(self, name: str) -> Path | None:
        """The existing regular file for `name`, or None for a bad name, a missing file or an escape."""
        try:
            check_name(name)
        except BadName:
            return None
        real = os.path.realpath(os.path.join(self._real_root(), name))
        if not self._inside(real) or not os.path.isfile(real):
            return None
        return Path(real)

    def stage(self, name: str, data: bytes) -> Path:
        """Write `data` to a temporary file next to where `name` will live; `commit` moves it in place.

        Staging first means a failed database write leaves no orphan file and a replaced image is
        never half-written.
        """
        check_name(name)
        root = self._real_root()
        parent = os.path.dirname(os.path.join(root, name))
        # Check before creating folders (a symlinked folder must not get new folders outside), and after.
        for _ in range(2):
            real_parent = os.path.realpath(parent)
            if not (real_parent == root or self._inside(real_parent)):
                raise BadName(f"the image name {name!r} leads outside IMAGE_ROOT")
            os.makedirs(real_parent, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=real_parent, prefix=".upload-", suffix=".part")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return Path(tmp)

    def commit(self, staged: Path, name: str) -> Path:
        """Move a staged file to its final place (atomic; replaces a symlink itself, never its target)."""
        final = os.path.join(os.path.dirname(staged), os.path.basename(name))
        os.replace(staged, final)
        return Path(final)

    def discard(self, staged: Path) -> None:
        """Remove a staged file after a failed write."""
        try:
            os.unlink(staged)
        except FileNotFoundError:
            pass

    def remove(self, name: str) -> bool:
        """Delete the file (or symlink) at `name` under the root; returns whether one was removed.

        A symlink is removed itself, never its target, wherever it points; folders on the way must stay
        inside the root.
        """
        try:
            check_name(name)
        except BadName:
            return False
        path = os.path.join(self._real_root(), name)
        parent = os.path.realpath(os.path.dirname(path))
        if not (parent == self._real_root() or self._inside(parent)):
            return False
        if not (os.path.islink(path) or os.path.isfile(path)):
            return False
        os.unlink(os.path.join(parent, os.path.basename(name)))
        return True
