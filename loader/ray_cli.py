"""The `--engine ray` half of `extract` and `index`: its options and the calls behind them.

cli.py keeps the verbs; this module adds the options only the Ray job takes and runs it, so the CLI
imports neither Ray nor the extractor's model code unless `--engine ray` is given.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import click

from loader.object_store import S3Target
from loader.progress import Summary

ENGINES = ("http", "ray")


def engine_options(fn):
    """--engine and the Ray job's options (ignored by the http engine)."""

    @click.option("--engine", type=click.Choice(ENGINES), default="http", show_default=True,
                  help="http: images through the extractor service (EXTRACTOR_URL); ray: a Ray Data job that runs "
                       "the extractor's model itself, here or on a cluster, and writes HDF5 shards.")
    @click.option("--ray-address", envvar="RAY_ADDRESS", default=None,
                  help="Ray: the cluster to run on (env RAY_ADDRESS); default: start Ray on this machine (127.0.0.1).")
    @click.option("--model", default=None,
                  help="Ray: backbone (as EXTRACTOR_MODEL: auto, vgg16, resnet50, densenet121, efficientnet-lite0); "
                       "weights, input size and precision come from EXTRACTOR_WEIGHTS/_INPUT_SIZE/_PRECISION.")
    @click.option("--images-per-batch", type=click.IntRange(1, 4096), default=32, show_default=True,
                  help="Ray: images per model call (and per decode task batch).")
    @click.option("--actors", type=click.IntRange(1, 4096), default=None,
                  help="Ray: model actors (default: one per GPU of the cluster, else 1).")
    @click.option("--shard-size", type=click.IntRange(1, 10_000_000), default=10_000, show_default=True,
                  help="Ray: images per HDF5 shard (the unit a rerun skips).")
    @click.option("--num-cpus", type=click.IntRange(1, 4096), default=None,
                  help="Ray started here: CPUs it may use (default: all).")
    @click.option("--object-store-mb", type=click.IntRange(100, 10_000_000), default=300, show_default=True,
                  help="Ray started here: object store size in MB.")
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


def ray_job_options(kw: dict, quiet: bool):
    """The Ray job's options from the CLI's keyword arguments."""
    from loader.ray_job import RayJobOptions

    return RayJobOptions(model=kw["model"], batch_size=kw["images_per_batch"], actors=kw["actors"],
                         shard_size=kw["shard_size"], address=kw["ray_address"] or None, num_cpus=kw["num_cpus"],
                         object_store_mb=kw["object_store_mb"], quiet=quiet)


def s3_settings(endpoint: str | None) -> S3Target | None:
    """The loader's S3 settings (S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, S3_SECURE) for an s3:// SOURCE."""
    from loader.settings import env

    settings = env()
    endpoint = endpoint or settings.s3_endpoint
    if not endpoint:
        return None
    return S3Target(endpoint=endpoint.split("://", 1)[-1].rstrip("/"), access_key=settings.s3_access_key,
                    secret_key=settings.s3_secret_key, secure=settings.s3_secure)


def run_extract(source: str, output: str, kw: dict, quiet: bool) -> Summary:
    """`extract SOURCE -o OUT --engine ray`; expected failures become one `Error:` line."""
    from loader.hdf5 import LayoutError
    from loader.ray_job import FingerprintChanged, extract_ray
    from loader.sources import SourceError, open_source

    try:
        from extractor_service.backbones import WeightsError
    except ImportError:  # the extractor's code is not installed here
        raise click.ClickException("--engine ray needs the extractor's code and its requirements "
                                   "(pip install -r requirements/extractor.txt)") from None
    try:
        src = open_source(source, s3_settings(kw.get("s3_endpoint")))
        return extract_ray(src, output, ray_job_options(kw, quiet))
    except (SourceError, LayoutError, WeightsError, FingerprintChanged, RuntimeError) as exc:
        raise click.ClickException(" ".join(str(exc).split())) from None
    except ValueError as exc:  # a bad EXTRACTOR_* variable (pydantic names it)
        raise click.UsageError(" ".join(str(exc).split())) from None


def work_folder_for(source: str, state_dir: str | Path | None = None) -> Path:
    """The shards folder `index SOURCE --engine ray` keeps (so a rerun skips finished shards)."""
    from loader.state import default_state_dir

    key = source if source.startswith("s3://") else str(Path(source).resolve())
    return Path(state_dir or default_state_dir()) / f"index-ray-{hashlib.sha1(key.encode()).hexdigest()[:16]}"


def import_shards(out: str | Path, catalog, opts) -> Summary:
    """Import OUT's finished shards in order, each as `loader import SHARD.h5` would; returns their totals."""
    from loader.importer import import_h5
    from loader.shards import load_manifest

    manifest = load_manifest(Path(out))
    total = Summary()
    for shard in manifest.shards if manifest else []:
        part = import_h5(Path(out) / shard["file"], catalog, opts, Summary())
        total.read += part.read
        total.imported += part.imported
        total.skipped.update(part.skipped)
        total.index_seconds = part.index_seconds
    return total.stop()
