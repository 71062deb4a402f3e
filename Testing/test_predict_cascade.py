"""The coarse-to-fine cascade: one file set, checked before any CT is read; fine-grid crop and
paste-back on the input's exact grid (axial, feet-first, oblique, varied spacing)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_geometry
from predict_support import (
    CASCADE_LOCATOR_SPACING_XYZ_MM,
    CASCADE_SEGMENTER_SPACING_XYZ_MM,
    make_tiny_cascade,
    make_tiny_model,
    tiny_phantom,
)
from safetensors.torch import load_file, save_file

from AutoCTVLib.cli.main import main as cli
from AutoCTVLib.errors import ModelFileError
from AutoCTVLib.io.image_files import write_float_map
from AutoCTVLib.models import load_model, read_card
from AutoCTVLib.models.cascade_file import CascadeModel
from AutoCTVLib.models.model_file import sha256_of_file
from AutoCTVLib.predict import Predictor
from AutoCTVLib.predict.cascade_grid import (
    fine_case,
    fine_grid,
    frame_direction,
    grid_box_in_frame,
    grow_and_clip,
    index_box_in_frame,
    locator_index_box,
)
from AutoCTVLib.preprocess import PreprocessConfig, preprocess
from AutoCTVLib.volume import Geometry, Volume


@pytest.fixture(scope="module")
def phantom():
    return tiny_phantom()


@pytest.fixture(scope="module")
def cascade_path(phantom, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_cascade(tmp_path_factory.mktemp("cascade"), phantom.ct)


def _on_grid(phantom, kind: str, spacing_xyz_mm=None) -> tuple[Volume, Volume]:
    geometry = make_geometry(
        kind,
        shape_zyx=phantom.ct.geometry.shape_zyx,
        spacing_xyz_mm=spacing_xyz_mm or phantom.ct.geometry.spacing_xyz_mm,
    )
    return Volume(phantom.ct.array, geometry), Volume(phantom.ctv.array, geometry)


def test_one_file_set_with_prefixed_tensors(cascade_path: Path) -> None:
    card = read_card(cascade_path)
    assert card.is_cascade and card.format_version == 2
    assert [stage["name"] for stage in card.stages] == ["locator", "segmenter"]
    assert card.stages[1]["input_channels"] == ["ct", "locator_probability"]
    assert card.stages[1]["crop"]["margin_mm"] == 15.0
    assert card.input_channels == ("ct",)
    names = load_file(str(cascade_path)).keys()
    assert {name.split(".")[0] for name in names} == {"locator", "segmenter"}
    model, loaded = load_model(cascade_path)
    assert isinstance(model, CascadeModel) and loaded == card
    assert card.parameter_count == sum(p.numel() for p in model.parameters())


def test_cascade_output_lies_on_the_input_grid(cascade_path: Path, phantom, grid_kind) -> None:
    ct, _ = _on_grid(phantom, grid_kind, spacing_xyz_mm=(4.6, 5.3, 4.2))
    predictor = Predictor.from_file(cascade_path, device="cpu", threads=1)
    prediction = predictor.predict(ct, mc_samples=3, postprocess=None)
    for volume in (prediction.prob_ctv, prediction.label):
        assert volume.geometry == ct.geometry
    assert prediction.uncertainty.entropy.shape == ct.geometry.shape_zyx
    record = prediction.provenance["settings"]["cascade"]
    assert record["segmenter_inputs"] == ["ct", "locator_probability"]
    grid = prediction.provenance["settings"]["network_grid"]
    assert grid["spacing_xyz_mm"] == list(CASCADE_SEGMENTER_SPACING_XYZ_MM)
    # Nothing is pasted outside the segmenter's box of input voxels.
    box = grid["crop_box"]
    outside = np.ones(ct.geometry.shape_zyx, bool)
    outside[tuple(slice(box["start_zyx"][i], box["stop_zyx"][i]) for i in range(3))] = False
    assert not prediction.prob_ctv.array[outside].any()
    assert not prediction.uncertainty.entropy[outside].any()


@pytest.mark.parametrize("spacing", [(5.0, 5.0, 5.0), (3.1, 4.4, 6.0)])
def test_crop_covers_the_ctv_and_pastes_back_exactly(phantom, grid_kind, spacing) -> None:
    """With the reference CTV as the locator's answer, the fine grid holds every CTV voxel of
    the input, and a fine-grid map of ones comes back as ones on all of them."""
    ct, label = _on_grid(phantom, grid_kind, spacing)
    locator_pre = PreprocessConfig(spacing_xyz_mm=CASCADE_LOCATOR_SPACING_XYZ_MM)
    segmenter_pre = PreprocessConfig(spacing_xyz_mm=(2.0, 2.0, 3.0))
    coarse = preprocess(ct, locator_pre)
    prob = coarse.label_to_network(label).astype(np.float32)
    found = locator_index_box(prob, 0.5, coarse.network_geometry.spacing_xyz_mm, 15.0)
    assert found is not None
    direction = frame_direction(ct.geometry, reorient=True)
    limit = grid_box_in_frame(coarse.cropped_geometry, direction)
    box = grow_and_clip(index_box_in_frame(coarse.network_geometry, *found, direction), 15.0, limit)
    grid = fine_grid(box, direction, segmenter_pre.spacing_xyz_mm)
    case = fine_case(ct, grid, segmenter_pre)
    assert case.image.shape == grid.shape_zyx
    # Every CTV voxel centre of the input lies inside the fine grid.
    ijk = np.argwhere(label.array > 0)[:, ::-1].astype(float)
    inside = grid.physical_to_index(ct.geometry.index_to_physical(ijk))
    size = np.asarray(grid.size_xyz)
    assert np.all(inside >= -0.5) and np.all(inside <= size - 0.5)
    # Paste-back: ones on the fine grid cover the CTV on the input's exact grid.
    pasted = case.to_input_grid(np.ones(grid.shape_zyx, np.float32))
    assert pasted.shape == ct.geometry.shape_zyx
    assert np.all(pasted[label.array > 0] > 0.99)
    # The box is the CTV plus margin, not the whole body.
    assert (pasted > 0).sum() < 0.8 * np.prod(ct.geometry.shape_zyx)
    # The fine grid is axis-aligned with L, P, S whatever the scan's orientation.
    assert np.allclose(np.abs(np.diag(direction)), 1.0, atol=0.05) or grid_kind == "oblique"


def test_the_locator_box_ignores_far_islands_but_joins_near_parts() -> None:
    prob = np.zeros((20, 30, 30), np.float32)
    prob[5:10, 5:12, 5:12] = 1.0  # the CTV
    prob[5:10, 5:12, 14:16] = 1.0  # a part 2 voxels (12 mm) away: joined
    prob[15:17, 25:28, 25:28] = 1.0  # an island far away: ignored
    lo, hi = locator_index_box(prob, 0.5, (6.0, 6.0, 6.0), join_mm=15.0)
    assert list(lo) == [5, 5, 5] and list(hi) == [15, 11, 9]
    assert locator_index_box(np.zeros_like(prob), 0.5, (6.0, 6.0, 6.0), 15.0) is None


def test_no_located_ctv_falls_back_to_the_body(cascade_path: Path, phantom) -> None:
    model, card = load_model(cascade_path)
    with torch.no_grad():
        model.locator.head.bias.fill_(-1e4)  # nothing is CTV
    prediction = Predictor(model, card, device="cpu", threads=1).predict(phantom.ct)
    assert prediction.label.geometry == phantom.ct.geometry
    assert any("found no CTV" in warning for warning in prediction.warnings)
    assert prediction.provenance["settings"]["cascade"]["locator_found_ctv"] is False


def _rewrite_card(path: Path, change) -> Path:
    card_path = path.with_suffix(".json")
    data = json.loads(card_path.read_text())
    change(data)
    card_path.write_text(json.dumps(data))
    return path


@pytest.fixture
def cascade_copy(cascade_path: Path, tmp_path: Path) -> Path:
    for suffix in (".safetensors", ".json"):
        source = cascade_path.with_suffix(suffix)
        (tmp_path / source.name).write_bytes(source.read_bytes())
    return tmp_path / cascade_path.name


def _segmenter(data: dict) -> dict:
    return data["stages"][1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: _segmenter(d).update(input_channels=["ct"]),
            "names 1 input channel(s) (ct) but its architecture takes 2",
        ),
        (lambda d: _segmenter(d).pop("crop"), "no crop settings"),
        (lambda d: _segmenter(d)["crop"].pop("margin_mm"), "crop needs margin_mm"),
        (lambda d: _segmenter(d).pop("preprocessing"), "lacks preprocessing"),
        (lambda d: _segmenter(d)["preprocessing"].update(spacing_xyz_mm=[2, 0, 3]), "grid"),
        (lambda d: d["stages"].pop(0), "the card lists 1"),
        (lambda d: d.update(format_version=1), "needs format_version 2"),
        (lambda d: d.update(format_version=3), "format version 3 is not supported"),
        (
            lambda d: d["preprocessing"].update(spacing_xyz_mm=[1.0, 1.0, 1.0]),
            "must be the segmenter's",
        ),
        (lambda d: d["stages"][0]["architecture"].update(out_channels=2), "one output channel"),
    ],
)
def test_stages_that_do_not_fit_are_refused(cascade_copy: Path, change, message) -> None:
    _rewrite_card(cascade_copy, change)
    with pytest.raises(ModelFileError, match="model card") as raised:
        load_model(cascade_copy)
    assert message in str(raised.value)


def test_weights_that_do_not_fit_the_card_are_refused(cascade_copy: Path) -> None:
    # Tensors of another segmenter (other channel counts), with a card that records their hash.
    state = load_file(str(cascade_copy))
    state["segmenter.head.weight"] = torch.zeros(1, 3, 1, 1, 1)
    save_file(state, str(cascade_copy))
    with pytest.raises(ModelFileError, match="do not match their card"):
        load_model(cascade_copy)
    _rewrite_card(cascade_copy, lambda d: d.update(weights_sha256=sha256_of_file(cascade_copy)))
    with pytest.raises(ModelFileError, match=r"shape mismatches.*segmenter\.head\.weight"):
        load_model(cascade_copy)


def test_cli_refuses_a_bad_cascade_before_reading_the_ct(
    cascade_copy: Path, phantom, tmp_path: Path, monkeypatch, capsys
) -> None:
    ct_path = write_float_map(phantom.ct.array, phantom.ct.geometry, tmp_path / "ct.nii.gz")

    def no_reading(*args, **kwargs):
        raise AssertionError("the CT was read before the model was checked")

    monkeypatch.setattr("AutoCTVLib.io.ct_reader.read_ct", no_reading)
    _rewrite_card(cascade_copy, lambda d: _segmenter(d).pop("crop"))
    out = tmp_path / "out"
    code = cli(["predict", str(ct_path), "-o", str(out), "--model", str(cascade_copy)])
    error = capsys.readouterr().err
    assert code != 0
    assert error.startswith("autoctv: error:") and "no crop settings" in error
    assert "Traceback" not in error and not out.exists()


def test_cli_predicts_with_a_cascade(cascade_path: Path, phantom, tmp_path: Path, capsys) -> None:
    ct_path = write_float_map(phantom.ct.array, phantom.ct.geometry, tmp_path / "ct.nii.gz")
    out = tmp_path / "out"
    code = cli(
        [
            "predict",
            str(ct_path),
            "-o",
            str(out),
            "--model",
            str(cascade_path),
            "--device",
            "cpu",
            "--threads",
            "1",
            "--uncertainty",
            "2",
            "--progress",
            "none",
        ]
    )
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["cascade"]["segmenter_inputs"] == ["ct", "locator_probability"]


def test_a_single_stage_card_still_loads(phantom, tmp_path: Path) -> None:
    path = make_tiny_model(tmp_path, phantom.ct)
    model, card = load_model(path)
    assert not card.is_cascade and "stages" not in json.loads(path.with_suffix(".json").read_text())
    assert Predictor(model, card, device="cpu").cascade is None


def test_a_segmenter_without_the_locator_probability(phantom, tmp_path: Path) -> None:
    path = make_tiny_cascade(tmp_path, phantom.ct, locator_probability=False)
    assert read_card(path).stages[1]["input_channels"] == ["ct"]
    prediction = Predictor.from_file(path, device="cpu", threads=1).predict(phantom.ct)
    assert prediction.label.geometry == phantom.ct.geometry
    assert isinstance(prediction.label.geometry, Geometry)
