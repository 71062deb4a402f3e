"""Monte-Carlo sampling in bfloat16: only the decoder passes, the plain prediction stays float32,
and the sampling threads run under the caller's autocast."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from predict_support import tiny_config

from AutoCTVLib.predict import mc as mc_module
from AutoCTVLib.predict import speed as speed_module
from AutoCTVLib.predict.mc import MCSettings, sample_moments
from AutoCTVLib.predict.mc_decoder import SampledDecoder
from AutoCTVLib.predict.network_stage import run_network
from AutoCTVLib.predict.speed import SpeedSettings

SPACING = (5.0, 5.0, 5.0)


def test_the_setting_is_checked_and_auto_follows_the_hardware(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValueError, match="bf16_sampling must be one of"):
        SpeedSettings(bf16_sampling="yes")
    cpu, mps = torch.device("cpu"), torch.device("mps")
    import AutoCTVLib.device as device_module

    monkeypatch.setattr(device_module, "native_bf16", lambda device: device.type == "cpu")
    assert SpeedSettings().samples_in_bf16(cpu)
    assert not SpeedSettings().samples_in_bf16(mps)
    assert not SpeedSettings(bf16_sampling="off").samples_in_bf16(cpu)
    monkeypatch.setattr(device_module, "native_bf16", lambda device: False)
    assert not SpeedSettings().samples_in_bf16(cpu)
    assert SpeedSettings(bf16_sampling="on").samples_in_bf16(cpu)
    assert SpeedSettings(bf16_autocast=True, bf16_sampling="off").samples_in_bf16(cpu)
    assert speed_module.BF16_SAMPLING == ("auto", "on", "off")


def test_sampling_threads_run_under_the_callers_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    network = build_unet()
    x = torch.rand((1, 1, 20, 28, 24), generator=torch.Generator().manual_seed(4))
    settings = MCSettings(samples=6, boundary_crop=False, seed=2)
    dtypes: set[torch.dtype] = set()
    original = SampledDecoder.__call__

    def recorded(self: SampledDecoder, count: int = 1, generator=None) -> torch.Tensor:
        logits = original(self, count, generator)
        dtypes.add(logits.dtype)
        return logits

    monkeypatch.setattr(mc_module.SampledDecoder, "__call__", recorded)
    torch.set_num_threads(2)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        one = sample_moments(network, x, settings, (5.0, 4.0, 4.0), decode_batch=2, workers=1)
        two = sample_moments(network, x, settings, (5.0, 4.0, 4.0), decode_batch=2, workers=2)
    assert dtypes == {torch.bfloat16}  # in the worker threads too
    for name in ("mean_prob", "mean_sq_prob", "mean_entropy"):
        difference = float((getattr(one, name) - getattr(two, name)).abs().max())
        assert difference < 1e-3, name  # the same masks; only bf16 rounding may differ


def build_unet() -> torch.nn.Module:
    from AutoCTVLib.nn import build_network

    return build_network(tiny_config(steps=1), seed=0).eval()


def test_bf16_sampling_keeps_the_contour_float32_and_the_maps_close() -> None:
    network = build_unet()
    image = torch.rand((20, 28, 24), generator=torch.Generator().manual_seed(8)).numpy()
    results = {}
    for mode in ("off", "on"):
        results[mode] = run_network(
            network,
            image,
            SPACING,
            device=torch.device("cpu"),
            speed=SpeedSettings(bf16_sampling=mode),
            mc=MCSettings(samples=8, seed=5),
        )
    exact, rounded = results["off"], results["on"]
    assert (exact.sampling_precision, rounded.sampling_precision) == ("float32", "bfloat16")
    assert np.array_equal(exact.plain_prob, rounded.plain_prob)
    assert exact.moments is not None and rounded.moments is not None
    for name, a, b in zip(("mean p", "mean p²", "entropy"), exact.moments, rounded.moments):
        difference = np.abs(a - b)
        # the same masks; activations rounded to 8-bit mantissas through the decoder
        assert float(difference.mean()) < 0.005 and float(difference.max()) < 0.05, name
        assert float(difference.max()) > 0, name  # it did run in bf16
