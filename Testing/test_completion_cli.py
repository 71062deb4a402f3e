"""``autoctv complete`` and ``autoctv complete-train`` on tiny files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import make_geometry

from AutoCTVLib.cli import main as cli_main
from AutoCTVLib.completion.model import completion_card, untrained_model
from AutoCTVLib.errors import GeometryError, InputError, OutputError
from AutoCTVLib.io.image_files import read_labelmap, write_labelmap
from AutoCTVLib.models import save_model
from AutoCTVLib.volume import Volume

SHAPE = (14, 30, 32)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks run fastest single-threaded (and leave the other core to other work)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    """A CT, a sparse label (value 5, axial slices 2, 6, 11) and a tiny completion model."""
    geometry = make_geometry("oblique", shape_zyx=SHAPE, spacing_xyz_mm=(1.5, 1.5, 3.0))
    z, y, x = np.indices(SHAPE)
    mask = ((y - 14.5) ** 2 + (x - 15.5) ** 2 <= (5 + 0.4 * z) ** 2) & (z >= 2) & (z <= 11)
    ct = Volume(np.where(mask, 50.0, -80.0).astype(np.float32), geometry)
    sitk.WriteImage(ct.to_sitk(), str(tmp_path / "ct.nii.gz"))
    sparse = np.zeros(SHAPE, dtype=np.uint8)
    sparse[[2, 6, 11]] = mask[[2, 6, 11]] * 5
    write_labelmap(sparse, geometry, tmp_path / "sparse.nrrd")
    model = untrained_model(seed=0, channels=(8, 16))
    save_model(model.network, completion_card(model.network, model.grid), tmp_path / "tiny")
    return {
        "ct": tmp_path / "ct.nii.gz",
        "sparse": tmp_path / "sparse.nrrd",
        "model": tmp_path / "tiny.safetensors",
        "out": tmp_path / "completed.nrrd",
    }


def test_complete_writes_a_labelmap_on_the_ct_grid(files, capsys) -> None:
    argv = ["complete", str(files["ct"]), str(files["sparse"]), "-o", str(files["out"])]
    argv += ["--model", str(files["model"]), "--progress", "json"]
    assert cli_main.main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[-1]["event"] == "done" and lines[-1]["annotation"]["z"] == [2, 6, 11]
    progress = [line for line in lines if line.get("stage") == "complete"]
    assert progress and all(0.0 <= line["fraction"] <= 1.0 for line in progress)
    sparse = read_labelmap(files["sparse"])
    completed = read_labelmap(files["out"], reference=sparse.geometry)
    for k in (2, 6, 11):
        np.testing.assert_array_equal(completed.array[k], sparse.array[k])
    assert set(np.unique(completed.array)) <= {0, 5}
    # A second run refuses to replace the result unless asked.
    assert cli_main.main([*argv[:-2], "--progress", "none"]) == OutputError.exit_code
    assert "already exists" in capsys.readouterr().err
    assert cli_main.main([*argv[:-2], "--progress", "none", "--overwrite"]) == 0


def test_user_errors_are_one_line_and_leave_no_output(files, tmp_path, capsys) -> None:
    other = make_geometry("axial", shape_zyx=SHAPE, spacing_xyz_mm=(1.5, 1.5, 3.0))
    write_labelmap(np.ones(SHAPE, dtype=np.uint8), other, tmp_path / "elsewhere.nrrd")
    base = ["complete", str(files["ct"])]
    out = ["-o", str(files["out"]), "--method", "interpolate", "--progress", "none"]
    assert cli_main.main([*base, str(tmp_path / "elsewhere.nrrd"), *out]) == GeometryError.exit_code
    assert "does not lie on the expected grid" in capsys.readouterr().err
    empty = tmp_path / "empty.nrrd"
    write_labelmap(np.zeros(SHAPE, dtype=np.uint8), read_labelmap(files["sparse"]).geometry, empty)
    assert cli_main.main([*base, str(empty), *out]) == InputError.exit_code
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0 and "no drawn voxels" in message
    assert not files["out"].exists()
    assert list(tmp_path.glob(".completed*")) == []


def test_complete_train_quick_options_reach_the_run(monkeypatch, tmp_path, capsys) -> None:
    from AutoCTVLib.completion import train

    seen = {}

    def fake_train(config, out_dir, **kwargs):
        seen.update(config=config, out_dir=out_dir, **kwargs)
        return train.TrainSummary(3, 0.5, 2, 1.0, 0.33, str(Path(out_dir) / "completion"))

    monkeypatch.setattr(train, "train_completion", fake_train)
    argv = ["complete-train", "--out", str(tmp_path), "--quick", "--iterations", "3"]
    assert cli_main.main([*argv, "--seed", "9", "--device", "cpu", "--progress", "none"]) == 0
    assert seen["config"].iterations == 3 and seen["config"].seed == 9
    assert seen["config"].cases == train.quick_config().cases
    assert seen["resume"] is False
    assert "best validation Dice 0.500" in capsys.readouterr().out
    assert cli_main.main([*argv, "--resume", "--progress", "none"]) == 0
    assert seen["resume"] is True
