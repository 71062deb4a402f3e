"""Test-time left-right mirroring (card ``inference.mirror_left_right``): the plain probability
is the mean of the network on the image and on its mirror, mirrored back; MC is left alone."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from predict_support import make_tiny_model, tiny_phantom

from AutoCTVLib.errors import ModelFileError
from AutoCTVLib.models import load_model
from AutoCTVLib.predict import Predictor
from AutoCTVLib.predict import predictor as predictor_module


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


def test_mc_sampling_is_not_mirrored(loaded, phantom, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    original = predictor_module.run_network

    def counting(network, image, *args, **kwargs):
        calls.append(kwargs.get("mc"))
        return original(network, image, *args, **kwargs)

    monkeypatch.setattr(predictor_module, "run_network", counting)
    result = with_inference(loaded, mirror_left_right=True).predict(phantom.ct, mc_samples=3)
    assert len(calls) == 1 and calls[0] is not None
    assert result.provenance["settings"]["mirror_left_right"] is False


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
