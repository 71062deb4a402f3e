"""Sliding-window inference: coverage, exact blending, padding, cancel and progress."""

from __future__ import annotations

import math
import threading

import pytest
import torch

from AutoCTVLib.errors import CancelledError
from AutoCTVLib.inference.gaussian import (
    IMPORTANCE_FLOOR,
    constant_importance_map,
    gaussian_importance_map,
)
from AutoCTVLib.inference.sliding_window import (
    needs_sliding_window,
    sliding_window_inference,
    window_slices,
    window_starts,
)


def integer_image(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Integer-valued float32 image: sums of a few copies are exact in float32."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(-50, 50, shape, generator=generator).to(torch.float32)


class CountingPredictor:
    """Identity predictor that records the shape of every batch it sees."""

    def __init__(self, transform=None) -> None:
        self.calls: list[tuple[int, ...]] = []
        self.inputs: list[torch.Tensor] = []
        self.transform = transform or (lambda x: x.clone())

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(windows.shape))
        self.inputs.append(windows.clone())
        return self.transform(windows)


def expected_window_count(shape, roi, overlap) -> int:
    count = 1
    for size, r in zip(shape, roi):
        if size <= r:
            continue
        step = max(1, math.floor(r * (1 - overlap)))
        count *= math.ceil((size - r) / step) + 1
    return count


@pytest.mark.parametrize(
    ("shape", "roi"),
    [
        ((1, 1, 20, 17, 13), (8, 8, 8)),  # odd sizes, several windows per axis
        ((2, 3, 11, 9, 16), (5, 4, 7)),  # batch and channels, odd window
        ((1, 1, 8, 8, 8), (8, 8, 8)),  # exactly one window
    ],
)
@pytest.mark.parametrize("importance", ["constant", "gaussian"])
def test_identity_predictor_reproduces_the_input(shape, roi, importance) -> None:
    image = integer_image(shape)
    predictor = CountingPredictor()
    output = sliding_window_inference(
        image, roi, predictor, overlap=0.5, sw_batch_size=3, importance=importance
    )
    assert output.shape == image.shape
    assert output.dtype == torch.float32
    if importance == "constant":
        assert torch.equal(output, image)
    else:
        torch.testing.assert_close(output, image, rtol=1e-6, atol=1e-5)
    # Every window the predictor saw had the requested size.
    assert all(call[2:] == roi for call in predictor.calls)


def test_linear_predictor_with_more_output_channels() -> None:
    image = integer_image((2, 1, 13, 10, 9), seed=1)
    output = sliding_window_inference(
        image,
        (6, 6, 6),
        lambda x: torch.cat([2 * x + 1, -x], dim=1),
        overlap=0.25,
        importance="gaussian",
    )
    assert output.shape == (2, 2, 13, 10, 9)
    torch.testing.assert_close(output[:, 0:1], 2 * image + 1, rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(output[:, 1:2], -image, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize(
    ("shape", "roi", "overlap"),
    [
        ((20, 17, 13), (8, 8, 8), 0.5),
        ((33, 40, 41), (16, 16, 16), 0.25),
        ((9, 30, 7), (8, 8, 8), 0.0),
        ((64, 64, 64), (32, 32, 32), 0.5),
    ],
)
def test_window_count_and_coverage(shape, roi, overlap) -> None:
    predictor = CountingPredictor()
    image = torch.zeros((1, 1, *shape))
    sliding_window_inference(image, roi, predictor, overlap=overlap, sw_batch_size=1)
    assert len(predictor.calls) == expected_window_count(shape, roi, overlap)

    windows = window_slices(shape, roi, overlap)
    assert len(windows) == len(predictor.calls)
    covered = torch.zeros(shape, dtype=torch.int32)
    for window in windows:
        covered[window] += 1
    assert int(covered.min()) >= 1
    for axis, (size, r) in enumerate(zip(shape, roi)):
        starts = sorted({w[axis].start for w in windows})
        assert starts[0] == 0
        assert starts[-1] == max(0, size - r)  # last window aligned to the far edge
        if len(starts) > 1:
            # neighbours overlap by at least the requested fraction
            gaps = [b - a for a, b in zip(starts, starts[1:])]
            assert max(gaps) <= max(1, math.floor(r * (1 - overlap)))


def test_batches_of_windows() -> None:
    predictor = CountingPredictor()
    image = integer_image((2, 1, 20, 17, 13))
    windows = expected_window_count((20, 17, 13), (8, 8, 8), 0.5)
    output = sliding_window_inference(image, (8, 8, 8), predictor, sw_batch_size=4)
    assert len(predictor.calls) == math.ceil(windows / 4)
    assert predictor.calls[0][0] == 4 * 2  # 4 windows × batch of 2
    assert sum(call[0] for call in predictor.calls) == windows * 2
    torch.testing.assert_close(output, image, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("padding_mode", ["constant", "replicate", "reflect"])
def test_volume_smaller_than_the_window(padding_mode) -> None:
    image = integer_image((1, 2, 5, 6, 20), seed=3)
    predictor = CountingPredictor()
    output = sliding_window_inference(
        image, (8, 8, 8), predictor, padding_mode=padding_mode, importance="gaussian"
    )
    assert output.shape == image.shape
    torch.testing.assert_close(output, image, rtol=1e-6, atol=1e-5)
    assert all(call[2:] == (8, 8, 8) for call in predictor.calls)
    # Along x (20 voxels) windows slide; z and y are padded into one window each.
    assert len(predictor.calls) == expected_window_count((8, 8, 20), (8, 8, 8), 0.5)


def test_constant_padding_value_reaches_the_predictor() -> None:
    image = torch.zeros((1, 1, 3, 8, 8))
    predictor = CountingPredictor()
    sliding_window_inference(image, (8, 8, 8), predictor, padding_value=-7.0)
    seen = predictor.inputs[0][0, 0]
    # 5 padded slices split 2 before and 3 after the 3 real ones.
    assert torch.all(seen[:2] == -7.0) and torch.all(seen[5:] == -7.0)
    assert torch.all(seen[2:5] == 0.0)


def test_reflect_padding_rejects_a_too_small_volume() -> None:
    with pytest.raises(ValueError, match="reflect"):
        sliding_window_inference(
            torch.zeros((1, 1, 2, 8, 8)), (8, 8, 8), lambda x: x, padding_mode="reflect"
        )


def test_cancel_between_windows() -> None:
    cancel = threading.Event()
    calls = []

    def predictor(windows: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        cancel.set()  # the user presses Cancel while the first window runs
        return windows

    with pytest.raises(CancelledError):
        sliding_window_inference(
            torch.zeros((1, 1, 20, 20, 20)), (8, 8, 8), predictor, cancel=cancel
        )
    assert len(calls) == 1


def test_cancel_before_start_runs_nothing() -> None:
    cancel = threading.Event()
    cancel.set()
    predictor = CountingPredictor()
    with pytest.raises(CancelledError):
        sliding_window_inference(torch.zeros((1, 1, 9, 9, 9)), (8, 8, 8), predictor, cancel=cancel)
    assert predictor.calls == []


def test_progress_reaches_one() -> None:
    fractions: list[float] = []
    sliding_window_inference(
        torch.zeros((1, 1, 20, 17, 13)),
        (8, 8, 8),
        lambda x: x,
        sw_batch_size=5,
        progress=fractions.append,
    )
    total = expected_window_count((20, 17, 13), (8, 8, 8), 0.5)
    assert len(fractions) == math.ceil(total / 5)
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert 0.0 < fractions[0] < 1.0


def test_wrong_predictor_output_is_reported() -> None:
    with pytest.raises(ValueError, match="predictor returned shape"):
        sliding_window_inference(torch.zeros((1, 1, 9, 9, 9)), (8, 8, 8), lambda x: x[:, :, :4])
    with pytest.raises(ValueError, match="must return a tensor"):
        sliding_window_inference(torch.zeros((1, 1, 9, 9, 9)), (8, 8, 8), lambda x: x.numpy())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"overlap": 1.0},
        {"overlap": -0.1},
        {"sw_batch_size": 0},
        {"importance": "box"},
        {"padding_mode": "circular"},
        {"overlap": (0.5, 0.5)},
    ],
)
@pytest.mark.parametrize("shape", [(1, 1, 9, 9, 9), (1, 1, 4, 4, 4)])
def test_bad_arguments(kwargs, shape) -> None:
    with pytest.raises(ValueError):
        sliding_window_inference(torch.zeros(shape), (8, 8, 8), lambda x: x, **kwargs)


def test_bad_image_and_window_shapes() -> None:
    with pytest.raises(ValueError, match="N, C, Z, Y, X"):
        sliding_window_inference(torch.zeros((1, 9, 9, 9)), (8, 8, 8), lambda x: x)
    with pytest.raises(ValueError, match="roi_size_zyx"):
        sliding_window_inference(torch.zeros((1, 1, 9, 9, 9)), (8, 0, 8), lambda x: x)


def test_per_axis_overlap() -> None:
    predictor = CountingPredictor()
    sliding_window_inference(
        torch.zeros((1, 1, 16, 16, 16)), (8, 8, 8), predictor, overlap=(0.0, 0.5, 0.75)
    )
    # z: step 8 → 2 windows; y: step 4 → 3; x: step 2 → 5
    assert len(predictor.calls) == 2 * 3 * 5


def test_window_starts_spread_evenly() -> None:
    assert window_starts(10, 4, 0.5) == [0, 2, 4, 6]
    starts = window_starts(11, 4, 0.5)
    assert starts[0] == 0 and starts[-1] == 7 and len(starts) == 5
    assert window_starts(3, 8, 0.5) == [0]


def test_gaussian_importance_map() -> None:
    weights = gaussian_importance_map((9, 8, 7), sigma_scale=0.125)
    assert weights.shape == (9, 8, 7)
    assert weights.dtype == torch.float32
    assert float(weights.max()) == pytest.approx(1.0)
    assert float(weights.min()) >= IMPORTANCE_FLOOR
    # symmetric about the centre along every axis
    for axis in range(3):
        torch.testing.assert_close(weights, torch.flip(weights, dims=[axis]))
    # the odd z axis has its peak at the central slice
    assert int(torch.argmax(weights.amax(dim=(1, 2)))) == 4
    assert torch.equal(constant_importance_map((2, 3, 4)), torch.ones((2, 3, 4)))


def test_output_device_and_dtype() -> None:
    image = integer_image((1, 1, 10, 10, 10)).to(torch.float64)
    output = sliding_window_inference(
        image, (8, 8, 8), lambda x: x, window_device="cpu", output_device="cpu"
    )
    assert output.dtype == torch.float32 and output.device.type == "cpu"
    torch.testing.assert_close(output, image.float(), rtol=1e-6, atol=1e-5)


def test_needs_sliding_window() -> None:
    assert needs_sliding_window((100, 512, 512), 128**3)
    assert not needs_sliding_window((64, 128, 128), 64 * 128 * 128)
    with pytest.raises(ValueError):
        needs_sliding_window((1, 1, 1), 0)


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.6, 0.9])
def test_window_starts_properties(overlap) -> None:
    for roi in range(1, 13):
        step = max(1, math.floor(roi * (1 - overlap)))
        for size in range(roi + 1, 50):
            starts = window_starts(size, roi, overlap)
            assert starts[0] == 0 and starts[-1] == size - roi
            gaps = [b - a for a, b in zip(starts, starts[1:])]
            assert min(gaps) >= 1 and max(gaps) <= step
            assert len(starts) == math.ceil((size - roi) / step) + 1
