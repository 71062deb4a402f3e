"""Tiny models and phantoms for the prediction tests (random weights, a few seconds at most).

A random network's probabilities hardly vary over a volume, which would make every voxel
"doubtful" and every mask empty or full. :func:`make_tiny_model` therefore rescales the
network's last 1×1×1 conv so that its logits on the given CT spread over about ±12 around zero:
the random mask then has confident inside and outside parts and a doubtful boundary, like a
trained model's, while the weights stay random.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from AutoCTVLib.models import SYNTHETIC_DISCLAIMER, ModelCard, ctv_label, save_model
from AutoCTVLib.nn import NetworkConfig, build_network, thesis_config
from AutoCTVLib.phantom import Phantom, PhantomConfig, generate_phantom
from AutoCTVLib.preprocess import PreprocessConfig, preprocess
from AutoCTVLib.volume import Volume

TINY_SPACING_XYZ_MM = (5.0, 5.0, 5.0)


def tiny_phantom(seed: int = 3, **changes: object) -> Phantom:
    """A 64×64×24 phantom at 5 mm (under a second to generate)."""
    options: dict[str, object] = {
        "seed": seed,
        "size_xyz": (64, 64, 24),
        "spacing_xyz_mm": (5.0, 5.0, 5.0),
        "noise_hu": 10.0,
    }
    options.update(changes)
    return generate_phantom(PhantomConfig(**options))  # type: ignore[arg-type]


def tiny_config(
    steps: int = 2, dropout_where: str = "decoder", dropout_p: float = 0.2, **changes: object
) -> NetworkConfig:
    """Thesis blocks (residual + SE) with channels (4, 8, 8) and dropout on."""
    if dropout_where == "none":
        dropout_p = 0.0
    return thesis_config(
        channels=(4, 8, 8),
        recurrent_steps=steps,
        dropout_p=dropout_p,
        dropout_where=dropout_where,
        **changes,
    )


def calibrated_network(
    config: NetworkConfig, ct: Volume, preprocessing: PreprocessConfig, seed: int = 0
) -> torch.nn.Module:
    """A random network whose output on ``ct`` has confident and doubtful parts (see above)."""
    network = build_network(config, seed=seed)
    with torch.no_grad():  # weaker 3×3×3 convs: a smoother, more organ-like random mask
        for module in network.modules():
            if isinstance(module, torch.nn.Conv3d) and module.kernel_size == (3, 3, 3):
                module.weight.mul_(0.2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.no_grad():  # BatchNorm statistics that are not the defaults
            network.train()
            network(torch.rand(2, config.in_channels, 16, 16, 16))
    network.eval()
    image = torch.from_numpy(preprocess(ct, preprocessing).image)[None, None]
    head = network.network.head if hasattr(network, "network") else network.head
    with torch.no_grad():
        for _ in range(3):  # recurrence feeds the output back: settle in a few rounds
            logits = network(image).flatten()
            centre = torch.quantile(logits, 0.7)
            spread = torch.quantile(logits, 0.95) - torch.quantile(logits, 0.05)
            scale = 24.0 / max(float(spread), 1e-6)
            head.weight.mul_(scale)
            head.bias.copy_((head.bias - centre) * scale)
    return network


def make_tiny_model(
    directory: Path,
    ct: Volume,
    *,
    name: str = "ctv-tiny",
    steps: int = 2,
    dropout_where: str = "decoder",
    dropout_p: float = 0.2,
    seed: int = 0,
    **config_changes: object,
) -> Path:
    """Save a calibrated tiny model as ``directory/<name>.safetensors`` (+ ``.json``)."""
    config = tiny_config(steps, dropout_where, dropout_p, **config_changes)
    preprocessing = PreprocessConfig(spacing_xyz_mm=TINY_SPACING_XYZ_MM)
    network = calibrated_network(config, ct, preprocessing, seed)
    card = ModelCard(
        name=name,
        version="0.0.1",
        architecture=config.to_dict(),
        preprocessing=preprocessing.to_dict(),
        labels=(ctv_label(),),
        training_data="none: random weights for tests",
        inference={"threshold": 0.5},
        intended_use="tests",
        disclaimer=SYNTHETIC_DISCLAIMER,
    )
    directory.mkdir(parents=True, exist_ok=True)
    save_model(network, card, directory / name)
    return directory / f"{name}.safetensors"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


CASCADE_LOCATOR_SPACING_XYZ_MM = (8.0, 8.0, 8.0)
CASCADE_SEGMENTER_SPACING_XYZ_MM = (4.0, 4.0, 5.0)


def make_tiny_cascade(
    directory: Path,
    ct: Volume,
    *,
    name: str = "ctv-tiny-cascade",
    locator_probability: bool = True,
    margin_mm: float = 15.0,
    seed: int = 0,
) -> Path:
    """Save a calibrated tiny cascade (random weights, 8 mm locator, 4×4×5 mm segmenter)."""
    from AutoCTVLib.models.cascade_card import CropSettings
    from AutoCTVLib.models.cascade_file import cascade_card, save_cascade

    locator_pre = PreprocessConfig(spacing_xyz_mm=CASCADE_LOCATOR_SPACING_XYZ_MM)
    segmenter_pre = PreprocessConfig(spacing_xyz_mm=CASCADE_SEGMENTER_SPACING_XYZ_MM)
    locator = calibrated_network(tiny_config(1), ct, locator_pre, seed)
    segmenter = build_network(
        tiny_config(1, in_channels=2 if locator_probability else 1), seed=seed + 1
    ).eval()
    base = ModelCard(
        name=name,
        version="0.0.1",
        architecture=tiny_config(1).to_dict(),
        preprocessing=segmenter_pre.to_dict(),
        labels=(ctv_label(),),
        training_data="none: random weights for tests",
        inference={"threshold": 0.5},
        intended_use="tests",
        disclaimer=SYNTHETIC_DISCLAIMER,
    )
    card = cascade_card(
        base, locator, locator_pre, segmenter, segmenter_pre, CropSettings(margin_mm=margin_mm)
    )
    directory.mkdir(parents=True, exist_ok=True)
    save_cascade((locator, segmenter), card, directory / name)
    return directory / f"{name}.safetensors"


def predict_command(files: dict[str, Path], out: Path, *extra: str) -> list[str]:
    """``autoctv predict`` arguments for ``files["ct"]`` with the tiny ``files["model"]`` on one
    CPU thread, writing to ``out``; ``extra`` arguments follow."""
    return [
        "predict",
        str(files["ct"]),
        "-o",
        str(out),
        "--model",
        str(files["model"]),
        "--device",
        "cpu",
        "--threads",
        "1",
        *extra,
    ]
