"""The product's Milvus settings: deploy/milvus/user.yaml, the one place they live.

`make run` merges them into the milvus.yaml it renders (devstack/milvus_server.py), docker-compose.yml mounts
the file as /milvus/configs/user.yaml (Milvus's own override file), and the benchmarks run on `make run`'s
server, so their figures are what a user gets.
"""

from __future__ import annotations

from pathlib import Path

PRODUCT_SETTINGS = Path(__file__).resolve().parent.parent / "deploy" / "milvus" / "user.yaml"
CONTAINER_DATA = Path("/var/lib/milvus")  # Milvus's data volume in docker-compose.yml


def product_settings() -> dict:
    """The product's Milvus settings (deploy/milvus/user.yaml), the same for make run, compose and benchmarks."""
    import yaml

    return yaml.safe_load(PRODUCT_SETTINGS.read_text()) or {}


def dotted(settings: dict[str, object]) -> dict:
    """{"queryNode.enableDisk": True} -> {"queryNode": {"enableDisk": True}}."""
    out: dict = {}
    for key, value in settings.items():
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def apply_product_settings(milvus_yaml: str, extra: dict[str, object] | None = None,
                           data_dir: Path | None = None) -> str:
    """milvus.yaml with the product's settings merged in (nested keys; the template's comments are lost),
    then `extra` (dotted keys, any key: a benchmark's or a test's variant). With `data_dir` (make run's server),
    `queryNode.mmapDirPath` goes under it: a relative path, or the product's one on the compose volume
    (/var/lib/milvus/...); "" leaves mmap off."""
    import yaml

    config = yaml.safe_load(milvus_yaml)

    def merge(into: dict, extra: dict) -> None:
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    merge(config, product_settings())
    merge(config, dotted(extra or {}))
    node = config.get("queryNode") or {}
    mmap = Path(str(node.get("mmapDirPath") or ""))
    if data_dir is not None and str(mmap) not in ("", "."):
        if mmap.is_relative_to(CONTAINER_DATA):  # the product's path on the compose volume
            mmap = mmap.relative_to(CONTAINER_DATA)
        node["mmapDirPath"] = str(mmap if mmap.is_absolute() else Path(data_dir) / mmap)
    return yaml.safe_dump(config, sort_keys=False)
