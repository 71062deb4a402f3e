"""Training settings: one frozen dataclass, read from and written to JSON.

Example ``train.json`` (every key optional; missing keys take the defaults below)::

    {"iterations": 20000, "val_every": 500, "batch_size": 2, "patch_size_zyx": [48, 96, 96],
     "lr": 0.0001, "seed": 0, "fold": 0, "n_folds": 3, "augment": true,
     "network": {"channels": [16, 32, 64, 96, 128], "residual": true, "se": true,
                 "recurrent_steps": 3},
     "preprocess": {"spacing_xyz_mm": [2.0, 2.0, 3.0], "hu_window": [-1000, 1600]}}

Noisy labels (``docs/noisy_labels.md``): ``"loss_weighting": "qam_ocm"`` weights each patch's
loss by a jointly trained quality network with the OCM bound (``"qam"`` without the bound,
``"none"`` the plain mean, the default); it needs ``batch_size`` ≥ 2 and is best combined with
``"distinct_cases": true`` so that a batch compares patches of different cases, and with
``"aligned_patches": true`` so that those patches show the same anatomy.

A cascade's segmenter (stage 2) is trained with ``"stage": "segmenter"`` and a ``"cascade"``
object (:class:`AutoCTVLib.training.segmenter_config.SegmenterSettings`); ``"augmentation"`` then
holds :func:`AutoCTVLib.augment.segmenter_augmentation` options (each part switchable) and
``"boundary_fraction"`` the share of patches centred on the CTV's surface.

``network`` holds :class:`AutoCTVLib.nn.NetworkConfig` fields (keys left out take that class's
defaults, the plain U-Net; without a ``network`` key at all the thesis model is used) and
``preprocess`` holds :class:`AutoCTVLib.preprocess.PreprocessConfig` fields; both are validated
on creation.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from AutoCTVLib.errors import InputError
from AutoCTVLib.nn import NetworkConfig, thesis_config
from AutoCTVLib.noisy.ocm import DEFAULT_OCM_LAMBDA
from AutoCTVLib.noisy.qam import DEFAULT_QAM_CHANNELS
from AutoCTVLib.noisy.size_baseline import QUALITY_SIGNALS
from AutoCTVLib.noisy.weighting import WEIGHTING_NAMES
from AutoCTVLib.preprocess import PreprocessConfig
from AutoCTVLib.training.schedule import LR_SCHEDULES
from AutoCTVLib.training.segmenter_config import STAGES, SegmenterSettings

MIXED_PRECISION = ("auto", "off", "bf16", "fp16")
LOSS_NAMES = ("bce", "dice", "bce_dice", "nr_dice")


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides the data and the output folder.

    Attributes:
        iterations: optimiser steps in total (a resumed run continues up to this number).
        val_every: validate (Dice, HD95 on whole validation crops) every this many iterations
            and after the last one.
        log_every: record the training loss every this many iterations.
        batch_size: patches per process and step (with N processes the step sees N × this).
        patch_size_zyx: patch size in network-grid voxels (z, y, x); ``None`` trains on whole
            body crops.
        foreground_fraction: share of patches centred on a CTV voxel.
        lr: Adam learning rate (thesis: 1e-4).
        lr_schedule: ``"constant"`` (the thesis) or ``"poly"`` (decay to zero over
            ``iterations``, as nnU-Net); see :mod:`AutoCTVLib.training.schedule`.
        weight_decay: Adam weight decay.
        grad_clip_norm: clip the gradient norm to this value (``None``: no clipping).
        loss: ``"bce"``, ``"dice"``, ``"bce_dice"`` (thesis' final model) or ``"nr_dice"`` (the
            noise-robust Dice loss, ``docs/noisy_labels.md``), applied to every recurrent step.
        seed: seeds weights, patch sampling, augmentation and dropout.
        fold, n_folds: cross-validation fold (0-based) used for validation.
        augment: random flips/rotations/shifts/noise on training patches.
        label_name: which dataset label to learn.
        mixed_precision: ``"auto"`` (bf16 where the GPU supports it, else fp16; off on CPU),
            ``"off"``, ``"bf16"`` or ``"fp16"``. On a CPU only an explicit ``"bf16"`` turns it
            on (and is refused on a CPU without bf16 instructions); ``"fp16"`` is CUDA only.
        deterministic: ask torch for deterministic algorithms (exact repeats on CPU).
        early_stop_patience: stop after this many validations without a better Dice
            (``None``: never).
        network: :class:`NetworkConfig` fields.
        preprocess: :class:`PreprocessConfig` fields.
        augmentation: keyword overrides for :func:`AutoCTVLib.augment.thesis_augmentation`
            (``max_angle_deg``, ``max_shift_voxels``, ``noise_variance``).
        loss_weighting: how the per-patch losses of a batch are combined: ``"none"`` (plain
            mean, the default), ``"qam"`` (quality-network weights) or ``"qam_ocm"`` (with the
            OCM bound); see :mod:`AutoCTVLib.noisy.weighting`.
        qam_lr: Adam learning rate of the quality network (thesis: 1e-4).
        ocm_lambda: λ of the OCM, Γ(t) = λ·tanh(t) (thesis: 2).
        qam_channels: the quality network's channels per VGG block.
        distinct_cases: the patches of one (global) batch come from different cases (as long
            as there are enough cases), so that loss weighting compares annotators.
        aligned_patches: the patches of one (global) batch are placed alike in their cases (same
            offset from the label centroid, or same relative position), so that loss weighting
            compares labels of the same anatomy rather than patches holding more or less label;
            see :class:`AutoCTVLib.training.data.PatchSampler`.
        weight_labelled_only: with a loss weighting, share the weights only among the patches
            of a batch that hold label; a patch without label keeps the plain weight 1/N (it
            shows no contour, so nothing of its annotator's quality).
        weighting_warmup_iterations: with a loss weighting, train with the plain mean for this
            many iterations first (the quality network is not trained meanwhile).
        quality_signal: with a loss weighting, what trains the quality network: ``"loss"``
            (as published) or ``"size_adjusted_loss"`` (the loss less the running mean loss of
            patches holding as much label; :mod:`AutoCTVLib.noisy.size_baseline`).
        stage: ``"single"`` (one network on the whole body crop) or ``"segmenter"`` (a cascade's
            fine-grid stage 2, exported together with its locator as one cascade model).
        cascade: :class:`~AutoCTVLib.training.segmenter_config.SegmenterSettings` fields (only
            with ``stage`` ``"segmenter"``).
        boundary_fraction: share of patches centred on a voxel of the label's surface (only
            with ``stage`` ``"segmenter"``; the rest are centred on the CTV's box with jitter).
        loader_workers: processes that prepare batches ahead of the training loop (0: the
            training process draws each batch itself); the batches are the same either way.
        channels_last: keep 3D activations and weights channels-last (``channels_last_3d``),
            which oneDNN convolutions run faster on a CPU; the arithmetic is the same.
        init_weights: start from the weights of a model file set instead of a random
            initialisation (fine-tuning): a model path, or ``"bundled"`` for the bundled model
            of this stage (the cascade for ``"segmenter"``, the 6 mm model for ``"single"``).
            Architecture and preprocessing must be the ones configured here; for a segmenter the
            file must be a cascade, whose segmenter stage is taken. ``None``: random start.
        time_budget_s: wall seconds of training (validations included, summed over resumes)
            after which the run validates once more and stops, even before ``iterations``; the
            ``"poly"`` schedule then decays over the budget (see
            :mod:`AutoCTVLib.training.schedule`), so the rate reaches zero as time runs out.
            Timing makes such a run's step count, and so its weights, depend on the machine.
            ``None``: no budget.
    """

    iterations: int = 20000
    val_every: int = 500
    log_every: int = 10
    batch_size: int = 2
    patch_size_zyx: tuple[int, int, int] | None = (48, 96, 96)
    foreground_fraction: float = 0.33
    lr: float = 1e-4
    lr_schedule: str = "constant"
    weight_decay: float = 0.0
    grad_clip_norm: float | None = None
    loss: str = "bce_dice"
    seed: int = 0
    fold: int = 0
    n_folds: int = 3
    augment: bool = True
    label_name: str = "CTV"
    mixed_precision: str = "auto"
    deterministic: bool = True
    early_stop_patience: int | None = None
    network: dict[str, Any] = field(default_factory=lambda: thesis_config().to_dict())
    preprocess: dict[str, Any] = field(default_factory=lambda: PreprocessConfig().to_dict())
    augmentation: dict[str, Any] = field(default_factory=dict)
    loss_weighting: str = "none"
    qam_lr: float = 1e-4
    ocm_lambda: float = DEFAULT_OCM_LAMBDA
    qam_channels: tuple[int, ...] = DEFAULT_QAM_CHANNELS
    distinct_cases: bool = False
    aligned_patches: bool = False
    weight_labelled_only: bool = False
    weighting_warmup_iterations: int = 0
    quality_signal: str = "loss"
    stage: str = "single"
    cascade: dict[str, Any] = field(default_factory=dict)
    boundary_fraction: float = 0.0
    loader_workers: int = 0
    channels_last: bool = False
    init_weights: str | None = None
    time_budget_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("iterations", "val_every", "log_every", "batch_size", "n_folds"):
            _positive_int(name, getattr(self, name))
        if self.n_folds < 2:
            raise ValueError(f"n_folds must be at least 2, got {self.n_folds}")
        if isinstance(self.fold, bool) or not isinstance(self.fold, int):
            raise ValueError(f"fold must be an integer, got {self.fold!r}")
        if not 0 <= self.fold < self.n_folds:
            raise ValueError(f"fold must be between 0 and {self.n_folds - 1}, got {self.fold}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.patch_size_zyx is not None:
            patch = tuple(self.patch_size_zyx)
            if len(patch) != 3:
                raise ValueError(f"patch_size_zyx must hold three sizes, got {list(patch)}")
            for size in patch:
                _positive_int("patch_size_zyx entries", size)
            object.__setattr__(self, "patch_size_zyx", patch)
        if not 0.0 <= float(self.foreground_fraction) <= 1.0:
            raise ValueError(
                f"foreground_fraction must be in [0, 1], got {self.foreground_fraction}"
            )
        if not (math.isfinite(float(self.lr)) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}"
            )
        if not (math.isfinite(float(self.weight_decay)) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be non-negative, got {self.weight_decay!r}")
        if self.grad_clip_norm is not None and not float(self.grad_clip_norm) > 0:
            raise ValueError(f"grad_clip_norm must be positive or null, got {self.grad_clip_norm}")
        if self.loss not in LOSS_NAMES:
            raise ValueError(f"loss must be one of {', '.join(LOSS_NAMES)}, got {self.loss!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(
                f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}, "
                f"got {self.mixed_precision!r}"
            )
        if self.early_stop_patience is not None:
            _positive_int("early_stop_patience", self.early_stop_patience)
        if not isinstance(self.label_name, str) or not self.label_name:
            raise ValueError("label_name must be a non-empty string")
        self._check_loss_weighting()
        if self.time_budget_s is not None and not (
            isinstance(self.time_budget_s, (int, float))
            and not isinstance(self.time_budget_s, bool)
            and math.isfinite(self.time_budget_s)
            and self.time_budget_s > 0
        ):
            raise ValueError(
                f"time_budget_s must be a positive number of seconds or null, "
                f"got {self.time_budget_s!r}"
            )
        if self.init_weights is not None and (
            not isinstance(self.init_weights, str) or not self.init_weights.strip()
        ):
            raise ValueError(
                f'init_weights must be a model path, "bundled" or null, got {self.init_weights!r}'
            )
        for name in (
            "augment",
            "deterministic",
            "distinct_cases",
            "aligned_patches",
            "channels_last",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        workers = self.loader_workers
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(f"loader_workers must be a non-negative integer, got {workers!r}")
        self._check_stage()
        # Validate the nested settings now, and store them in their canonical form.
        object.__setattr__(self, "network", self.network_config().to_dict())
        object.__setattr__(self, "preprocess", self.preprocess_config().to_dict())
        object.__setattr__(self, "augmentation", dict(self.augmentation))

    def _check_loss_weighting(self) -> None:
        if self.loss_weighting not in WEIGHTING_NAMES:
            raise ValueError(
                f"loss_weighting must be one of {', '.join(WEIGHTING_NAMES)}, "
                f"got {self.loss_weighting!r}"
            )
        if self.loss_weighting != "none" and self.batch_size < 2:
            raise ValueError(
                f"loss_weighting {self.loss_weighting!r} compares the patches of a batch: "
                f"batch_size must be at least 2, got {self.batch_size}"
            )
        if not isinstance(self.weight_labelled_only, bool):
            raise ValueError("weight_labelled_only must be true or false")
        if self.quality_signal not in QUALITY_SIGNALS:
            raise ValueError(
                f"quality_signal must be one of {', '.join(QUALITY_SIGNALS)}, "
                f"got {self.quality_signal!r}"
            )
        warmup = self.weighting_warmup_iterations
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(
                f"weighting_warmup_iterations must be a non-negative integer, got {warmup!r}"
            )
        if isinstance(self.qam_lr, bool) or not (
            isinstance(self.qam_lr, (int, float)) and math.isfinite(self.qam_lr) and self.qam_lr > 0
        ):
            raise ValueError(f"qam_lr must be a positive number, got {self.qam_lr!r}")
        if isinstance(self.ocm_lambda, bool) or not (
            isinstance(self.ocm_lambda, (int, float))
            and math.isfinite(self.ocm_lambda)
            and self.ocm_lambda >= 0
        ):
            raise ValueError(f"ocm_lambda must be a non-negative number, got {self.ocm_lambda!r}")
        qam_channels = self.qam_channels
        if isinstance(qam_channels, (str, bytes)) or not hasattr(qam_channels, "__iter__"):
            raise ValueError(f"qam_channels must be a list of integers, got {self.qam_channels!r}")
        qam_channels = tuple(self.qam_channels)
        if not qam_channels:
            raise ValueError("qam_channels needs at least one entry")
        for count in qam_channels:
            _positive_int("qam_channels entries", count)
        object.__setattr__(self, "qam_channels", qam_channels)

    def _check_stage(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        fraction = self.boundary_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
            raise ValueError(f"boundary_fraction must be a number, got {fraction!r}")
        if not 0.0 <= fraction <= 1.0 - float(self.foreground_fraction) + 1e-12:
            raise ValueError(
                f"boundary_fraction must be in [0, 1 - foreground_fraction], got {fraction}"
            )
        if not isinstance(self.cascade, dict):
            raise ValueError("cascade must be a JSON object")
        if self.stage == "single":
            if self.cascade or fraction:
                raise ValueError(
                    'cascade and boundary_fraction need "stage": "segmenter" (a cascade stage 2)'
                )
            return
        if self.aligned_patches and fraction:
            raise ValueError(
                "aligned_patches places every patch of a batch alike; boundary_fraction centres "
                "each patch on its own surface voxel: set boundary_fraction to 0 to align"
            )
        settings = SegmenterSettings.from_dict(self.cascade)
        inputs = 2 if settings.use_locator_probability else 1
        if self.network_config().in_channels != inputs:
            raise ValueError(
                f"network.in_channels must be {inputs}: the segmenter takes the CT"
                + (" and the locator's probability" if inputs == 2 else " alone")
                + " (cascade.use_locator_probability)"
            )
        object.__setattr__(self, "cascade", settings.to_dict())

    def segmenter_settings(self) -> SegmenterSettings:
        """The ``cascade`` settings (stage ``"segmenter"`` only)."""
        return SegmenterSettings.from_dict(self.cascade)

    def network_config(self) -> NetworkConfig:
        return NetworkConfig.from_dict(self.network)

    def preprocess_config(self) -> PreprocessConfig:
        return PreprocessConfig.from_dict(self.preprocess)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.patch_size_zyx is not None:
            data["patch_size_zyx"] = list(self.patch_size_zyx)
        data["qam_channels"] = list(self.qam_channels)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys raise ``ValueError`` naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training setting(s): {', '.join(unknown)}")
        values = dict(data)
        if values.get("patch_size_zyx") is not None:
            values["patch_size_zyx"] = tuple(values["patch_size_zyx"])
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def load_train_config(path: str | os.PathLike[str]) -> TrainConfig:
    """Read a JSON training configuration; user mistakes become :class:`InputError`."""
    source = Path(path)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise InputError(f"training configuration {source} does not exist") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"training configuration {source} is not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise InputError(f"training configuration {source} must hold a JSON object")
    try:
        return TrainConfig.from_dict(data)
    except (TypeError, ValueError) as error:
        raise InputError(f"training configuration {source}: {error}") from error
