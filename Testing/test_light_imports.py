"""What a GUI imports before PyTorch is installed: the library's options, model cards and the
completion package's drawing analysis load with torch blocked (``sys.modules['torch'] = None``
makes every ``import torch`` fail), in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run_without_torch(code: str) -> str:
    prelude = "import sys; sys.modules['torch'] = None; sys.path[:0] = sys.argv[1:]\n"
    completed = subprocess.run(
        [sys.executable, "-c", prelude + code, str(REPO), str(REPO / "AutoCTV")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def test_torch_is_really_blocked_in_the_child():
    prelude = "import sys; sys.modules['torch'] = None\nimport AutoCTVLib.models.model_file\n"
    completed = subprocess.run(
        [sys.executable, "-c", prelude], capture_output=True, text=True, timeout=300
    )
    assert completed.returncode != 0 and "torch" in completed.stderr


def test_library_options_cards_and_drawing_analysis_need_no_torch():
    output = _run_without_torch(
        "import numpy as np\n"
        "from AutoCTVLib import completion, models, options\n"
        "from AutoCTVLib.completion.annotation import infer_annotation\n"
        "from AutoCTVLib.models.bundled import find_bundled_model\n"
        "card = models.read_card(find_bundled_model())\n"
        "drawn = np.zeros((9, 8, 8), bool); drawn[[2, 6], 2:5, 2:5] = True\n"
        "print(completion.METHODS == options.COMPLETION_METHODS, card.input_channels)\n"
        "print(infer_annotation(drawn).describe())\n"
        "print(options.check_device('CUDA:1'), 'torch' in sys.modules and sys.modules['torch'])\n"
    )
    lines = output.splitlines()
    assert lines[0] == "True ('ct',)"
    assert lines[1] == "2 axial (z) slices: 2, 6"
    assert lines[2] == "cuda:1 None"


def test_device_and_method_choices_are_checked():
    import pytest

    from AutoCTVLib import options

    assert options.check_device(" Auto ") == "auto"
    for bad in ("tpu", "cuda:x", ""):
        with pytest.raises(ValueError, match="device must be one of"):
            options.check_device(bad)
    assert options.check_completion_method("interpolate") == "interpolate"
    with pytest.raises(ValueError, match="completion method"):
        options.check_completion_method("magic")
    assert set(options.NETWORK_COMPLETION_METHODS) < set(options.COMPLETION_METHODS)
