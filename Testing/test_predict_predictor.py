"""The predictor: output on the input's exact grid, MC maps, sliding window, device fallback."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_geometry
from predict_support import make_tiny_model, tiny_phantom

from AutoCTVLib.errors import CancelledError, InputError, MemoryBudgetError, ModelFileError
from AutoCTVLib.inference.postprocess import PostprocessConfig
from AutoCTVLib.models import load_model
from AutoCTVLib.models.bundled import find_bundled_model
from AutoCTVLib.predict import MCSettings, Predictor, SpeedSettings
from AutoCTVLib.predict.memory import plan_inference, window_size
from AutoCTVLib.predict.network_stage import is_out_of_memory, with_cpu_fallback
from AutoCTVLib.volume import Volume


@pytest.fixture(scope="module")
def phantom():
    return tiny_phantom()


@pytest.fixture(scope="module")
def model_path(phantom, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model"), phantom.ct)


@pytest.fixture(scope="module")
def predictor(model_path: Path) -> Predictor:
    return Predictor.from_file(model_path, device="cpu", threads=1)


def test_output_lies_on_the_input_grid(predictor: Predictor, phantom, grid_kind: str) -> None:
    geometry = make_geometry(
        grid_kind,
        shape_zyx=phantom.ct.geometry.shape_zyx,
        spacing_xyz_mm=phantom.ct.geometry.spacing_xyz_mm,
    )
    ct = Volume(phantom.ct.array, geometry)
    prediction = predictor.predict(ct, mc_samples=3, postprocess=None)
    for volume in (prediction.prob_ctv, prediction.label):
        assert volume.geometry == geometry  # identical size, spacing, origin, direction
        assert volume.array.shape == geometry.shape_zyx
    assert prediction.label.array.dtype == np.uint8
    assert prediction.prob_ctv.array.dtype == np.float32
    assert prediction.uncertainty.entropy.shape == geometry.shape_zyx
    assert prediction.uncertainty_volume("mutual_information").geometry == geometry
    # Thresholded after resampling onto the input grid (no post-processing here).
    assert np.array_equal(prediction.label.array, prediction.prob_ctv.array >= 0.5)
    assert 0 < prediction.label.array.mean() < 0.9
    assert prediction.summary.per_slice_score.shape == (geometry.shape_zyx[0],)
    assert all(0 <= k < geometry.shape_zyx[0] for k in prediction.slices_to_review)


def test_mc_outputs_and_provenance(predictor: Predictor, phantom) -> None:
    prediction = predictor.predict(phantom.ct, mc=MCSettings(samples=4, seed=2))
    maps = prediction.uncertainty
    assert maps.n_samples == 4
    assert (maps.entropy >= 0).all() and (maps.entropy <= 1).all()
    assert (maps.mutual_information >= 0).all()
    assert (maps.mutual_information <= maps.entropy).all()
    assert np.array_equal(maps.mean_prob, prediction.prob_ctv.array)
    assert 0 <= prediction.summary.case_score <= 1
    assert 1 <= len(prediction.slices_to_review) <= 5
    provenance = prediction.provenance
    card = predictor.card
    assert provenance["model_name"] == card.name
    assert provenance["model_version"] == card.version
    assert provenance["model_sha256"] == card.weights_sha256
    settings = provenance["settings"]
    assert settings["mc_samples"] == 4 and settings["mc"]["method"] == "cheap"
    assert settings["postprocess"] == {
        "min_component_ml": 0.0,
        "keep_largest": None,
        "fill_holes": "3d",
        "connectivity": 26,
        "near_largest_mm": 15.0,
    }
    assert settings["device"] == "cpu" and settings["threads"] == 1
    assert set(prediction.timings_s) >= {"preprocess", "network", "uncertainty", "resample"}
    assert all(value >= 0 for value in prediction.timings_s.values())


def test_postprocessing_removes_islands(predictor: Predictor, phantom) -> None:
    raw = predictor.predict(phantom.ct, postprocess=None).label.array
    cleaned = predictor.predict(
        phantom.ct, postprocess=PostprocessConfig(min_component_ml=50.0, fill_holes="3d")
    ).label.array
    assert cleaned.sum() != raw.sum()
    assert not (cleaned.astype(bool) & ~raw.astype(bool) & ~_enclosed(raw)).any()


def _enclosed(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_fill_holes(mask.astype(bool)) & ~mask.astype(bool)


def test_sliding_window_when_memory_is_short(model_path: Path, phantom) -> None:
    whole = Predictor.from_file(model_path, device="cpu", threads=1)
    windowed = Predictor.from_file(model_path, device="cpu", threads=1, max_voxels_per_pass=30000)
    first = whole.predict(phantom.ct, postprocess=None)
    second = windowed.predict(phantom.ct, mc_samples=2, postprocess=None)
    inference = second.provenance["settings"]["inference"]
    assert first.provenance["settings"]["inference"]["mode"] == "whole"
    assert inference["mode"] == "sliding_window"
    assert np.prod(inference["roi_size_zyx"]) <= 30000
    assert second.label.geometry == phantom.ct.geometry
    assert (second.uncertainty.mutual_information <= second.uncertainty.entropy).all()
    assert 0 < second.label.array.sum()


def test_speed_settings_keep_the_result(model_path: Path, phantom) -> None:
    results = []
    for channels_last in (True, False):
        speed = SpeedSettings(channels_last=channels_last)
        predictor = Predictor.from_file(model_path, device="cpu", threads=1, speed=speed)
        prediction = predictor.predict(phantom.ct, postprocess=None)
        assert prediction.provenance["settings"]["speed"]["channels_last"] is channels_last
        results.append(prediction.prob_ctv.array)
    assert np.abs(results[0] - results[1]).max() < 1e-4


def test_window_plan() -> None:
    device = torch.device("cpu")
    whole = plan_inference((20, 40, 40), first_level_channels=4, size_multiple=4, device=device)
    assert whole.mode == "whole"
    plan = plan_inference(
        (100, 300, 300), first_level_channels=16, size_multiple=16, device=device, max_voxels=10**6
    )
    assert plan.mode == "sliding_window"
    assert all(edge % 16 == 0 for edge in plan.roi_size_zyx)
    assert np.prod(plan.roi_size_zyx) <= 10**6
    assert window_size((32, 64, 64), 10, 16) == (32, 32, 32)  # never below the floor edge


def test_a_model_without_dropout_gives_zero_mutual_information(phantom, tmp_path: Path) -> None:
    path = make_tiny_model(tmp_path, phantom.ct, name="no-dropout", dropout_where="none")
    # Input voxels (3.7 mm) finer than the model's (5 mm): interpolation must invent nothing.
    geometry = make_geometry(
        "oblique", shape_zyx=phantom.ct.geometry.shape_zyx, spacing_xyz_mm=(3.7, 3.7, 4.1)
    )
    prediction = Predictor.from_file(path, device="cpu", threads=1).predict(
        Volume(phantom.ct.array, geometry), mc_samples=5
    )
    assert not prediction.uncertainty.mutual_information.any()
    assert prediction.uncertainty.entropy.max() > 0
    assert any("no dropout" in warning for warning in prediction.warnings)


def test_gpu_out_of_memory_falls_back_to_the_cpu() -> None:
    calls: list[str] = []

    def attempt(device: torch.device) -> str:
        calls.append(device.type)
        if device.type == "cuda":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "done"

    result, used, warning = with_cpu_fallback(attempt, torch.device("cuda"))
    assert (result, used.type, calls) == ("done", "cpu", ["cuda", "cpu"])
    assert "ran out of memory" in warning


def test_cpu_out_of_memory_is_a_clear_error() -> None:
    def attempt(device: torch.device) -> None:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate")

    with pytest.raises(MemoryBudgetError, match="not enough memory"):
        with_cpu_fallback(attempt, torch.device("cpu"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))

    def broken(device: torch.device) -> None:
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        with_cpu_fallback(broken, torch.device("cuda"))


def test_cancel_before_the_network(predictor: Predictor, phantom) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CancelledError):
        predictor.predict(phantom.ct, cancel=cancel)


def test_progress_reports_every_stage_in_order(predictor: Predictor, phantom) -> None:
    events: list[tuple[str, float]] = []
    predictor.predict(
        phantom.ct, mc_samples=2, progress=lambda stage, f, message: events.append((stage, f))
    )
    stages = list(dict.fromkeys(stage for stage, _ in events))
    expected = ["preprocess", "network", "uncertainty", "resample", "postprocess", "summary"]
    assert stages == expected
    assert all(0.0 <= f <= 1.0 for _, f in events)


def test_bad_inputs_are_refused(predictor: Predictor, phantom) -> None:
    broken = phantom.ct.array.copy()
    broken[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        predictor.predict(phantom.ct.with_array(broken))
    with pytest.raises(TypeError):
        predictor.predict(phantom.ct.array)  # type: ignore[arg-type]


def test_a_model_for_other_inputs_is_refused(model_path: Path) -> None:
    model, card = load_model(model_path)
    with pytest.raises(ModelFileError, match="takes the CT alone"):
        Predictor(model, card.replace(input_channels=("ct", "sparse_label")), device="cpu")


def test_missing_bundled_model_says_how_to_get_one(monkeypatch, tmp_path: Path) -> None:
    from AutoCTVLib.models import bundled

    monkeypatch.setattr(
        bundled, "bundled_model_candidates", lambda: [tmp_path / "ctv_pelvis_cascade.safetensors"]
    )
    with pytest.raises(ModelFileError, match="autoctv train") as raised:
        find_bundled_model()
    assert "\n" not in str(raised.value)
