"""Training cases for a cascade's segmenter: fine-grid crops around the reference CTV.

Each case of an AutoCTV HDF5 dataset is read at its own grid; the box of its reference CTV is
grown by ``margin_mm + jitter_mm`` (see :class:`~.segmenter_config.SegmenterSettings`) and the CT
is resampled onto the segmenter's fine grid inside that box, in the same frame inference uses
(:mod:`AutoCTVLib.predict.cascade_grid`), then windowed. The label comes onto the same grid
(:meth:`~AutoCTVLib.preprocess.PreprocessedCase.label_to_network`). With
``use_locator_probability`` the locator runs on the whole CT once and its probability, resampled
onto the fine grid, becomes the second image channel: arrays (2, z, y, x).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from AutoCTVLib.models.card import ModelCard
from AutoCTVLib.predict.cascade_grid import (
    fine_case,
    fine_grid,
    frame_direction,
    grid_box_in_frame,
    grow_and_clip,
    index_box_in_frame,
)
from AutoCTVLib.preprocess import PreprocessConfig, preprocess
from AutoCTVLib.preprocess.resample import resample_to_geometry
from AutoCTVLib.training.data import LoadProgress, TrainingCase
from AutoCTVLib.training.hdf5_cases import list_case_ids, read_ct_and_label
from AutoCTVLib.training.segmenter_config import SegmenterSettings
from AutoCTVLib.volume import Volume

logger = logging.getLogger(__name__)


def load_locator(settings: SegmenterSettings) -> tuple[torch.nn.Module, ModelCard]:
    """The locator network (a single-stage model file) and its card."""
    from AutoCTVLib.errors import ModelFileError
    from AutoCTVLib.models import load_model

    network, card = load_model(settings.locator_path())
    if card.is_cascade:
        raise ModelFileError(
            "cascade.locator_model must be a single-stage CTV model, not a cascade"
        )
    return network.eval(), card


def locator_probability(
    network: torch.nn.Module, card: ModelCard, ct: Volume
) -> tuple[np.ndarray, Volume]:
    """The locator's CTV probability on its own grid: ``(prob (z, y, x), as a Volume)``."""
    case = preprocess(ct, PreprocessConfig.from_dict(dict(card.preprocessing)))
    with torch.no_grad():
        image = torch.from_numpy(case.image)[None, None]
        prob = torch.sigmoid(network(image).float())[0, 0].numpy()
    return prob, Volume(prob, case.network_geometry)


def segmenter_case(
    case_id: str,
    ct: Volume,
    label: Volume,
    config: PreprocessConfig,
    settings: SegmenterSettings,
    locator: tuple[torch.nn.Module, ModelCard] | None = None,
) -> TrainingCase:
    """One fine-grid training crop around the reference CTV (see the module docstring)."""
    direction = frame_direction(ct.geometry, config.reorient)
    limit = grid_box_in_frame(ct.geometry, direction)
    inside = np.argwhere(np.asarray(label.array) > 0)
    if len(inside):
        lo_ijk, hi_ijk = inside.min(axis=0)[::-1], inside.max(axis=0)[::-1]
        box = index_box_in_frame(ct.geometry, lo_ijk, hi_ijk, direction)
        box = grow_and_clip(box, settings.margin_mm + settings.jitter_mm, limit)
    else:
        logger.warning("case %s: empty label; its crop is the whole CT", case_id)
        box = limit
    grid = fine_grid(box, direction, config.spacing_xyz_mm)
    prepared = fine_case(ct, grid, config)
    image = prepared.image
    if locator is not None:
        _, coarse = locator_probability(*locator, ct)
        prior = resample_to_geometry(coarse, grid, "linear", 0.0).array
        image = np.stack([image, prior.astype(np.float32, copy=False)])
    label_net = prepared.label_to_network(label)
    return TrainingCase.from_arrays(case_id, image, label_net, grid.spacing_xyz_mm)


def load_segmenter_cases(
    dataset_path: str | Path,
    case_ids: Sequence[str] | None,
    config: PreprocessConfig,
    settings: SegmenterSettings,
    label_name: str = "CTV",
    progress: LoadProgress | None = None,
) -> list[TrainingCase]:
    """Fine-grid crops of cases of an HDF5 dataset (all of them when ``case_ids`` is None)."""
    ids = list(case_ids) if case_ids is not None else list_case_ids(dataset_path)
    locator = load_locator(settings) if settings.use_locator_probability else None
    cases = []
    for done, case_id in enumerate(ids):
        ct, label = read_ct_and_label(dataset_path, case_id, label_name)
        cases.append(segmenter_case(case_id, ct, label, config, settings, locator))
        if progress is not None:
            progress(done + 1, len(ids), case_id)
    return cases


def jitter_voxels(settings: SegmenterSettings, config: PreprocessConfig) -> tuple[int, int, int]:
    """``jitter_mm`` in fine-grid voxels along (z, y, x)."""
    spacing_zyx = np.asarray(config.spacing_xyz_mm, dtype=float)[::-1]
    return tuple(int(v) for v in np.floor(settings.jitter_mm / spacing_zyx))  # type: ignore[return-value]
