"""Shared helpers for benchmark scripts: machine description, medians, JSON + Markdown output."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
from collections.abc import Sequence
from pathlib import Path


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


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def write_results(
    out_stem: Path, title: str, header: Sequence[str], rows: Sequence[Sequence[object]], data: dict
) -> None:
    """Write ``<stem>.json`` (raw data + machine) and ``<stem>.md`` (a Markdown table)."""
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    machine = machine_description()
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
    out_stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
