"""`python -m loader import|extract|index`: a thin click CLI over the library.

Options come from flags or the environment (MILVUS_URI, MILVUS_TOKEN, COLLECTION, EXTRACTOR_URL).
Every expected failure is one `Error: ...` line that says what to do, with exit code 1; the final
summary line goes to stdout.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import click

from catalog import Catalog, CatalogError
from catalog.errors import CallFailed, MilvusUnavailable, NotLoaded
from extractor_client import ExtractorRejected, ExtractorUnavailable
from catalog.schema import INDEX_TYPES, IndexSpec, parse_scalar_fields
from loader.meta import MetaError
from loader.settings import LoaderSettings, env
from loader.bulk_files import FORMATS
from loader.hdf5 import LayoutError
from loader.importer import import_h5
from loader.object_store import S3Target
from loader.options import ImportOptions
from loader.progress import Summary
from loader.ray_cli import engine_options, import_shards, run_extract, work_folder_for


def _fail(exc: Exception, uri: str = "") -> click.ClickException:
    """Turn an expected failure into one line that says what to do."""
    if isinstance(exc, MilvusUnavailable) and exc.call == "connect":
        text = f"cannot reach Milvus at {uri}: start it (make run, or docker compose up) or set MILVUS_URI / --milvus-uri"
    elif isinstance(exc, (MilvusUnavailable, CallFailed, NotLoaded)):
        # Milvus went away or kept refusing during the run, after the retries: the run is resumable.
        text = (f"Milvus at {uri} failed during {exc.call} ({exc.detail[:160]}); the import is resumable: run "
                "the same command again once Milvus is back")
    else:
        text = " ".join(str(exc).split())
    return click.ClickException(text)


def _settings() -> LoaderSettings:
    """The environment's settings; a bad variable is a usage error that names it (exit code 2)."""
    try:
        return env()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _env(field: str):
    """A click default read from the environment (loader/settings.py) when the option is not given."""
    return lambda: getattr(_settings(), field)


def milvus_options(fn):
    """--collection, --milvus-uri, --token."""

    @click.option("--collection", default=_env("collection"), show_default="images",
                  help="Collection name (env COLLECTION).")
    @click.option("--milvus-uri", default=_env("milvus_uri"), show_default="http://127.0.0.1:19530",
                  help="Milvus endpoint (env MILVUS_URI).")
    @click.option("--token", default=_env("milvus_token"), help="Milvus credentials (env MILVUS_TOKEN).")
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


def import_options(fn):
    """Options shared by `import` and `index`."""

    @click.option("--fingerprint", default=None, help="Feature fingerprint of the vectors (overrides the file's).")
    @click.option("--force", is_flag=True, help="Import even if the fingerprint differs from the collection's.")
    @click.option("--mode", type=click.Choice(["insert", "bulk"]), default="insert", show_default=True,
                  help="insert: batched upserts (any Milvus); bulk: column files + server import jobs.")
    @click.option("--batch-size", type=click.IntRange(1, 100_000), default=10_000, show_default=True,
                  help="Rows per upsert call / per chunk read.")
    @click.option("--in-flight", type=click.IntRange(1, 16), default=ImportOptions.in_flight, show_default=True,
                  help="Insert mode: write calls outstanding at once (4 was fastest against a local Milvus).")
    @click.option("--index", "index_type", type=click.Choice(INDEX_TYPES, case_sensitive=False), default="HNSW",
                  show_default=True,
                  help="Index built after the data lands (when the collection has none). Compact: IVF_SQ8, IVF_PQ, "
                       "DISKANN (servers built with it), or BIN_ITQ256 / BIN_ITQ512: binary codes learned from the "
                       "file, Hamming search, exact re-ranking (chosen when the import creates the collection; "
                       "docs/SCALING.md).")
    @click.option("--code-sample", type=click.IntRange(1000, 10_000_000), default=100_000, show_default=True,
                  help="BIN_ITQ*: rows the codes are learned from (evenly spaced through the file).")
    @click.option("--rerank-floats", type=click.Choice(["int8", "float32"]), default="int8", show_default=True,
                  help="BIN_ITQ*: how the vectors for re-ranking are stored: a byte a dimension (scores within "
                       "~1e-3 of exact, a quarter of the memory) or float32 (exact).")
    @click.option("--index-params", default=None, help='Index build parameters as JSON, e.g. \'{"M": 32}\'.')
    @click.option("--bulk-dir", type=click.Path(file_okay=False), default=None,
                  help="Bulk mode: a directory the Milvus server can read (its local storage path).")
    @click.option("--bulk-rows", type=click.IntRange(1000, 2_000_000), default=1_000_000, show_default=True,
                  help="Bulk mode: rows per import job.")
    @click.option("--bulk-format", type=click.Choice(FORMATS), default="npy", show_default=True,
                  help="Bulk mode: .npy column files (fastest here) or Parquet.")
    @click.option("--s3-endpoint", default=_env("s3_endpoint"),
                  help="Bulk mode on object storage: Milvus's MinIO/S3 as host:port (env S3_ENDPOINT); files "
                       "are staged in --bulk-dir or the state dir, then uploaded.")
    @click.option("--s3-bucket", default=_env("s3_bucket"), show_default="a-bucket",
                  help="Milvus's bucket (its minio.bucketName; env S3_BUCKET).")
    @click.option("--s3-prefix", default=_env("s3_prefix"), show_default="bulk-import",
                  help="Key prefix of the uploaded files (deleted once imported; env S3_PREFIX).")
    @click.option("--s3-access-key", default=_env("s3_access_key"), show_default="minioadmin",
                  help="env S3_ACCESS_KEY.")
    @click.option("--s3-secret-key", default=_env("s3_secret_key"), show_default=False,
                  help="env S3_SECRET_KEY (default minioadmin).")
    @click.option("--s3-secure/--no-s3-secure", default=_env("s3_secure"), show_default="no-s3-secure",
                  help="HTTPS to the object store (env S3_SECURE).")
    @click.option("--state-dir", type=click.Path(file_okay=False), default=None,
                  help="Where resume records live (env LOADER_STATE_DIR; default ~/.cache/image-search/loader).")
    @click.option("--retry-seconds", type=float, default=60.0, show_default=True,
                  help="How long to wait for a lost Milvus before giving up (the run stays resumable).")
    @click.option("--scalar-field", "scalar_fields", multiple=True, metavar="NAME[:TYPE]",
                  help="Declare a meta key as a real scalar field with an index, for fast filters (TYPE: str, int, "
                       "float, bool; default str). Repeat for several; only when the import creates the collection.")
    @click.option("--meta", type=click.Path(dir_okay=False), default=None,
                  help="Per-image meta: a JSON lines file ({\"name\": ..., ...}) or a CSV with a 'name' column.")
    @click.option("--quiet", "-q", is_flag=True, help="No progress bar or log lines; the summary line only.")
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


def _index_spec(index_type: str, index_params: str | None) -> IndexSpec:
    try:
        params = json.loads(index_params) if index_params else {}
    except ValueError as exc:
        raise click.BadParameter(f"not JSON ({exc}); e.g. '{{\"M\": 32}}'", param_hint="--index-params")
    if not isinstance(params, dict):
        raise click.BadParameter("must be a JSON object, e.g. '{\"M\": 32}'", param_hint="--index-params")
    return IndexSpec(index_type.upper(), build_params=params)


def _s3_target(kw: dict) -> S3Target | None:
    if not kw["s3_endpoint"]:
        return None
    endpoint = kw["s3_endpoint"].split("://", 1)[-1].rstrip("/")  # the minio SDK wants host:port
    return S3Target(endpoint=endpoint, access_key=kw["s3_access_key"], secret_key=kw["s3_secret_key"],
                    bucket=kw["s3_bucket"], prefix=kw["s3_prefix"], secure=kw["s3_secure"])


def _import_opts(kw: dict, **more) -> ImportOptions:
    return ImportOptions(
        fingerprint=kw["fingerprint"], force=kw["force"], mode=kw["mode"], batch_size=kw["batch_size"],
        in_flight=kw["in_flight"],
        index=_index_spec(kw["index_type"], kw["index_params"]), bulk_dir=kw["bulk_dir"],
        bulk_rows=kw["bulk_rows"], bulk_format=kw["bulk_format"], bulk_s3=_s3_target(kw),
        state_dir=kw["state_dir"], retry_seconds=kw["retry_seconds"], quiet=kw["quiet"],
        restart_grace=_settings().restart_grace, scalar_fields=_scalar_fields(kw["scalar_fields"]),
        meta=kw["meta"], code_sample=kw["code_sample"], floats_encoding=kw["rerank_floats"], **more,
    )


def _scalar_fields(specs: tuple[str, ...]) -> dict[str, str]:
    try:
        return parse_scalar_fields(list(specs))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scalar-field") from None


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.ERROR if quiet else logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)  # its RPC errors reach the user as one line


@click.group()
@click.version_option(package_name="image-search", message="%(version)s")
def cli() -> None:
    """Bulk loader: HDF5 feature files and image folders into the Milvus catalogue."""


@cli.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--vectors", default=None, help="Dataset holding the N x D vectors (default: dataset_1 or auto).")
@click.option("--names", default=None, help="Dataset holding the N names (default: dataset_2 or auto).")
@click.option("--dry-run", is_flag=True, help="Check every row and print the summary; write nothing.")
@milvus_options
@import_options
def import_cmd(file, vectors, names, dry_run, collection, milvus_uri, token, **kw):
    """Import FILE.h5 (classic layout: dataset_1 vectors, dataset_2 names) into the collection."""
    _setup_logging(kw["quiet"])
    opts = _import_opts(kw, vectors=vectors, names=names, dry_run=dry_run)
    catalog = None if dry_run else Catalog(milvus_uri, token, collection)
    try:
        summary = import_h5(file, catalog, opts)
    except (LayoutError, CatalogError, MetaError) as exc:
        raise _fail(exc, milvus_uri) from None
    finally:
        if catalog is not None:
            catalog.close()
    click.echo(summary.line())


@cli.command("extract")
@click.argument("source")
@click.option("-o", "--output", type=click.Path(), required=True,
              help="HDF5 file to write (http engine); a folder of HDF5 shards and a manifest (ray engine).")
@click.option("--extractor-url", default=_env("extractor_url"), show_default="http://127.0.0.1:8001",
              help="Extractor service URL(s), comma-separated (env EXTRACTOR_URL).")
@click.option("--concurrency", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Extract requests in flight.")
@click.option("--images-per-request", type=click.IntRange(1, 256), default=8, show_default=True)
@engine_options
@click.option("--s3-endpoint", default=None, help="Ray, SOURCE s3://BUCKET/PREFIX: the object store as host:port "
              "(env S3_ENDPOINT; credentials S3_ACCESS_KEY / S3_SECRET_KEY, S3_SECURE).")
@click.option("--quiet", "-q", is_flag=True)
def extract_cmd(source, output, extractor_url, concurrency, images_per_request, engine, quiet, **kw):
    """Extract features of the images of SOURCE into OUTPUT (classic layout); reruns resume.

    SOURCE is a folder (http and ray engines), or with --engine ray also a text file listing image paths
    or s3://BUCKET/PREFIX.
    """
    from loader.extract import extract_dir

    _setup_logging(quiet)
    if engine == "ray":
        click.echo(run_extract(source, output, kw, quiet).line())
        return
    try:
        summary = extract_dir(source, output, extractor_url, concurrency=concurrency,
                              per_request=images_per_request, quiet=quiet)
    except (LayoutError, ExtractorUnavailable, ExtractorRejected, FileNotFoundError, NotADirectoryError) as exc:
        raise _fail(exc) from None
    click.echo(summary.line())


@cli.command("index")
@click.argument("directory")
@click.option("--extractor-url", default=_env("extractor_url"), show_default="http://127.0.0.1:8001",
              help="Extractor service URL(s), comma-separated (env EXTRACTOR_URL).")
@click.option("--concurrency", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--images-per-request", type=click.IntRange(1, 256), default=8, show_default=True)
@click.option("--work-file", type=click.Path(), default=None,
              help="Intermediate HDF5 file, or shards folder with --engine ray (default: in the state dir).")
@milvus_options
@import_options
@engine_options
def index_cmd(directory, extractor_url, concurrency, images_per_request, work_file, collection, milvus_uri,
              token, engine, **kw):
    """Extract the images of DIRECTORY (with --engine ray: or a list file, or s3://BUCKET/PREFIX) and import them."""
    from loader.extract import extract_dir, work_file_for

    _setup_logging(kw["quiet"])
    opts = _import_opts(kw)
    catalog = Catalog(milvus_uri, token, collection)
    try:
        catalog.exists()  # fail fast, before minutes of extraction, when Milvus is not there
        if engine == "ray":
            work = Path(work_file) if work_file else work_folder_for(directory, kw["state_dir"])
            ext = run_extract(directory, str(work), kw, kw["quiet"])
            summary = import_shards(work, catalog, opts)  # each shard as `loader import SHARD.h5` would
        else:
            work = Path(work_file) if work_file else work_file_for(directory, kw["state_dir"])
            ext = extract_dir(directory, work, extractor_url, concurrency=concurrency,
                              per_request=images_per_request, quiet=kw["quiet"])
            summary = import_h5(work, catalog, opts, Summary())
    except (LayoutError, CatalogError, MetaError, ExtractorUnavailable, ExtractorRejected, FileNotFoundError,
            NotADirectoryError) as exc:
        raise _fail(exc, milvus_uri) from None
    finally:
        catalog.close()
    summary.skipped.update({f"image_{k}": v for k, v in ext.skipped.items()})
    click.echo(summary.line())


@cli.command("duplicates")
@click.option("--threshold", type=click.FloatRange(0.5, 1.0), default=0.95, show_default=True,
              help="Cosine similarity at or above which two images are near-duplicates.")
@click.option("--neighbours", type=click.IntRange(1, 1000), default=16, show_default=True,
              help="Hits each image's first search asks for (an image with all of them above the threshold is "
                   "searched again for 8x as many).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True,
              help="jsonl: one group per line; csv: one row per image (group, name, size, best_score).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="File to write (default stdout).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar; the summary line only (on stderr).")
@milvus_options
def duplicates_cmd(threshold, neighbours, fmt, output, quiet, collection, milvus_uri, token):
    """Groups of catalogue images at least THRESHOLD similar, found through the index (not an N^2 scan)."""
    from loader.duplicates import write_groups

    _setup_logging(quiet)
    catalog = Catalog(milvus_uri, token, collection)
    try:
        line = write_groups(catalog, threshold, neighbours, fmt, output, quiet)
    except CatalogError as exc:
        raise _fail(exc, milvus_uri) from None
    finally:
        catalog.close()
    click.echo(line, err=True)


def main() -> None:
    cli(prog_name="python -m loader")


if __name__ == "__main__":
    main()
