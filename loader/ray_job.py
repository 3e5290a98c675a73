"""`extract SOURCE -o OUT --engine ray`: images to HDF5 shards with Ray Data, on this machine or a cluster.

The driver (this process) lists SOURCE, drops the images already in finished shards (shards.py), cuts the
rest into shards of `shard_size` images and streams them through four stages:

    names (Arrow blocks) -> read bytes (CPU tasks) -> decode + resize (CPU tasks) -> model (actor pool)
                                                                                    -> driver: shards

The stages are ray_stages.py; the model runs in `ModelActor`s (`map_batches` with a callable class), one
per GPU where the cluster has GPUs, else `actors` CPU actors. Lost workers are Ray's to retry (tasks and
actors restart without limit), so a SIGKILLed worker costs time, not images. The driver receives every
row (name, vector or reject), keeps them by shard and commits a shard once all its images are in: a
crash of the driver loses only unfinished shards, which the next run extracts again.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from loader.progress import Progress, Summary
from loader.ray_cluster import DEFAULT_OBJECT_STORE_MB, gpu_count, ray_session
from loader.ray_stages import OK, ModelActor, decode_batch, read_batch
from loader.shards import ShardFolder
from loader.sources import Source, SourceError

log = logging.getLogger(__name__)

MAX_BLOCK_ROWS = 1024  # names per input block at most: 100M images are ~100k blocks, not millions


class FingerprintChanged(RuntimeError):
    """A worker made vectors with another fingerprint than the job's (a node with other weights)."""


@dataclass
class RayJobOptions:
    """What `extract --engine ray` can be told; model settings default to the EXTRACTOR_* environment."""

    model: str | None = None  # EXTRACTOR_MODEL (auto, vgg16, ...)
    weights: str | None = None  # EXTRACTOR_WEIGHTS
    input_size: int | None = None  # EXTRACTOR_INPUT_SIZE
    precision: str | None = None  # EXTRACTOR_PRECISION
    batch_size: int = 32  # images per model call
    actors: int | None = None  # model actors; None: one per GPU, else 1
    shard_size: int = 10_000  # images per shard file
    address: str | None = None  # a Ray cluster (ray://..., host:port); None: start Ray here
    num_cpus: int | None = None  # a local Ray's CPUs (default: all)
    object_store_mb: int = DEFAULT_OBJECT_STORE_MB
    quiet: bool = False


def _extractor_config(opts: RayJobOptions):
    """The extractor's settings (EXTRACTOR_* environment) with the job's options on top: one set of defaults."""
    from extractor_service.config import ExtractorConfig

    given = {k: v for k, v in (("model", opts.model), ("weights", opts.weights), ("input_size", opts.input_size),
                               ("precision", opts.precision)) if v is not None}
    return ExtractorConfig.from_env(**given)


def _shards(todo: list[str], size: int) -> tuple[dict[str, int], list[int]]:
    """Each name's shard (0, 1, ...) in listing order, and each shard's image count."""
    of = {name: i // size for i, name in enumerate(todo)}
    counts = [min(size, len(todo) - s) for s in range(0, len(todo), size)]
    return of, counts


def block_rows(images: int, batch_size: int) -> int:
    """Names per input block. A block is what moves through the stages together and reaches the driver at
    once, so small jobs get many small blocks (at least 64, one model batch each at least: every worker
    busy, progress and shard commits smooth); big jobs get blocks of MAX_BLOCK_ROWS."""
    return max(1, min(MAX_BLOCK_ROWS, max(batch_size, images // 64)))


def _dataset(ray, todo: list[str], shard_of: dict[str, int], rows: int):
    """The names as Arrow blocks of `rows` rows (columns name, shard)."""
    import pyarrow as pa

    tables = [pa.table({"name": todo[i:i + rows], "shard": [shard_of[n] for n in todo[i:i + rows]]})
              for i in range(0, len(todo), rows)]
    return ray.data.from_arrow(tables)


def _pipeline(ray, todo, shard_of, source: Source, config, resolved, opts: RayJobOptions):
    """The job as a lazy Dataset: read -> decode -> model; rows come out with a vector or a reject reason."""
    from ray.data import ActorPoolStrategy

    gpus = gpu_count(ray)
    actors = opts.actors or max(1, gpus)
    prep = resolved.backbone.preprocessing
    # Lost workers are retried by Ray Data's own defaults: tasks max_retries=-1, actors max_restarts=-1 and
    # max_task_retries=-1 (a test SIGKILLs an actor to hold Ray to them).
    ds = _dataset(ray, todo, shard_of, block_rows(len(todo), opts.batch_size))
    ds = ds.map_batches(read_batch, fn_kwargs={"source": source}, batch_size=opts.batch_size,
                        batch_format="numpy", num_cpus=0.25)
    # Half a CPU per decode task: two decode per core, so one waiting on its input never idles the core; and
    # unlike the model actor's, so Ray does not fuse decoding into the actor (decode runs beside the model).
    ds = ds.map_batches(decode_batch, batch_size=opts.batch_size, batch_format="numpy", num_cpus=0.5,
                        fn_kwargs={"input_size": config.input_size, "resample": prep.resample,
                                   "max_bytes": config.max_file_bytes, "max_pixels": config.max_pixels})
    return ds.map_batches(
        ModelActor, batch_size=opts.batch_size, batch_format="numpy", compute=ActorPoolStrategy(size=actors),
        num_gpus=1 if gpus else 0, num_cpus=1 if not gpus else 2,  # a GPU actor's CPUs feed its GPU
        # the backbone and weights the driver resolved, by name: every actor builds the same model
        fn_constructor_kwargs={"model": resolved.backbone.name, "weights": resolved.weights.name,
                               "input_size": config.input_size,
                               "precision": config.precision, "batch_size": opts.batch_size,
                               "runtime": config.runtime},
    )


def extract_ray(source: Source, out: str, opts: RayJobOptions,
                on_rows: Callable[[int], None] | None = None) -> Summary:
    """Extract every image of `source` not yet in OUT's finished shards; returns the run's Summary.

    `on_rows(n)` is called on the driver after each batch of n rows arrives (tests use it to kill a worker).
    """
    from extractor_service.backbones import resolve_model

    summary = Summary(verb="extracted")
    config = _extractor_config(opts)
    resolved = resolve_model(config.model, config.weights)
    fingerprint = resolved.fingerprint(config.input_size, config.precision)
    names = source.names()
    if not names:
        raise SourceError(f"no images in {source.describe()} (image files end in .jpg, .png, .webp, ...): check "
                          "SOURCE")
    folder = ShardFolder(out, fingerprint, resolved.backbone.dim, resolved.weights.name, source.describe())
    done = folder.done_names()
    todo = [n for n in names if n not in done]
    summary.read = summary.resumed_from = len(names) - len(todo)
    if todo:
        with ray_session(opts.address, opts.num_cpus, opts.object_store_mb) as ray:
            _quiet_ray_data(ray)
            ds = _pipeline(ray, todo, _shards(todo, opts.shard_size)[0], source, config, resolved, opts)
            _collect(ds, todo, opts, folder, fingerprint, summary, on_rows)
    folder.write_rejects()
    summary.imported = folder.manifest.rows
    summary.skipped = Counter(r[1] for r in folder.manifest.rejects)
    summary.extra["shards"] = f"{len(folder.manifest.shards):,} in {folder.out}"
    return summary.stop()


def _quiet_ray_data(ray) -> None:
    """Our own progress bar on the driver instead of Ray Data's; shards need rows in listing order."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = True  # shards complete one after another: bounded driver memory
    for name in ("ray.data", "ray"):  # its INFO lines and the "progress bars disabled" notice
        logging.getLogger(name).setLevel(logging.ERROR)


def _collect(ds, todo: list[str], opts: RayJobOptions, folder: ShardFolder, fingerprint: str, summary: Summary,
             on_rows: Callable[[int], None] | None) -> None:
    """Receive rows, keep them by shard, commit each shard when all its images are in."""
    shard_of, counts = _shards(todo, opts.shard_size)
    pending: dict[int, dict[str, tuple]] = {}
    with Progress(len(todo), "extracting", opts.quiet) as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            wrong = {str(f) for f in batch["fingerprint"]} - {fingerprint}
            if wrong:
                raise FingerprintChanged(
                    f"a Ray worker made vectors with fingerprint {wrong.pop()}, the job's is {fingerprint}: every "
                    "node must have the same weights (EXTRACTOR_WEIGHTS) and code")
            for name, vec, reason, message in zip(batch["name"], batch["vector"], batch["reason"], batch["message"]):
                name = str(name)
                pending.setdefault(shard_of[name], {})[name] = (vec, str(reason), str(message))
            for shard in [s for s, rows in pending.items() if len(rows) == counts[s]]:
                _commit(folder, pending.pop(shard), todo[shard * opts.shard_size:][:counts[shard]])
            summary.read += len(batch["name"])
            bar.update(len(batch["name"]))
            if on_rows is not None:
                on_rows(len(batch["name"]))
    if pending:  # Ray ended the stream without some rows: never commit a partial shard
        raise RuntimeError(f"Ray returned no result for {sum(counts[s] - len(r) for s, r in pending.items())} "
                           "images; run the same command again (finished shards are kept)")


def _commit(folder: ShardFolder, rows: dict[str, tuple], order: list[str]) -> None:
    good = [n for n in order if rows[n][1] == OK]
    vectors = np.stack([rows[n][0] for n in good]) if good else np.zeros((0, folder.manifest.dim), np.float32)
    rejects = [(n, rows[n][1], rows[n][2]) for n in order if rows[n][1] != OK]
    for name, reason, message in rejects:
        log.warning("rejected %s: %s (%s)", name, reason, message)
    folder.commit(good, vectors, rejects)
