"""Tiny HDF5 training datasets and settings shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from AutoCTVLib.dataset.hdf5 import write_case, write_dataset_header
from AutoCTVLib.training.config import TrainConfig
from AutoCTVLib.volume import Geometry

TINY_SHAPE_ZYX = (20, 28, 28)
TINY_SPACING_XYZ_MM = (2.0, 2.0, 2.0)


def tiny_case(seed: int) -> tuple[np.ndarray, np.ndarray, Geometry]:
    """CT (int16 HU) of a body ellipsoid with a brighter spherical 'CTV', and its label."""
    rng = np.random.default_rng(seed)
    geometry = Geometry(TINY_SHAPE_ZYX, TINY_SPACING_XYZ_MM, (-27.0, -27.0, float(seed) * 50))
    z, y, x = np.meshgrid(*(np.arange(n, dtype=float) for n in TINY_SHAPE_ZYX), indexing="ij")
    body = ((z - 9.5) / 11) ** 2 + ((y - 13.5) / 10) ** 2 + ((x - 13.5) / 12) ** 2 <= 1.0
    centre = np.array([9.5, 13.5, 13.5]) + rng.uniform(-2.5, 2.5, size=3)
    radius = rng.uniform(3.5, 5.0)
    ctv = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2
    ct_hu = np.where(body, 0.0, -1000.0) + np.where(ctv, 120.0, 0.0)
    ct_hu += rng.normal(0.0, 10.0, size=ct_hu.shape)
    return ct_hu.round().astype(np.int16), ctv.astype(np.uint8), geometry


def write_tiny_dataset(path: Path, n_cases: int = 4) -> list[str]:
    """Write ``n_cases`` tiny cases in the AutoCTV dataset format; returns the case ids."""
    case_ids = [f"case{index:02d}" for index in range(n_cases)]
    with h5py.File(path, "w") as h5file:
        write_dataset_header(h5file, roi_pattern="CTV", label_names=["CTV"])
        for index, case_id in enumerate(case_ids):
            ct_hu, ctv, geometry = tiny_case(index)
            write_case(
                h5file,
                case_id,
                ct_hu,
                {"CTV": ctv},
                geometry,
                source=f"synthetic-{index}",
                source_kind="nifti",
                identity={"synthetic": True},
                roi_names={"CTV": "CTV"},
                qc={},
            )
    return case_ids


def tiny_config(**changes: object) -> TrainConfig:
    """A seconds-long configuration: tiny network, small patches, native spacing."""
    base = TrainConfig(
        iterations=30,
        val_every=10,
        log_every=1,
        batch_size=2,
        patch_size_zyx=(16, 16, 16),
        foreground_fraction=0.5,
        lr=3e-3,
        seed=3,
        fold=0,
        n_folds=2,
        augment=False,
        network={"channels": [4, 8, 8]},
        preprocess={
            "spacing_xyz_mm": list(TINY_SPACING_XYZ_MM),
            "hu_window": [-200.0, 300.0],
            "crop_margin_mm": 4.0,
        },
    )
    return base.replace(**changes) if changes else base


def write_tiny_locator(folder: Path) -> Path:
    """A random 4 mm single-stage model (4–8 channels) to pair tiny segmenters with."""
    from AutoCTVLib.models import ModelCard, ctv_label, save_model
    from AutoCTVLib.nn import build_network, thesis_config

    config = thesis_config(channels=(4, 8), recurrent_steps=1, dropout_p=0.0, dropout_where="none")
    card = ModelCard(
        name="tiny-locator",
        version="0.0.1",
        architecture=config.to_dict(),
        preprocessing={"spacing_xyz_mm": [4.0, 4.0, 4.0], "hu_window": [-200.0, 300.0]},
        labels=(ctv_label(),),
    )
    save_model(build_network(config, seed=0), card, folder / "locator")
    return folder / "locator.safetensors"
