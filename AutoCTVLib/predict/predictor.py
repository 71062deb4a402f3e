"""The main job, array in → arrays out: a CT volume in, the CTV (and its uncertainty) out on the
CT's exact grid.

::

    CT (Volume, HU, z y x, any grid)
      → preprocess (body crop, resample to the model spacing, HU window)   [model card]
      → network: one pass or Gaussian sliding window; optional MC dropout  [network_stage, mc]
      → probability (and MC uncertainty maps) resampled onto the input grid [linear]
      → threshold (card's inference.threshold, default 0.5) → post-processing
      → uncertainty maps, case score, per-slice score, slices to review

Example::

    predictor = Predictor.from_file("Resources/Models/ctv_pelvis_phantom.safetensors")
    prediction = predictor.predict(ct_volume, mc_samples=20)
    prediction.label.array          # uint8 (z, y, x) on ct_volume.geometry
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from AutoCTVLib import __version__
from AutoCTVLib.device import select_device
from AutoCTVLib.errors import CancelledError, InputError, ModelFileError
from AutoCTVLib.inference.postprocess import PostprocessConfig, postprocess_mask
from AutoCTVLib.inference.review import separation_in_slices, slices_to_review
from AutoCTVLib.inference.uncertainty import (
    UncertaintyMaps,
    UncertaintySummary,
    binary_entropy,
    summarise_uncertainty,
)
from AutoCTVLib.models.card import ModelCard
from AutoCTVLib.models.cascade_file import CascadeModel
from AutoCTVLib.nn.mc_dropout import has_dropout
from AutoCTVLib.options import ProgressCallback
from AutoCTVLib.predict.cascade_grid import (
    fine_case,
    fine_grid,
    frame_direction,
    grid_box_in_frame,
    grow_and_clip,
    index_box_in_frame,
    locator_index_box,
)
from AutoCTVLib.predict.mc import MCSettings, maps_from_moments
from AutoCTVLib.predict.mirror import run_mirrored
from AutoCTVLib.predict.network_stage import NetworkResult, run_network, with_cpu_fallback
from AutoCTVLib.predict.speed import SpeedSettings, configure_threads
from AutoCTVLib.preprocess.pipeline import PreprocessConfig, PreprocessedCase, preprocess
from AutoCTVLib.preprocess.resample import resample_to_geometry
from AutoCTVLib.volume import Volume

logger = logging.getLogger(__name__)

#: Default clean-up: the CTV is one connected volume — keep the largest component and every part
#: within 15 mm of it, drop the other islands, fill enclosed holes in 3D. On the 20 held-out test
#: phantoms this kept Dice (0.836 → 0.837) and cut the HD95 mean from 13.1 to 6.9 mm and its
#: maximum from 126 to 12 mm (benchmarks/results/postprocess_islands.md).
DEFAULT_POSTPROCESS = PostprocessConfig(min_component_ml=0.0, near_largest_mm=15.0, fill_holes="3d")
#: Slices listed for review, and the least distance (mm) between two listed slices.
REVIEW_SLICE_COUNT = 5
REVIEW_SEPARATION_MM = 10.0
PROVENANCE_VERSION = "1"

# ``progress(stage, fraction of that stage done, message)``; stages in order: "preprocess",
# "network", "uncertainty" (MC only), "resample", "postprocess", "summary".


@dataclass(frozen=True)
class Prediction:
    """The result of :meth:`Predictor.predict`; every volume lies on the input CT's grid.

    Attributes:
        prob_ctv: float32 CTV probability (the MC mean with uncertainty), (z, y, x).
        label: uint8 0/1 CTV labelmap after threshold and post-processing.
        uncertainty: MC maps on the input grid (bits), or ``None`` without MC.
        summary: case score and per-slice scores, or ``None`` without MC.
        slices_to_review: axial slice indices k of the input, most doubtful first.
        timings_s: seconds per stage ("preprocess", "network", "uncertainty", "resample",
            "postprocess", "summary", "total").
        provenance: model, settings and input identity (JSON-friendly).
        warnings: notes for the user (device fallback, model without dropout, ...).
    """

    prob_ctv: Volume
    label: Volume
    uncertainty: UncertaintyMaps | None
    summary: UncertaintySummary | None
    slices_to_review: tuple[int, ...]
    timings_s: dict[str, float]
    provenance: dict[str, Any]
    warnings: tuple[str, ...] = field(default=())

    @property
    def ctv_volume_ml(self) -> float:
        """Volume of the predicted CTV in millilitres."""
        return float(np.count_nonzero(self.label.array)) * self.label.geometry.voxel_volume_ml

    def uncertainty_volume(self, measure: str = "entropy") -> Volume:
        """One uncertainty map (``"entropy"``, ``"mutual_information"``, ...) as a Volume."""
        if self.uncertainty is None:
            raise ValueError("this prediction was made without Monte-Carlo uncertainty")
        return self.label.with_array(self.uncertainty.measure(measure))


class Predictor:
    """A loaded model ready to contour CTs.

    Args:
        model: the network (from :func:`AutoCTVLib.models.load_model`).
        card: its model card (preprocessing, labels, threshold, provenance).
        device: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N", "mps" or a
            ``torch.device``.
        threads: torch CPU threads (process-wide); ``None`` keeps torch's default.
        speed: memory layout / autocast (see :mod:`AutoCTVLib.predict.speed`).
        max_voxels_per_pass: network-grid voxels per pass; beyond it a sliding window is used
            (``None``: derived from the free memory).
        memory_fraction: share of the free memory one network pass may use.
    """

    def __init__(
        self,
        model: nn.Module,
        card: ModelCard,
        *,
        device: str | torch.device = "auto",
        threads: int | None = None,
        speed: SpeedSettings | None = None,
        max_voxels_per_pass: int | None = None,
        memory_fraction: float = 0.5,
    ) -> None:
        self.cascade: CascadeModel | None = None
        self.cascade_record: dict[str, Any] | None = None
        if card.is_cascade:
            if not isinstance(model, CascadeModel):
                raise ModelFileError(
                    f"model {card.name} is a cascade; load it with AutoCTVLib.models.load_model"
                )
            self.cascade = model
        elif isinstance(model, CascadeModel):
            raise ModelFileError(f"model {card.name}: a cascade network needs a cascade card")
        if tuple(card.input_channels) != ("ct",):
            raise ModelFileError(
                f"model {card.name} expects the inputs {', '.join(card.input_channels)}; "
                "contouring needs a model that takes the CT alone"
            )
        try:
            self.preprocess_config = PreprocessConfig.from_dict(dict(card.preprocessing))
        except (TypeError, ValueError) as error:
            raise ModelFileError(
                f"model {card.name}: bad preprocessing settings: {error}"
            ) from error
        self.model = model.eval()
        self.sampled_network = model if self.cascade is None else self.cascade.segmenter
        self.card = card
        self.device_request = str(device)
        self.device = device if isinstance(device, torch.device) else select_device(str(device))
        self.threads = configure_threads(threads)
        self.speed = speed or SpeedSettings()
        self.max_voxels_per_pass = max_voxels_per_pass
        self.memory_fraction = float(memory_fraction)
        self.threshold = float(card.inference.get("threshold", 0.5))
        if not 0.0 < self.threshold < 1.0:
            raise ModelFileError(f"model {card.name}: threshold {self.threshold} is not in (0, 1)")
        self.mirror_left_right = card.inference.get("mirror_left_right", False)
        if not isinstance(self.mirror_left_right, bool):
            raise ModelFileError(f"model {card.name}: mirror_left_right must be true or false")
        if self.mirror_left_right and not self.preprocess_config.reorient:
            raise ModelFileError(
                f"model {card.name}: mirror_left_right needs a reoriented grid (x = left-right)"
            )

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **options: Any) -> Predictor:
        """Load a model file (``.safetensors``/``.json``/stem) and wrap it."""
        from AutoCTVLib.models.model_file import load_model

        model, card = load_model(path)
        return cls(model, card, **options)

    def predict(
        self,
        ct: Volume,
        *,
        mc_samples: int = 0,
        mc: MCSettings | None = None,
        postprocess: PostprocessConfig | None = DEFAULT_POSTPROCESS,
        review_slices: int = REVIEW_SLICE_COUNT,
        input_identity: Mapping[str, Any] | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Prediction:
        """Contour the CTV on ``ct`` (float HU, (z, y, x), any grid).

        Args:
            ct: the CT volume.
            mc_samples: N Monte-Carlo dropout samples (0: no uncertainty). Ignored when ``mc``
                is given.
            mc: full MC settings (method, crop, seed, ...).
            postprocess: clean-up of the thresholded mask, or ``None`` for none.
            review_slices: how many slices the review list holds at most.
            input_identity: provenance of the input (default: the volume's metadata).
            progress: ``(stage, fraction, message)`` callback.
            cancel: when set, the job stops with :class:`CancelledError`.
        """
        started = time.perf_counter()
        report = progress or (lambda stage, fraction, message: None)
        _check_ct(ct)
        mc = mc if mc is not None else (MCSettings(samples=mc_samples) if mc_samples > 0 else None)
        warnings: list[str] = []
        timings: dict[str, float] = {}

        sampled_mc = mc
        if mc is not None and not has_dropout(self.sampled_network):
            warnings.append(
                f"model {self.card.name} has no dropout layers: all MC samples are identical, "
                "so the mutual information is zero and the entropy shows only the model's "
                "own probability"
            )
            logger.warning(warnings[-1])
            sampled_mc = None
        _check_cancel(cancel)
        if self.cascade is None:
            report("preprocess", 0.0, "body crop, resampling and HU window")
            mark = time.perf_counter()
            case = preprocess(ct, self.preprocess_config)
            timings["preprocess"] = time.perf_counter() - mark
            report("preprocess", 1.0, f"network grid {case.network_geometry.describe()}")
            _check_cancel(cancel)
            network, fallback_warning = self._run_network(
                self.model, case.image, case, sampled_mc, report, cancel, self.mirror_left_right
            )
            self.cascade_record = None
        else:
            case, network, fallback_warning = self._run_cascade(
                ct, sampled_mc, report, cancel, timings, warnings
            )
        if fallback_warning:
            warnings.append(fallback_warning)
        timings["network"] = network.network_s + timings.pop("locator_network", 0.0)
        if mc is not None:
            timings["uncertainty"] = network.sampling_s
        _check_cancel(cancel)

        report("resample", 0.0, "back onto the CT grid")
        mark = time.perf_counter()
        maps_network = None
        if mc is not None:
            if network.moments is not None:
                maps_network = maps_from_moments(*network.moments, n_samples=mc.samples)
            else:  # no dropout: every sample equals the plain prediction
                plain = network.plain_prob
                maps_network = maps_from_moments(
                    plain, plain * plain, binary_entropy(plain, "bits"), n_samples=mc.samples
                )
        prob_network = network.plain_prob if maps_network is None else maps_network.mean_prob
        prob_input = case.to_input_grid(prob_network, "probability")
        maps = None if maps_network is None else maps_on_input_grid(maps_network, prob_input, case)
        timings["resample"] = time.perf_counter() - mark
        report("resample", 1.0, "on the CT grid")
        _check_cancel(cancel)

        report("postprocess", 0.0, "threshold and clean-up")
        mark = time.perf_counter()
        mask = prob_input >= self.threshold
        if postprocess is not None:
            mask = postprocess_mask(mask, ct.geometry, postprocess)
        label = mask.astype(np.uint8)
        timings["postprocess"] = time.perf_counter() - mark
        report("postprocess", 1.0, "done")

        summary, review = None, ()
        if maps is not None:
            report("summary", 0.0, "uncertainty scores")
            mark = time.perf_counter()
            summary = summarise_uncertainty(maps, ct.geometry)
            separation = separation_in_slices(REVIEW_SEPARATION_MM, ct.geometry.spacing_xyz_mm[2])
            review = tuple(slices_to_review(summary.per_slice_score, review_slices, separation))
            timings["summary"] = time.perf_counter() - mark
            report("summary", 1.0, f"case score {summary.case_score:.3f}")
        timings["total"] = time.perf_counter() - started

        provenance = self._provenance(ct, case, network, mc, postprocess, input_identity)
        metadata = {"source": ct.metadata.get("source", ""), "model": self.card.name}
        return Prediction(
            prob_ctv=Volume(prob_input.astype(np.float32), ct.geometry, dict(metadata)),
            label=Volume(label, ct.geometry, dict(metadata)),
            uncertainty=maps,
            summary=summary,
            slices_to_review=review,
            timings_s=timings,
            provenance=provenance,
            warnings=tuple(warnings),
        )

    def _run_network(
        self,
        model: nn.Module,
        image: np.ndarray,
        case: PreprocessedCase,
        mc: MCSettings | None,
        report: ProgressCallback,
        cancel: threading.Event | None,
        mirror: bool = False,
    ) -> tuple[NetworkResult, str | None]:
        """Run ``model`` on ``image`` ((z, y, x) or (C, z, y, x) on ``case``'s network grid) on
        the chosen device; a GPU out of memory falls back to the CPU.

        ``mirror``: average over the image and its left-right mirror (plain and MC; see
        :mod:`AutoCTVLib.predict.mirror`).
        """
        spacing_zyx_mm = tuple(case.network_geometry.spacing_xyz_mm[::-1])

        def attempt(device: torch.device) -> NetworkResult:
            def once(pixels: np.ndarray, settings: MCSettings | None, half: int) -> NetworkResult:
                def halved(stage: str, fraction: float, message: str) -> None:
                    report(stage, (half + fraction) / 2, message)

                return run_network(
                    model,
                    pixels,
                    spacing_zyx_mm,
                    device=device,
                    speed=self.speed,
                    mc=settings,
                    max_voxels=self.max_voxels_per_pass,
                    memory_fraction=self.memory_fraction,
                    progress=halved if mirror else report,
                    cancel=cancel,
                )

            if mirror:
                return run_mirrored(once, image, mc, cancel)
            return once(image, mc, 0)

        result, used, warning = with_cpu_fallback(attempt, self.device)
        self.device = used
        return result, warning

    def _run_cascade(
        self,
        ct: Volume,
        mc: MCSettings | None,
        report: ProgressCallback,
        cancel: threading.Event | None,
        timings: dict[str, float],
        warnings: list[str],
    ) -> tuple[PreprocessedCase, NetworkResult, str | None]:
        """Locator on the coarse grid, then the segmenter (with ``mc``) on the fine grid in a
        box around the locator's CTV. Returns the fine-grid case, the segmenter's result and
        a device-fallback warning; records what it did in ``self.cascade_record``."""
        assert self.cascade is not None
        locator_stage, segmenter_stage = self.cascade.stages
        crop = segmenter_stage.crop
        assert crop is not None
        report("preprocess", 0.0, "locator: body crop, coarse grid")
        mark = time.perf_counter()
        coarse = preprocess(ct, locator_stage.preprocessing)
        timings["preprocess"] = time.perf_counter() - mark
        _check_cancel(cancel)
        report("preprocess", 0.3, f"locator grid {coarse.network_geometry.describe()}")
        located, locator_warning = self._run_network(
            self.cascade.locator, coarse.image, coarse, None, _quiet, cancel
        )
        timings["locator_network"] = located.network_s
        _check_cancel(cancel)
        mark = time.perf_counter()
        direction = frame_direction(ct.geometry, segmenter_stage.preprocessing.reorient)
        limit = grid_box_in_frame(coarse.cropped_geometry, direction)
        found = locator_index_box(
            located.plain_prob,
            crop.threshold,
            coarse.network_geometry.spacing_xyz_mm,
            crop.margin_mm,
        )
        if found is None:
            warnings.append(
                "the locator (stage 1) found no CTV; the segmenter looked at the whole body"
            )
            logger.warning(warnings[-1])
            box = limit
        else:
            located_box = index_box_in_frame(coarse.network_geometry, *found, direction)
            box = grow_and_clip(located_box, crop.margin_mm, limit)
        grid = fine_grid(box, direction, segmenter_stage.preprocessing.spacing_xyz_mm)
        case = fine_case(ct, grid, segmenter_stage.preprocessing)
        image = case.image
        if segmenter_stage.uses_locator_probability:
            prior = resample_to_geometry(
                Volume(located.plain_prob, coarse.network_geometry), grid, "linear", 0.0
            ).array
            image = np.stack([case.image, prior.astype(np.float32, copy=False)])
        timings["preprocess"] += time.perf_counter() - mark
        report("preprocess", 1.0, f"segmenter grid {grid.describe()}")
        _check_cancel(cancel)
        network, segmenter_warning = self._run_network(
            self.cascade.segmenter, image, case, mc, report, cancel, self.mirror_left_right
        )
        self.cascade_record = {
            "locator_grid": {
                "shape_zyx": list(coarse.network_geometry.shape_zyx),
                "spacing_xyz_mm": list(coarse.network_geometry.spacing_xyz_mm),
                "crop_box": coarse.crop_box.to_dict(),
            },
            "locator_found_ctv": found is not None,
            "locator_network_s": located.network_s,
            "segmenter_box_mm": {"lo": box[0].tolist(), "hi": box[1].tolist()},
            "crop": crop.to_dict(),
            "segmenter_inputs": list(segmenter_stage.input_channels),
        }
        return case, network, locator_warning or segmenter_warning

    def _provenance(
        self,
        ct: Volume,
        case: PreprocessedCase,
        network: NetworkResult,
        mc: MCSettings | None,
        postprocess: PostprocessConfig | None,
        input_identity: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        identity = dict(input_identity) if input_identity is not None else dict(ct.metadata)
        settings: dict[str, Any] = {
            "device_requested": self.device_request,
            "device": str(network.device),
            "threads": self.threads,
            "threshold": self.threshold,
            "mirror_left_right": self.mirror_left_right,
            "mc_samples": 0 if mc is None else mc.samples,
            "mc": None if mc is None else mc.to_dict(),
            "mc_sampled_fraction": network.sampled_fraction,
            "postprocess": None if postprocess is None else postprocess.to_dict(),
            "preprocessing": self.preprocess_config.to_dict(),
            "network_grid": {
                "shape_zyx": list(case.network_geometry.shape_zyx),
                "spacing_xyz_mm": list(case.network_geometry.spacing_xyz_mm),
                "crop_box": case.crop_box.to_dict(),
            },
            "inference": {
                **network.plan.to_dict(),
                "decode_batch": network.decode_batch,
                "sampling_workers": network.sampling_workers,
                "sampling_precision": network.sampling_precision if mc is not None else None,
            },
            "cascade": self.cascade_record,
            "speed": self.speed.to_dict(),
            "torch": torch.__version__,
        }
        return {
            "provenance_version": PROVENANCE_VERSION,
            "result_kind": "segmentation",
            "model_name": self.card.name,
            "model_version": self.card.version,
            "model_sha256": self.card.weights_sha256,
            "software_version": __version__,
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"
            ),
            "settings": settings,
            "input": identity,
        }


def maps_on_input_grid(
    maps: UncertaintyMaps, prob_input: np.ndarray, case: PreprocessedCase
) -> UncertaintyMaps:
    """Uncertainty maps from the network grid onto the input grid (linear, 0 outside the crop).

    The maps are computed on the network grid and then interpolated, not the sample moments:
    interpolating moments across a sharp boundary would mix a confident 0 with a confident 1
    and invent disagreement (mutual information) that no sample showed. Linear interpolation of
    the maps keeps ``0 ≤ mutual_information ≤ entropy`` and a zero map zero. The expected
    entropy is ``entropy − mutual_information`` on the input grid. The arithmetic runs inside
    the crop box only (every map is 0 outside it).
    """
    entropy = case.to_crop_grid(maps.entropy, "probability")
    mutual_information = np.minimum(
        case.to_crop_grid(maps.mutual_information, "probability"), entropy
    )
    expected = np.maximum(entropy - mutual_information, 0.0).astype(np.float32)
    mutual_information = np.maximum(mutual_information, 0.0).astype(np.float32)
    variance = np.maximum(case.to_crop_grid(maps.variance, "probability"), 0.0)
    paste = case.crop_box.paste
    return UncertaintyMaps(
        mean_prob=prob_input.astype(np.float32, copy=False),
        entropy=paste(entropy),
        expected_entropy=paste(expected),
        mutual_information=paste(mutual_information),
        variance=paste(variance),
        n_samples=maps.n_samples,
        unit=maps.unit,
    )


def _check_ct(ct: Volume) -> None:
    if not isinstance(ct, Volume):
        raise TypeError(f"predict needs a Volume, got {type(ct).__name__}")
    values = np.asarray(ct.array)
    if not (np.issubdtype(values.dtype, np.number) and not np.iscomplexobj(values)):
        raise InputError(f"the CT must hold real numbers (Hounsfield units), not {values.dtype}")
    if not np.isfinite(values).all():
        raise InputError("the CT contains NaN or infinite values; it must hold Hounsfield units")
    if min(ct.geometry.shape_zyx) < 2 or math.prod(ct.geometry.shape_zyx) < 8:
        raise InputError(f"the CT grid {ct.geometry.describe()} is too small to contour")


def _quiet(stage: str, fraction: float, message: str) -> None:
    """A progress callback that reports nothing (the locator's pass is part of "preprocess")."""


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise CancelledError("the prediction was cancelled")
