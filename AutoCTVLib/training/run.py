"""A whole training run on an HDF5 dataset: split, load, train, export the best model.

This is what ``autoctv train`` calls; it works the same in one process or under ``torchrun``
(pass the :class:`DistributedContext` that
:func:`~AutoCTVLib.training.distributed.init_distributed` returns).

The run folder holds::

    config.json                         the settings used (TrainConfig)
    split.json                          train and validation case ids of this fold
    checkpoints/last/, checkpoints/best/  see :mod:`AutoCTVLib.training.checkpoint`
    logs/training_log.csv, logs/validation_log.csv, logs/history.json
    model.safetensors + model.json      the best network and its model card (at the end)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from AutoCTVLib import __version__
from AutoCTVLib.errors import InputError, OutputError
from AutoCTVLib.io.atomic import atomic_path
from AutoCTVLib.models import ModelCard, ctv_label, save_model
from AutoCTVLib.nn import build_network
from AutoCTVLib.training.callbacks import Callback, LogWriter, json_safe
from AutoCTVLib.training.checkpoint import load_checkpoint
from AutoCTVLib.training.config import TrainConfig
from AutoCTVLib.training.data import Augment, LoadProgress, PatchSampler, load_training_cases
from AutoCTVLib.training.distributed import DistributedContext, barrier
from AutoCTVLib.training.hdf5_cases import list_case_ids
from AutoCTVLib.training.init_weights import load_initial_weights
from AutoCTVLib.training.segmenter_data import (
    jitter_voxels,
    load_locator,
    load_segmenter_cases,
)
from AutoCTVLib.training.splits import fold_split
from AutoCTVLib.training.trainer import (
    BEST,
    CHECKPOINTS_DIR,
    LAST,
    CancelEvent,
    Trainer,
    TrainResult,
    adam_factory,
    make_loss_fn,
)

logger = logging.getLogger(__name__)

MODEL_STEM = "model"
DEFAULT_MODEL_NAME = "autoctv-ctv"


@dataclass(frozen=True)
class RunSummary:
    """What a run produced."""

    result: TrainResult
    train_case_ids: tuple[str, ...]
    validation_case_ids: tuple[str, ...]
    model_path: Path | None  # the exported .safetensors (rank 0), None elsewhere
    card: ModelCard | None


def weights_sha256(model: torch.nn.Module) -> str:
    """SHA-256 over the state dict's names and raw bytes (compares weights across processes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def build_augmentation(config: TrainConfig) -> Augment | None:
    """The thesis augmentation with ``config.augmentation`` overrides, or ``None`` when off."""
    if not config.augment:
        return None
    from AutoCTVLib.augment import segmenter_augmentation, thesis_augmentation

    options = dict(config.augmentation)
    options.setdefault("spacing_xyz_mm", config.preprocess_config().spacing_xyz_mm)
    build = segmenter_augmentation if config.stage == "segmenter" else thesis_augmentation
    try:
        return build(**options)
    except TypeError as error:
        raise InputError(f"unknown augmentation setting in the configuration ({error})") from error


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """Refuse to start over an existing run (resume it instead), or to resume nothing."""
    has_state = (run_dir / CHECKPOINTS_DIR / LAST / "state.json").is_file()
    if resume and not has_state:
        raise InputError(f"{run_dir} holds no training run to resume")
    if not resume and has_state:
        raise OutputError(
            f"{run_dir} already holds a training run; resume it or choose another folder"
        )


def _write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(json_safe(data), indent=2, allow_nan=False), encoding="utf-8")


def run_training(
    dataset_path: str | Path,
    run_dir: str | Path,
    config: TrainConfig,
    *,
    device: torch.device | str = "cpu",
    context: DistributedContext | None = None,
    resume: bool = False,
    callbacks: list[Callback] | None = None,
    cancel: CancelEvent | None = None,
    load_progress: LoadProgress | None = None,
    model_name: str = DEFAULT_MODEL_NAME,
    model_version: str = "1.0.0",
    weight_hash_dir: str | Path | None = None,
) -> RunSummary:
    """Train ``config`` on fold ``config.fold`` of the dataset and export the best model.

    Args:
        dataset_path: an AutoCTV HDF5 dataset.
        run_dir: the run folder (created; must not hold a run unless ``resume``).
        config: the settings.
        device: the torch device of this process.
        context: distributed context (default: single process).
        resume: continue from ``run_dir/checkpoints/last``.
        callbacks: extra callbacks (progress); a :class:`LogWriter` is always added.
        cancel: an event; when set, training stops with :class:`CancelledError`.
        load_progress: called while cases are read and preprocessed.
        model_name, model_version: written into the model card.
        weight_hash_dir: when given, every rank writes ``weights_rank<r>.sha256`` there after
            training (to check that distributed ranks ended with identical weights).
    """
    context = context or DistributedContext()
    dataset_path = Path(dataset_path)
    run_dir = Path(run_dir)
    check_run_dir(run_dir, resume)
    initial_state, init_from = None, None
    if config.init_weights is not None:  # checked before any data is read
        initial_state, init_from = load_initial_weights(config)
    barrier(context)  # every rank checks before rank 0 creates anything
    case_ids = list_case_ids(dataset_path)
    try:
        train_ids, validation_ids = fold_split(case_ids, config.fold, config.n_folds, config.seed)
    except ValueError as error:
        raise InputError(f"cannot split the dataset for cross-validation: {error}") from error
    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_json(run_dir / "config.json", config.to_dict())
        split = {"fold": config.fold, "n_folds": config.n_folds, "seed": config.seed}
        split |= {"train": train_ids, "validation": validation_ids}
        _write_json(run_dir / "split.json", split)
    preprocess_config = config.preprocess_config()
    all_ids = train_ids + validation_ids
    jitter = None
    if config.stage == "segmenter":
        settings = config.segmenter_settings()
        cases = load_segmenter_cases(
            dataset_path, all_ids, preprocess_config, settings, config.label_name, load_progress
        )
        jitter = jitter_voxels(settings, preprocess_config)
    else:
        cases = load_training_cases(
            dataset_path, all_ids, preprocess_config, config.label_name, load_progress
        )
    by_id = {case.case_id: case for case in cases}
    sampler = PatchSampler(
        [by_id[i] for i in train_ids],
        batch_size=config.batch_size,
        patch_size_zyx=config.patch_size_zyx,
        foreground_fraction=config.foreground_fraction,
        augment=build_augmentation(config),
        seed=config.seed,
        distinct_cases=config.distinct_cases,
        aligned_patches=config.aligned_patches,
        boundary_fraction=config.boundary_fraction,
        centre_jitter_voxels=jitter,
    )
    if config.loader_workers:
        from AutoCTVLib.training.prefetch import PrefetchingSampler

        sampler = PrefetchingSampler(  # type: ignore[assignment]
            sampler, config.loader_workers, 2 * config.loader_workers, config.iterations
        )
    network_config = config.network_config()
    model = build_network(network_config, seed=config.seed)
    if initial_state is not None:
        model.load_state_dict(initial_state)
    trainer = Trainer(
        model,
        make_loss_fn(config.loss),
        adam_factory(config.lr, config.weight_decay),
        sampler,
        [by_id[i] for i in validation_ids],
        callbacks=[LogWriter(run_dir / "logs"), *(callbacks or [])],
        config=config,
        device=device,
        context=context,
        run_dir=run_dir,
    )
    try:
        result = trainer.fit(resume=resume, cancel=cancel)
    finally:
        if config.loader_workers:
            sampler.close()  # type: ignore[attr-defined]
    if weight_hash_dir is not None:
        folder = Path(weight_hash_dir)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / f"weights_rank{context.rank}.sha256") as tmp:
            tmp.write_text(weights_sha256(model) + "\n", encoding="utf-8")
    model_path, card = None, None
    if context.is_main:
        model_path, card = _export_best(
            run_dir,
            config,
            result,
            train_ids,
            validation_ids,
            dataset_path,
            model_name,
            model_version,
            init_from,
        )
    barrier(context)
    return RunSummary(result, tuple(train_ids), tuple(validation_ids), model_path, card)


def _loss_weighting_summary(config: TrainConfig) -> dict[str, Any]:
    """How the batch loss was formed (model-card provenance)."""
    summary: dict[str, Any] = {"strategy": config.loss_weighting}
    if config.loss_weighting != "none":
        summary |= {"qam_lr": config.qam_lr, "qam_channels": list(config.qam_channels)}
    if config.loss_weighting == "qam_ocm":
        summary["ocm_lambda"] = config.ocm_lambda
    summary["distinct_cases"] = config.distinct_cases
    summary["aligned_patches"] = config.aligned_patches
    return summary


def _save_as_cascade(
    segmenter: torch.nn.Module, card: ModelCard, config: TrainConfig, path_stem: Path
) -> ModelCard:
    """Pair the trained segmenter with its locator and write both as one cascade model."""
    from AutoCTVLib.models.cascade_card import CropSettings
    from AutoCTVLib.models.cascade_file import cascade_card, save_cascade
    from AutoCTVLib.preprocess import PreprocessConfig

    settings = config.segmenter_settings()
    locator, locator_card = load_locator(settings)
    training_data = dict(card.training_data) if isinstance(card.training_data, dict) else {}
    training_data["locator"] = {
        "name": locator_card.name,
        "version": locator_card.version,
        "weights_sha256": locator_card.weights_sha256,
    }
    training_data["segmenter_crops"] = (
        f"fine-grid crops around the reference CTV grown by {settings.margin_mm:g} mm margin + "
        f"{settings.jitter_mm:g} mm jitter; patches centred on the CTV box shifted by up to "
        f"{settings.jitter_mm:g} mm, on its surface ({config.boundary_fraction:g}) or on a CTV "
        f"voxel ({config.foreground_fraction:g})"
    )
    metrics = dict(card.metrics)
    metrics["grid"] = "segmenter grid, crop around the reference CTV (margin + jitter) per case"
    base = card.replace(training_data=training_data, metrics=metrics)
    full = cascade_card(
        base,
        locator,
        PreprocessConfig.from_dict(dict(locator_card.preprocessing)),
        segmenter,
        config.preprocess_config(),
        CropSettings(margin_mm=settings.margin_mm, threshold=settings.threshold),
    )
    return save_cascade((locator, segmenter), full, path_stem)


def _export_best(
    run_dir: Path,
    config: TrainConfig,
    result: TrainResult,
    train_ids: list[str],
    validation_ids: list[str],
    dataset_path: Path,
    model_name: str,
    model_version: str,
    init_from: dict[str, Any] | None = None,
) -> tuple[Path, ModelCard]:
    """Load the best checkpoint into a fresh CPU network and save it with its model card."""
    network = build_network(config.network_config())
    best_dir = run_dir / CHECKPOINTS_DIR / BEST
    source = best_dir if (best_dir / "state.json").is_file() else run_dir / CHECKPOINTS_DIR / LAST
    saved = load_checkpoint(source, network)
    best_state = saved["trainer"]["state"]
    validation = next(
        (
            {k: v for k, v in record.items() if k != "seconds"}
            for record in best_state["validation_history"]
            if record["iteration"] == best_state["best_iteration"]
        ),
        None,
    )
    label = ctv_label()
    if config.label_name != label.name:
        label = dataclasses.replace(label, name=config.label_name)
    card = ModelCard(
        name=model_name,
        version=model_version,
        architecture=config.network_config().to_dict(),
        preprocessing=config.preprocess_config().to_dict(),
        labels=(label,),
        training_data=json_safe(
            {
                "dataset": dataset_path.name,
                "label": config.label_name,
                "fold": config.fold,
                "n_folds": config.n_folds,
                "train_cases": train_ids,
                "validation_cases": validation_ids,
                "iterations": result.iterations,
                "seed": config.seed,
                "loss_weighting": _loss_weighting_summary(config),
                "trained_with": f"AutoCTV {__version__}",
                **({} if init_from is None else {"initialised_from": init_from}),
            }
        ),
        metrics=json_safe(
            {
                "grid": "network grid (preprocessing spacing), whole body crop per case",
                "best_iteration": best_state["best_iteration"],
                "validation": validation,
            }
        ),
        inference={"threshold": 0.5},
        intended_use="CTV contouring on planning CT; research use, review every contour",
        disclaimer="not validated for clinical use",
    )
    if config.stage == "segmenter":
        written = _save_as_cascade(network, card, config, run_dir / MODEL_STEM)
    else:
        written = save_model(network, card, run_dir / MODEL_STEM)
    model_path = run_dir / f"{MODEL_STEM}.safetensors"
    logger.info(
        "exported the model of iteration %s to %s", best_state["best_iteration"], model_path
    )
    return model_path, written
