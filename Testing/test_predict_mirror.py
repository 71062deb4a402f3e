"""Test-time left-right mirroring (card ``inference.mirror_left_right``): the plain probability
is the mean of the network on the image and on its mirror, mirrored back; MC samples are split
between the two orientations."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from predict_support import make_tiny_model, tiny_phantom

from AutoCTVLib.errors import ModelFileError
from AutoCTVLib.models import load_model
from AutoCTVLib.predict import MCSettings, Predictor
from AutoCTVLib.predict import predictor as predictor_module
from AutoCTVLib.predict.mirror import run_mirrored
from AutoCTVLib.predict.network_stage import NetworkResult


@pytest.fixture(scope="module")
def phantom():
    return tiny_phantom(seed=11)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory, phantom):
    return load_model(make_tiny_model(tmp_path_factory.mktemp("mirror"), phantom.ct))


def with_inference(loaded, **inference: object) -> Predictor:
    model, card = loaded
    card = dataclasses.replace(card, inference={"threshold": 0.5, **inference})
    return Predictor(model, card, device="cpu")


def test_the_second_pass_sees_the_mirror(loaded, phantom, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[np.ndarray] = []
    original = predictor_module.run_network

    def recording(network, image, *args, **kwargs):
        seen.append(np.array(image))
        return original(network, image, *args, **kwargs)

    monkeypatch.setattr(predictor_module, "run_network", recording)
    plain = with_inference(loaded).predict(phantom.ct, postprocess=None)
    assert len(seen) == 1
    seen.clear()
    mirrored = with_inference(loaded, mirror_left_right=True).predict(phantom.ct, postprocess=None)
    assert len(seen) == 2
    assert np.array_equal(seen[1], seen[0][..., ::-1])
    assert mirrored.provenance["settings"]["mirror_left_right"] is True
    assert plain.provenance["settings"]["mirror_left_right"] is False
    difference = np.abs(mirrored.prob_ctv.array - plain.prob_ctv.array)
    assert float(difference.max()) > 1e-3  # a random network is not symmetric


def test_the_mirrored_pass_is_mirrored_back(
    loaded, phantom, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in network whose probability is its input: mirrored back and averaged, the
    result must be the plain one exactly (an unmirrored or wrongly mirrored pass is not)."""
    original = predictor_module.run_network

    def identity(network, image, *args, **kwargs):
        result = original(network, image, *args, **kwargs)
        return dataclasses.replace(result, plain_prob=np.array(image, dtype=np.float32))

    monkeypatch.setattr(predictor_module, "run_network", identity)
    plain = with_inference(loaded).predict(phantom.ct, postprocess=None)
    mirrored = with_inference(loaded, mirror_left_right=True).predict(phantom.ct, postprocess=None)
    assert float(np.ptp(plain.prob_ctv.array)) > 0.5  # the stand-in's output is not flat
    np.testing.assert_allclose(mirrored.prob_ctv.array, plain.prob_ctv.array, atol=1e-6)


def test_mc_samples_are_split_between_the_orientations(
    loaded, phantom, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int]] = []
    original = predictor_module.run_network

    def counting(network, image, *args, **kwargs):
        calls.append((kwargs["mc"].samples, kwargs["mc"].seed))
        return original(network, image, *args, **kwargs)

    monkeypatch.setattr(predictor_module, "run_network", counting)
    stages: list[tuple[str, float]] = []
    result = with_inference(loaded, mirror_left_right=True).predict(
        phantom.ct, mc=MCSettings(samples=5, seed=4), progress=lambda s, f, m: stages.append((s, f))
    )
    assert calls == [(3, 4), (2, 5)]  # 5 samples in all, the mirrored half with its own seed
    assert result.provenance["settings"]["mirror_left_right"] is True
    assert result.provenance["settings"]["mc_samples"] == 5
    uncertainty = [fraction for stage, fraction in stages if stage == "uncertainty"]
    assert uncertainty == sorted(uncertainty) and uncertainty[-1] == pytest.approx(1.0)


def test_split_moments_are_the_weighted_means_mirrored_back() -> None:
    """Stand-in runs with known moments: the mirrored half is flipped back and weighted 2:3."""
    image = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    ramp = np.broadcast_to(np.linspace(0.1, 0.9, 4, dtype=np.float32), (2, 3, 4))

    def once(pixels, mc, half):
        value = ramp if half == 0 else ramp[..., ::-1]  # the mirror's answer, mirrored
        moments = (value, value * value, np.full_like(value, 0.2 + half))
        return NetworkResult(
            plain_prob=np.ascontiguousarray(value),
            moments=moments,
            n_samples=mc.samples,
            sampled_fraction=0.5 + half / 2,
            plan=None,  # type: ignore[arg-type]
            device=None,  # type: ignore[arg-type]
            decode_batch=1,
            network_s=1.0,
            sampling_s=2.0,
        )

    result = run_mirrored(once, image, MCSettings(samples=5))
    np.testing.assert_allclose(result.plain_prob, ramp, atol=1e-6)
    np.testing.assert_allclose(result.moments[0], ramp, atol=1e-6)
    np.testing.assert_allclose(result.moments[2], 0.6 * 0.2 + 0.4 * 1.2, atol=1e-6)
    assert result.n_samples == 5 and result.sampled_fraction == pytest.approx(0.75)
    assert (result.network_s, result.sampling_s) == (2.0, 4.0)


def test_bad_mirror_settings_are_refused(loaded, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="mirror_left_right must be true or false"):
        with_inference(loaded, mirror_left_right="yes")
    model, card = loaded
    preprocessing = {**card.preprocessing, "reorient": False}
    unoriented = dataclasses.replace(
        card, preprocessing=preprocessing, inference={"mirror_left_right": True}
    )
    with pytest.raises(ModelFileError, match="needs a reoriented grid"):
        Predictor(model, unoriented, device="cpu")
