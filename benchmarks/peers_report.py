"""Tables and box plot of the peer benchmark (no peer package needed).

:func:`summary_rows` turns per-case rows (one per method and held-out case) into the table's
rows: per method, over all cases and per variant; :func:`write_report` writes
``peers.{json,md}`` with the training budget and accounting, and :func:`box_plot` a PNG of Dice
and HD95 per method.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_results

METHOD_LABELS = {
    "autoctv": "AutoCTV cascade",
    "monai": "MONAI UNet",
    "monai_bf16": "MONAI UNet, bf16 training",
    "nnunet": "nnU-Net v2 3d_fullres",
}
VARIANT_LABELS = {
    "test": "held-out test (varied grids)",
    "default": "default grid",
    "vary_grid": "varied grids",
    "flip": "feet first",
    "noise40": "noise 40 HU",
}
SUMMARY_HEADER = [
    "method",
    "cases",
    "n",
    "Dice mean",
    "Dice min",
    "HD95 median mm",
    "HD95 max mm",
    "SDice@2mm mean",
    "predict s median",
    "peak RSS MiB median",
]
BUDGET_HEADER = [
    "method",
    "budget (wall s)",
    "iterations",
    "loop wall s",
    "process wall s",
    "process CPU s (user+sys, children incl.)",
    "before the loop",
]


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def _hd95_text(values: Sequence[float], how: str) -> str:
    finite = _finite(values)
    infinite = len(values) - len(finite)
    if not finite:
        return "∞"
    value = statistics.median(finite) if how == "median" else max(finite)
    text = f"{value:.1f}"
    if infinite and how == "max":
        return "∞"
    if infinite:
        text += f" ({infinite} ∞)"
    return text


def summary_row(method: str, group: str, rows: Sequence[dict[str, Any]]) -> list[object]:
    """One table row: the statistics of ``rows`` (one method, one group of cases)."""
    dice = [float(r["dice"]) for r in rows]
    hd95 = [float(r["hd95_mm"]) for r in rows]
    surface = [float(r["surface_dice_2mm"]) for r in rows]
    return [
        METHOD_LABELS.get(method, method),
        group,
        len(rows),
        f"{np.mean(dice):.3f}",
        f"{np.min(dice):.3f}",
        _hd95_text(hd95, "median"),
        _hd95_text(hd95, "max"),
        f"{np.mean(surface):.3f}",
        f"{statistics.median(float(r['predict_s']) for r in rows):.1f}",
        f"{statistics.median(float(r['peak_rss_mib']) for r in rows):.0f}",
    ]


def summary_rows(per_case: Sequence[dict[str, Any]], methods: Sequence[str]) -> list[list[object]]:
    """Rows per method: all cases, then each variant present (in VARIANT_LABELS order)."""
    table: list[list[object]] = []
    for method in methods:
        mine = [r for r in per_case if r["method"] == method]
        if not mine:
            continue
        table.append(summary_row(method, "all", mine))
    for variant, label in VARIANT_LABELS.items():
        for method in methods:
            rows = [r for r in per_case if r["method"] == method and r["variant"] == variant]
            if rows:
                table.append(summary_row(method, label, rows))
    return table


def budget_rows(trainings: dict[str, dict[str, Any]]) -> list[list[object]]:
    """One row per trained method: budget, iterations and the measured time of its training."""
    rows: list[list[object]] = []
    for method, record in trainings.items():
        rows.append(
            [
                METHOD_LABELS.get(method, method),
                f"{record['budget_s']:.0f}",
                record["iterations"],
                f"{record['loop_wall_s']:.0f}",
                f"{record['process']['wall_s']:.0f}",
                f"{record['process']['cpu_s']:.0f}",
                record.get("before_loop", ""),
            ]
        )
    return rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(
    out_stem: Path,
    per_case: Sequence[dict[str, Any]],
    trainings: dict[str, dict[str, Any]],
    setup: dict[str, Any],
    notes: Sequence[str],
) -> None:
    """``out_stem.{json,md}``: the results table, then the budget table and the notes."""
    methods = [m for m in METHOD_LABELS if any(r["method"] == m for r in per_case)]
    budget = markdown_table(BUDGET_HEADER, budget_rows(trainings))
    peers = " and ".join(METHOD_LABELS[m].removesuffix(" 3d_fullres") for m in methods[1:])
    title = f"{METHOD_LABELS[methods[0]]} vs {peers}: same data, same training budget, same device"
    write_results(
        out_stem,
        title,
        SUMMARY_HEADER,
        summary_rows(per_case, methods),
        {"setup": setup, "trainings": trainings, "per_case": list(per_case)},
        notes=["Training (each method the same wall-clock budget):\n\n" + budget, *notes],
    )


def box_plot(per_case: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """Dice and HD95 per method, one box each (infinite HD95 left out and counted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in METHOD_LABELS if any(r["method"] == m for r in per_case)]
    labels = [METHOD_LABELS[m] for m in methods]
    dice = [[float(r["dice"]) for r in per_case if r["method"] == m] for m in methods]
    hd95_all = [[float(r["hd95_mm"]) for r in per_case if r["method"] == m] for m in methods]
    hd95 = [_finite(values) or [math.nan] for values in hd95_all]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    axes[0].boxplot(dice, showmeans=True)
    axes[0].set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
    axes[0].set_ylabel("Dice")
    axes[0].set_ylim(0, 1)
    axes[1].boxplot(hd95, showmeans=True)
    tick_labels = []
    for label, values in zip(labels, hd95_all):
        infinite = len(values) - len(_finite(values))
        tick_labels.append(label + (f"\n({infinite} empty)" if infinite else ""))
    axes[1].set_xticks(range(1, len(labels) + 1), tick_labels, fontsize=8)
    axes[1].set_ylabel("HD95 (mm)")
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
