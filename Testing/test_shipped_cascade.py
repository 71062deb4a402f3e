"""The shipped coarse-to-fine cascade (``Resources/Models/ctv_pelvis_cascade``): an honest card,
stages that fit their weights, and a real contour on an unseen phantom.

It is the default CTV model (``autoctv predict`` without ``--model``, the Slicer module, the
Python API); the 6 mm model beside it is its locator. The phantom uses a seed outside every
training and test range.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file

from AutoCTVLib.metrics import dice
from AutoCTVLib.models import load_model, read_card
from AutoCTVLib.models.bundled import LOCATOR_MODEL_STEM, find_bundled_model, resolve_ctv_model
from AutoCTVLib.models.model_file import check_model_file
from AutoCTVLib.phantom import PhantomConfig, generate_phantom
from AutoCTVLib.predict import Predictor

CASCADE = Path(__file__).resolve().parents[1] / "Resources" / "Models" / "ctv_pelvis_cascade.json"
#: The 6 mm model measured Dice 0.786 on this phantom (Testing/test_bundled_model.py); the
#: cascade's held-out mean is 0.920 and its lowest case 0.900 (card metrics.held_out).
MIN_DICE = 0.85


def test_card_describes_both_stages_and_says_synthetic_only() -> None:
    card = check_model_file(CASCADE)
    disclaimer = card.disclaimer.lower()
    assert "synthetic" in disclaimer and "not for clinical use" in disclaimer
    assert [stage["name"] for stage in card.stages] == ["locator", "segmenter"]
    assert card.preprocessing["spacing_xyz_mm"] == [2.0, 2.0, 3.0]
    assert read_card(CASCADE).weights_sha256 == card.weights_sha256
    # Its numbers and history: held-out summaries, where the fine-tuning started, the budget.
    held_out = card.metrics["held_out"]["groups"]["all"]
    assert held_out["cases"] == 40 and held_out["dice_mean"] >= 0.92
    assert held_out["dice_min"] >= 0.88 and held_out["hd95_max_mm"] <= 10.0
    assert card.training_data["initialised_from"]["version"] == "0.3.0"
    assert "Phase 2" in card.training_data["budget"]
    assert card.inference["mirror_left_right"] is True


def test_it_is_the_default_model_and_its_locator_is_the_bundled_6mm_model() -> None:
    assert find_bundled_model() == CASCADE.with_suffix(".safetensors")
    assert resolve_ctv_model(None)[0] == CASCADE
    card = read_card(CASCADE)
    locator = read_card(find_bundled_model(LOCATOR_MODEL_STEM))
    assert card.stages[0]["architecture"] == locator.architecture
    assert card.stages[0]["preprocessing"]["spacing_xyz_mm"] == [6.0, 6.0, 6.0]
    # the very weights of the 6 mm model, not just its architecture
    cascade = load_file(CASCADE.with_suffix(".safetensors"))
    alone = load_file(find_bundled_model(LOCATOR_MODEL_STEM))
    stage_1 = {k[len("locator.") :]: v for k, v in cascade.items() if k.startswith("locator.")}
    assert stage_1.keys() == alone.keys()
    assert all(np.array_equal(stage_1[name], alone[name]) for name in alone)


def test_contours_an_unseen_phantom_on_its_own_grid() -> None:
    torch.set_num_threads(2)
    model, card = load_model(CASCADE)
    phantom = generate_phantom(
        PhantomConfig(seed=4242, size_xyz=(256, 256, 60), spacing_xyz_mm=(1.95, 1.95, 5.0))
    )
    prediction = Predictor(model, card, device="cpu").predict(phantom.ct)
    assert prediction.label.geometry.is_close(phantom.ct.geometry)
    measured = dice(prediction.label.array, phantom.ctv_reference.array)
    print(f"cascade, seed 4242 phantom: Dice {measured:.3f}")
    assert measured >= MIN_DICE
