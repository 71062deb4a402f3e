"""Where the bundled CTV models live, and a clear error when one is not there.

The default CTV model is the coarse-to-fine cascade ``ctv_pelvis_cascade.safetensors`` with its
card ``ctv_pelvis_cascade.json`` (a 6 mm locator and a 2 × 2 × 3 mm segmenter in one file set).
Beside it lies the single-stage 6 mm model ``ctv_pelvis_phantom.*``: the cascade's locator and
the start of segmenter training (``LOCATOR_MODEL_STEM``), still usable with ``--model``. Both
sit in a ``Resources/Models`` folder, looked for

1. beside the library: ``<folder holding AutoCTVLib>/Resources/Models`` — the repository root
   in a source checkout, and the Slicer module's folder in an installed extension (the library
   is installed next to the scripted module, whose resources sit in ``Resources/``);
2. in the Slicer module's source folder: ``<repository>/AutoCTV/Resources/Models``.

No environment variable is consulted; pass an explicit path (``--model FILE``) to use another
model.
"""

from __future__ import annotations

from pathlib import Path

from AutoCTVLib.errors import ModelFileError
from AutoCTVLib.models.card import ModelCard, model_paths, read_card

#: The default CTV model: the coarse-to-fine cascade (locator + fine-grid segmenter).
BUNDLED_MODEL_STEM = "ctv_pelvis_cascade"
#: The single-stage 6 mm CTV model: the locator (stage 1) that cascade segmenters are trained for.
LOCATOR_MODEL_STEM = "ctv_pelvis_phantom"
_MODEL_FOLDERS = (Path("Resources") / "Models", Path("AutoCTV") / "Resources" / "Models")


def bundled_model_candidates(stem: str = BUNDLED_MODEL_STEM) -> list[Path]:
    """Every place the bundled weights file ``<stem>.safetensors`` is looked for, in order."""
    library_parent = Path(__file__).resolve().parents[2]
    return [library_parent / folder / f"{stem}.safetensors" for folder in _MODEL_FOLDERS]


def find_bundled_model(stem: str = BUNDLED_MODEL_STEM) -> Path:
    """Path of a bundled model's weights file (its card lies beside it); by default the CTV
    model ``autoctv predict`` uses.

    Raises:
        ModelFileError: no bundled model is installed; the message says how to get one.
    """
    default = stem == BUNDLED_MODEL_STEM  # (the default search can be replaced in tests)
    candidates = bundled_model_candidates() if default else bundled_model_candidates(stem)
    for weights in candidates:
        if weights.is_file() and weights.with_suffix(".json").is_file():
            return weights
    raise ModelFileError(
        f"the bundled model {stem} is not installed (looked in "
        f"{candidates[0].parent}); train one with 'autoctv train' and copy its model "
        f".safetensors and .json there as {stem}.*, or pass --model FILE"
    )


def resolve_model_path(path: str | Path | None) -> Path:
    """``path`` when given (it must exist), else the bundled model."""
    if path is None:
        return find_bundled_model()
    candidate = Path(path).expanduser()
    if not candidate.exists() and not candidate.with_suffix(".safetensors").exists():
        raise ModelFileError(f"model file {candidate} not found")
    return candidate


def resolve_ctv_model(model_path: str | Path | None) -> tuple[Path, ModelCard]:
    """The card path and card of a CTV model: ``model_path``, or the bundled model when None.

    Needs no torch (front ends call it before PyTorch is installed); the weights are checked
    when the model is loaded.

    Raises:
        ModelFileError: the card or weights are missing or unreadable, or the card is not a
            CTV contouring model (e.g. a completion model, which takes more than the CT).
    """
    card_path = find_bundled_model() if model_path is None else model_paths(model_path)[1]
    weights, card_path = model_paths(card_path)
    card = read_card(card_path)
    if not weights.is_file():
        raise ModelFileError(f"model weights {weights} not found")
    if card.input_channels != ("ct",):
        raise ModelFileError(
            f"{card_path.name} is not a CTV contouring model: it takes "
            f"{', '.join(card.input_channels)} as input, a CTV model takes the CT alone"
        )
    return card_path, card


def ctv_model_summary(model_path: str | Path | None) -> str:
    """One line describing a CTV model for a front end: name, version, voxel size, disclaimer."""
    _, card = resolve_ctv_model(model_path)
    parts = [f"{card.name} {card.version}"]
    spacing = card.preprocessing.get("spacing_xyz_mm")
    if spacing:
        parts.append("spacing " + "×".join(f"{float(v):g}" for v in spacing) + " mm")
    if card.is_cascade:
        locator = card.stages[0].get("preprocessing", {}).get("spacing_xyz_mm")
        found = " on " + "×".join(f"{float(v):g}" for v in locator) + " mm" if locator else ""
        parts[-1] += f" (cascade: the CTV found{found} first)"
    if card.disclaimer:
        parts.append(card.disclaimer)
    return "; ".join(parts)
