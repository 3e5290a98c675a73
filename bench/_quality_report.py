"""The report of bench/quality.py: each model's scores, the goal check (the offline default against raw
pixels and vgg16-hed) and the Markdown tables (model x metric; near-duplicate recall@1 per edit).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from _quality_data import EDITS
from _quality_models import HED, OFFLINE_DEFAULT, RAW

GOAL_MARGIN_VS_HED = 0.15


@dataclass
class Scores:
    fmnist_p10: float | None = None
    neardup_r1: float | None = None
    neardup_mrr: float | None = None
    images_per_s: float | None = None
    per_edit_r1: dict[str, float] = field(default_factory=dict)


def fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def goal_check(results: dict[str, Scores]) -> tuple[bool, list[str]]:
    """The offline default beats raw pixels on both sets and vgg16-hed by GOAL_MARGIN_VS_HED on near-dup R@1.

    Returns (met, the comparisons that failed or could not be made).
    """
    failed = []

    def get(model: str, metric: str) -> float | None:
        return getattr(results[model], metric) if model in results else None

    checks = [(OFFLINE_DEFAULT, RAW, "fmnist_p10", 0.0), (OFFLINE_DEFAULT, RAW, "neardup_r1", 0.0),
              (OFFLINE_DEFAULT, HED, "neardup_r1", GOAL_MARGIN_VS_HED)]
    for ours, other, metric, margin in checks:
        a, b = get(ours, metric), get(other, metric)
        want = f"{ours} {metric} > {other}" + (f" + {margin}" if margin else "")
        if a is None or b is None:
            failed.append(f"{want}: not measured")
        elif not (a - b >= margin if margin else a > b):
            failed.append(f"{want}: {a:.3f} vs {b:.3f}")
    return not failed, failed


def table(results: dict[str, Scores], weights_of: dict[str, str]) -> str:
    """The model x metric table (Markdown), in run order."""
    rows = ["| model | weights | Fashion-MNIST p@10 | near-dup recall@1 | near-dup MRR | images/s (CPU) |",
            "|---|---|---:|---:|---:|---:|"]
    for label, s in results.items():
        rows.append(f"| {label} | {weights_of[label]} | {fmt(s.fmnist_p10)} | {fmt(s.neardup_r1)} | "
                    f"{fmt(s.neardup_mrr)} | {fmt(s.images_per_s, 1)} |")
    return "\n".join(rows)


def edit_table(results: dict[str, Scores]) -> str:
    """Near-duplicate recall@1 per edit (rows) and model (columns): which edits break which model."""
    labels = list(results)
    rows = ["| edit | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for edit in EDITS:
        cells = [fmt(results[m].per_edit_r1.get(edit), 2) for m in labels]
        rows.append(f"| {edit} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


