"""Shared helpers for benchmark scripts: machine description, medians, JSON + Markdown output."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar


def machine_description() -> dict[str, object]:
    """CPU model, core count, memory and library versions, for the table header."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory_gib = None
    try:
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    import numpy
    import SimpleITK

    info: dict[str, object] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "SimpleITK": SimpleITK.Version.VersionString(),
        "date": _dt.date.today().isoformat(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


_Job = TypeVar("_Job")


def run_jobs(
    run_one: Callable[[_Job], dict[str, Any]], jobs: Sequence[_Job], workers: int
) -> list[dict[str, Any]]:
    """``run_one`` on every job, in ``workers`` processes when there are several jobs (results in
    job order)."""
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            return list(pool.map(run_one, jobs))
    return [run_one(job) for job in jobs]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def write_results(
    out_stem: Path,
    title: str,
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    data: dict,
    notes: Sequence[str] = (),
    machine: dict[str, object] | None = None,
) -> None:
    """Write ``<stem>.json`` (raw data + machine) and ``<stem>.md`` (a Markdown table).

    ``notes`` are paragraphs printed under the table; ``machine`` (default: this machine) is
    given when a table is re-rendered from results measured earlier.
    """
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    machine = machine or machine_description()
    payload = {"title": title, "machine": machine, **data}
    out_stem.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        f"# {title}",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB; "
        f"Python {machine['python']}, numpy {machine['numpy']}, SimpleITK {machine['SimpleITK']}"
        + (f", torch {machine['torch']}" if "torch" in machine else "")
        + f". Date: {machine['date']}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    for note in notes:
        lines += ["", note]
    out_stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


def choose_model(
    path: Path | None, work: Path, *, quick: bool, allow_random: bool
) -> tuple[Path, str]:
    """The model a benchmark measures, and a note saying which it is.

    ``path`` when given, else the bundled model. Without either, a network with random weights
    (small in ``quick`` mode) is saved to ``work`` when ``allow_random`` — good for timings and
    smoke runs only; otherwise the bundled model's absence is an error.
    """
    from AutoCTVLib.errors import ModelFileError
    from AutoCTVLib.models.bundled import find_bundled_model

    if path is not None:
        return path, "given"
    try:
        return find_bundled_model(), "bundled"
    except ModelFileError:
        if not allow_random:
            raise
    from AutoCTVLib.models import SYNTHETIC_DISCLAIMER, ModelCard, ctv_label, save_model
    from AutoCTVLib.nn import build_network, thesis_config

    channels = (8, 16, 32) if quick else (16, 32, 64, 96, 128)
    spacing = [5.0, 5.0, 8.0] if quick else [2.0, 2.0, 3.0]
    config = thesis_config(channels=channels, dropout_p=0.1, dropout_where="decoder")
    network = build_network(config, seed=0).eval()
    card = ModelCard(
        name="random-thesis-ctv",
        version="0.0.0",
        architecture=config.to_dict(),
        preprocessing={"spacing_xyz_mm": spacing, "hu_window": [-1000.0, 1600.0]},
        labels=(ctv_label(),),
        training_data="none (random weights, timing and smoke runs only)",
        disclaimer=SYNTHETIC_DISCLAIMER,
    )
    save_model(network, card, work / "random-thesis-ctv")
    return work / "random-thesis-ctv.safetensors", "random weights: timings only, no accuracy"


def model_record(path: Path, note: str) -> dict[str, object]:
    """How a results file names the model it measured: file name, name, version, weights hash.

    Only the file name is kept (never the folder, which is machine-specific).
    """
    from AutoCTVLib.models import read_card

    card = read_card(path)
    return {
        "file": path.name,
        "name": card.name,
        "version": card.version,
        "weights_sha256": card.weights_sha256,
        "note": note,
    }


def model_label(record: dict[str, object]) -> str:
    """``name version (note)`` of a :func:`model_record`, for a table's notes."""
    return f"{record['name']} {record['version']} ({record['note']})"
