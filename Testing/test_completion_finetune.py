"""Sparse-slice completion, "finetune" method: weight-0 unknown voxels, time bound, quality."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from AutoCTVLib.completion import Annotation, FinetuneConfig, complete
from AutoCTVLib.completion.finetune import finetune_loss, finetune_network, finetune_sample
from AutoCTVLib.completion.grid import INPUT_CHANNELS, prepare_inputs
from AutoCTVLib.completion.model import untrained_model, widen_ctv_network
from AutoCTVLib.errors import CancelledError, ModelFileError
from AutoCTVLib.metrics import dice
from AutoCTVLib.models import ModelCard, ctv_label, save_model
from AutoCTVLib.nn import NetworkConfig, build_network
from AutoCTVLib.volume import Geometry, Volume

SHAPE = (16, 20, 20)
GEOMETRY = Geometry(SHAPE, (3.0, 3.0, 3.0), (-30.0, -30.0, 10.0))
TINY = {"channels": (8, 16)}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks run fastest single-threaded (and leave the other core to other work)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def cylinder() -> tuple[Volume, np.ndarray]:
    """A bright cylinder along z through the whole volume, in noisy darker tissue."""
    _, y, x = np.indices(SHAPE)
    mask = (y - 9.5) ** 2 + (x - 10.2) ** 2 <= 5.2**2
    noise = np.random.default_rng(0).normal(0.0, 10.0, SHAPE)
    ct = (np.where(mask, 60.0, -80.0) + noise).astype(np.float32)
    return Volume(ct, GEOMETRY), mask


def sparse_volume(mask: np.ndarray, annotation: Annotation) -> Volume:
    return Volume((mask & annotation.known_mask(SHAPE)).astype(np.uint8), GEOMETRY)


def gradients(network: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in network.parameters() if p.grad is not None]


def test_unknown_voxels_have_zero_weight_in_the_finetuning_loss() -> None:
    ct, mask = cylinder()
    annotation = Annotation(z=(0, 5, 10, 15))
    inputs = prepare_inputs(ct, mask & annotation.known_mask(SHAPE), annotation)
    sample = finetune_sample(inputs, np.random.default_rng(3), (32, 48, 48))
    known = sample.weight > 0
    assert torch.equal(known[0, 0], torch.from_numpy(inputs.known > 0))
    assert 0 < int(known.sum()) < known.numel()
    network = untrained_model(seed=1, **TINY).network
    network.train()
    loss = finetune_loss(network, sample)
    loss.backward()
    reference_grads = gradients(network)
    changed_target = torch.where(known, sample.target, torch.rand_like(sample.target).round())
    assert not torch.equal(changed_target, sample.target)
    network.zero_grad()
    changed = type(sample)(sample.inputs, changed_target, sample.weight)
    changed_loss = finetune_loss(network, changed)
    changed_loss.backward()
    assert torch.equal(changed_loss, loss)
    for before, after in zip(reference_grads, gradients(network)):
        assert torch.equal(before, after)


def test_changing_unannotated_paint_changes_nothing() -> None:
    ct, mask = cylinder()
    annotation = Annotation(z=(0, 5, 10, 15))
    clean = sparse_volume(mask, annotation)
    scribbled = clean.array.copy()
    scribbled[7, 2:9, 2:18] = 1  # slice 7 is not annotated: its voxels are unknown
    scribbled[12] = 1
    config = FinetuneConfig(time_budget_s=60.0, max_steps=3, seed=4, learning_rate=1e-2)
    results = [
        complete(
            ct,
            Volume(array, GEOMETRY),
            method="finetune",
            annotation=annotation,
            model=untrained_model(seed=2, **TINY),
            finetune=config,
        )
        for array in (clean.array, scribbled)
    ]
    assert results[0].details["finetune_steps"] == 3
    np.testing.assert_array_equal(results[0].mask.array, results[1].mask.array)
    np.testing.assert_array_equal(results[0].probability.array, results[1].probability.array)


def test_some_annotated_planes_are_hidden_from_the_input_each_step() -> None:
    ct, mask = cylinder()
    annotation = Annotation(z=(0, 5, 10, 15))
    inputs = prepare_inputs(ct, mask & annotation.known_mask(SHAPE), annotation)
    planes = inputs.model_annotation.z
    rng = np.random.default_rng(0)
    for _ in range(20):
        sample = finetune_sample(inputs, rng, (32, 48, 48))
        visible = sample.inputs[0, 2].amax(dim=(1, 2)) > 0
        shown = [plane for plane in planes if bool(visible[plane])]
        assert 1 <= len(shown) < len(planes)
        assert torch.equal(
            sample.inputs[0, 1][~visible], torch.zeros_like(sample.inputs[0, 1][~visible])
        )
        assert torch.equal(sample.target[0, 0], torch.from_numpy(inputs.sparse))


def test_cylinder_from_scratch_is_near_perfect() -> None:
    ct, mask = cylinder()
    annotation = Annotation(z=(0, 5, 10, 15))
    result = complete(
        ct,
        sparse_volume(mask, annotation),
        method="finetune",
        annotation=annotation,
        model=untrained_model(seed=0, **TINY),
        finetune=FinetuneConfig(time_budget_s=120.0, max_steps=60, learning_rate=2e-2),
    )
    assert result.details["finetune_steps"] == 60
    known = annotation.known_mask(SHAPE)
    np.testing.assert_array_equal(result.mask.array[known], mask[known])
    assert dice(result.mask.array, mask) > 0.92


def test_time_budget_cancel_and_the_original_network_is_untouched() -> None:
    ct, mask = cylinder()
    annotation = Annotation(z=(0, 8, 15))
    inputs = prepare_inputs(ct, mask & annotation.known_mask(SHAPE), annotation)
    network = untrained_model(seed=5, **TINY).network
    before = [p.detach().clone() for p in network.parameters()]
    _, report = finetune_network(network, inputs, FinetuneConfig(time_budget_s=0.0))
    assert report.steps == 0
    tuned, report = finetune_network(network, inputs, FinetuneConfig(max_steps=2))
    assert report.steps == 2 and report.final_loss is not None and not tuned.training
    changed = any(not torch.equal(a, b) for a, b in zip(before, tuned.parameters()))
    assert changed
    for a, b in zip(before, network.parameters()):
        assert torch.equal(a, b)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CancelledError):
        finetune_network(network, inputs, FinetuneConfig(max_steps=2), cancel=cancel)


def tiny_ctv_network() -> torch.nn.Module:
    config = NetworkConfig(channels=(8, 16), recurrent_steps=2, residual=True, norm="batch")
    network = build_network(config, seed=3)
    network.eval()
    return network


def test_widened_ctv_network_first_predicts_what_the_ctv_network_does() -> None:
    ctv = tiny_ctv_network()
    widened = widen_ctv_network(ctv)
    assert widened.config.in_channels == len(INPUT_CHANNELS)
    image = torch.rand(1, 1, 8, 12, 12)
    extra = torch.rand(1, len(INPUT_CHANNELS) - 1, 8, 12, 12)
    with torch.no_grad():
        expected = ctv(image)
        actual = widened(torch.cat([image, extra], dim=1))
    torch.testing.assert_close(actual, expected)
    # A residual first level that would lose its input projection cannot be widened exactly.
    first = len(INPUT_CHANNELS) + 1  # widened inputs plus the fed-back probability
    odd = build_network(
        NetworkConfig(channels=(first, 8), recurrent_steps=2, residual=True), seed=0
    )
    with pytest.raises(ModelFileError, match="cannot be widened"):
        widen_ctv_network(odd)


def test_a_ctv_model_file_starts_finetuning_but_not_learned(tmp_path) -> None:
    ctv = tiny_ctv_network()
    card = ModelCard(
        name="tiny-ctv",
        version="0.0.1",
        architecture=ctv.config.to_dict(),
        preprocessing={"spacing_xyz_mm": [3.0, 3.0, 3.0], "hu_window": [-1000, 1600]},
        labels=(ctv_label(),),
    )
    save_model(ctv, card, tmp_path / "ctv")
    ct, mask = cylinder()
    sparse = sparse_volume(mask, Annotation(z=(0, 7, 15)))
    result = complete(
        ct, sparse, method="finetune", model=tmp_path / "ctv", finetune=FinetuneConfig(max_steps=1)
    )
    assert result.details["model_name"] == "tiny-ctv" and result.details["finetune_steps"] == 1
    with pytest.raises(ModelFileError, match="not a completion model"):
        complete(ct, sparse, method="learned", model=tmp_path / "ctv")
