"""The training loop: iteration-based, seeded, resumable, single- or multi-process.

Composition rather than inheritance::

    trainer = Trainer(model, loss_fn, adam_factory(lr=1e-4), sampler, validation_cases,
                      callbacks=[LogWriter(run_dir / "logs")], config=config, run_dir=run_dir)
    result = trainer.fit()            # or fit(resume=True) to continue from run_dir's last state

Each iteration ``n`` (1-based) draws batch ``n`` from the sampler (seeded by ``(seed, n)``),
reseeds torch's global generator from ``(seed, n, rank)`` (dropout masks), runs the network's
``forward_steps`` (every recurrent step), the loss, and one optimiser step. Because nothing
carries random state from one iteration to the next, a run resumed from its checkpoint at
iteration ``n`` continues exactly as if it had never stopped (on the CPU, bit for bit).

Every ``val_every`` iterations and after the last one, the network segments each validation
case's whole crop (threshold 0.5 on the sigmoid of the last step) and Dice and HD95 are
measured on the network grid. The ``last`` checkpoint is written after each validation, the
``best`` one whenever the mean Dice improves (rank 0 only), under ``run_dir/checkpoints``.

Loss weighting for noisy labels (``config.loss_weighting``, see ``docs/noisy_labels.md``): with
``"none"`` (default) the loss is ``loss_fn`` as above. With ``"qam"`` or ``"qam_ocm"`` the
trainer computes one loss per patch (``per_sample_loss_fn``) and the strategy of
:mod:`AutoCTVLib.noisy.weighting` combines them, ``Σ_i Θ_i·L_i`` with weights from a quality
network that is trained jointly (its parameters form a second optimiser group with learning
rate ``config.qam_lr``; its weights are checkpointed as ``quality.safetensors``, so resuming
stays exact). In a distributed run each process weights its own share of the batch and the
quality network's gradients are averaged over processes like the segmentation network's.
``config.weight_labelled_only`` shares the weights only among patches that hold label
(:func:`AutoCTVLib.noisy.weighting.labelled_weights`); ``config.weighting_warmup_iterations``
trains with the plain mean first; ``config.quality_signal`` chooses what trains the quality
network (the loss, or the loss less what patches with as much label lose,
:mod:`AutoCTVLib.noisy.size_baseline`). The training log records each weighted step's
weights, cases, labelled shares and per-patch losses. Only the segmentation network is used
for validation, export and inference.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Protocol

import numpy as np
import torch
from torch import nn

from AutoCTVLib.device import native_bf16
from AutoCTVLib.errors import CancelledError, InputError
from AutoCTVLib.metrics import segmentation_metrics, summarize
from AutoCTVLib.noisy.size_baseline import label_shares
from AutoCTVLib.noisy.weighting import LossWeighting, build_loss_weighting
from AutoCTVLib.training.callbacks import Callback
from AutoCTVLib.training.checkpoint import (
    load_checkpoint,
    read_checkpoint_state,
    save_checkpoint,
)
from AutoCTVLib.training.config import TrainConfig
from AutoCTVLib.training.data import PatchSampler, TrainingCase
from AutoCTVLib.training.distributed import (
    DistributedContext,
    all_gather_objects,
    barrier,
    wrap_model,
)
from AutoCTVLib.training.losses import get_loss, recurrent_loss
from AutoCTVLib.training.schedule import lr_factor

logger = logging.getLogger(__name__)

#: ``loss_fn(step_logits, target, weight) -> scalar``: step_logits holds one (N, 1, z, y, x)
#: tensor per recurrent step; ``weight`` is a per-voxel weight (N, 1, z, y, x) or ``None``.
LossFn = Callable[[Sequence[torch.Tensor], torch.Tensor, Optional[torch.Tensor]], torch.Tensor]
#: ``optimizer_factory(parameters) -> optimizer``.
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]

CHECKPOINTS_DIR = "checkpoints"
LAST = "last"
BEST = "best"
#: Settings a resumed run may change; any other difference refuses to resume.
RESUMABLE_CHANGES = frozenset(
    {"iterations", "val_every", "log_every", "early_stop_patience", "time_budget_s"}
)
#: Checkpoint name of the quality network's weights (``quality.safetensors``).
QUALITY_MODULE = "quality"


class CancelEvent(Protocol):
    def is_set(self) -> bool: ...


def adam_factory(lr: float = 1e-4, weight_decay: float = 0.0) -> OptimizerFactory:
    """Adam with the given learning rate (thesis: 1e-4) and weight decay."""

    def build(parameters: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)

    return build


def make_loss_fn(name: str = "bce_dice", reduction: str = "mean") -> LossFn:
    """``"bce"``, ``"dice"`` or ``"bce_dice"``, averaged over recurrent steps and samples
    (``reduction="per_sample"``: averaged over steps only, one loss per sample (N,))."""
    base = get_loss(name)

    def loss_fn(
        step_logits: Sequence[torch.Tensor], target: torch.Tensor, weight: torch.Tensor | None
    ) -> torch.Tensor:
        return recurrent_loss(step_logits, target, weight, base, reduction=reduction)

    return loss_fn


def derived_seed(*values: int) -> int:
    """A 63-bit seed mixed from integers (numpy's SeedSequence), e.g. ``(seed, n, rank)``."""
    state = np.random.SeedSequence([int(v) for v in values]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


class StepsForward(nn.Module):
    """Makes ``forward`` return every refinement step, so DDP sees the training forward.

    ``model.forward_steps(x)`` when the model has it, ``[model(x)]`` otherwise.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        steps = getattr(self.model, "forward_steps", None)
        return list(steps(x)) if callable(steps) else [self.model(x)]


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype for this run, or ``None``.

    On CUDA as configured; on a CPU only an explicit ``"bf16"`` (oneDNN's bf16 convolutions,
    about 2.5× faster than float32 on an AVX-512-BF16 CPU), refused where the CPU lacks it.
    """
    if config.mixed_precision == "off":
        return None
    if device.type == "cpu" and config.mixed_precision == "bf16":
        if not cpu_supports_bf16():
            raise InputError(
                'mixed_precision "bf16" needs a CPU with bf16 instructions (AVX-512 BF16 or '
                'AMX); this one has none: use "off"'
            )
        return torch.bfloat16
    if device.type != "cuda":
        return None
    if config.mixed_precision == "bf16":
        return torch.bfloat16
    if config.mixed_precision == "fp16":
        return torch.float16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def cpu_supports_bf16() -> bool:
    """True when oneDNN runs bf16 kernels natively on this CPU."""
    return native_bf16(torch.device("cpu"))


@dataclass
class TrainerState:
    """What a checkpoint restores besides weights and optimiser state."""

    iteration: int = 0
    best_dice: float | None = None
    best_iteration: int | None = None
    validations_without_improvement: int = 0
    stopped_early: bool = False
    train_seconds: float = 0.0
    train_history: list[dict[str, Any]] = field(default_factory=list)
    validation_history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainerState:
        return cls(**data)


@dataclass(frozen=True)
class TrainResult:
    """Summary of :meth:`Trainer.fit`."""

    iterations: int
    best_dice: float | None
    best_iteration: int | None
    stopped_early: bool
    last_validation: dict[str, Any] | None


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _encode_metrics(row: dict[str, Any]) -> dict[str, Any]:
    """Strict-JSON per-case row: infinite HD95 stored as ``None``."""
    return {key: (_finite_or_none(v) if isinstance(v, float) else v) for key, v in row.items()}


class Trainer:
    """Iteration-based training with validation, checkpoints, resume and optional DDP.

    Args:
        model: the network (``forward(x)`` → logits; ``forward_steps`` for recurrent ones).
        loss_fn: see :data:`LossFn` (:func:`make_loss_fn` builds the standard ones).
        optimizer_factory: see :data:`OptimizerFactory` (:func:`adam_factory`).
        train_data: the patch sampler.
        val_data: validation cases (whole crops, network grid).
        callbacks: called on rank 0 only.
        config: the run's settings (``seed``, ``iterations``, ``val_every``, ...).
        device: where to train.
        context: this process' place in a distributed job (default: single process).
        run_dir: where checkpoints go (``None``: no checkpoints, no resume).
        per_sample_loss_fn: like ``loss_fn`` but returning one loss per sample (N,); used
            only with a loss weighting (default: ``make_loss_fn(config.loss, "per_sample")``).

    The optimiser factory receives the network's parameters, or, with a quality network,
    two parameter groups (``[{"params": network}, {"params": quality, "lr": qam_lr}]``),
    which every ``torch.optim`` optimiser accepts.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        optimizer_factory: OptimizerFactory,
        train_data: PatchSampler,
        val_data: Sequence[TrainingCase],
        callbacks: Sequence[Callback] = (),
        config: TrainConfig | None = None,
        *,
        device: torch.device | str = "cpu",
        context: DistributedContext | None = None,
        run_dir: str | Path | None = None,
        per_sample_loss_fn: LossFn | None = None,
    ) -> None:
        self.config = config or TrainConfig()
        self.device = torch.device(device)
        self.context = context or DistributedContext()
        self.model = model.to(self.device)
        self.memory_format = (
            torch.channels_last_3d
            if self.config.channels_last and self.config.network_config().spatial_dims == 3
            else torch.contiguous_format
        )
        if self.memory_format is not torch.contiguous_format:
            self.model.to(memory_format=self.memory_format)  # in place: same parameters
        self.loss_fn = loss_fn
        self.weighting = self._build_weighting()
        self.per_sample_loss_fn = per_sample_loss_fn or make_loss_fn(
            self.config.loss, reduction="per_sample"
        )
        if self.weighting is None:
            self.optimizer = optimizer_factory(self.model.parameters())
        else:
            groups = [
                {"params": list(self.model.parameters())},
                {"params": list(self.weighting.parameters()), "lr": self.config.qam_lr},
            ]
            self.optimizer = optimizer_factory(groups)  # type: ignore[arg-type]
        # The schedule scales each group's rate as built here (a restored optimiser state
        # brings back the last scaled rate, never the base one).
        self._base_lrs = [float(group["lr"]) for group in self.optimizer.param_groups]
        self.last_sample_weights: list[float] | None = None
        self.last_sample_losses: list[float] | None = None
        self.last_case_ids: tuple[str, ...] | None = None
        self.last_label_shares: list[float] | None = None
        self.train_data = train_data
        self.val_data = list(val_data)
        self.callbacks = list(callbacks)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.state = TrainerState()
        self.amp_dtype = autocast_dtype(self.config, self.device)
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.amp_dtype == torch.float16 and self.device.type == "cuda"
        )
        self._forward = StepsForward(self.model)

    # ----------------------------------------------------------------------------- helpers
    def _build_weighting(self) -> LossWeighting | None:
        """The quality-network strategy of ``config.loss_weighting`` (``None`` for "none")."""
        if self.config.loss_weighting == "none":
            return None
        network = self.config.network_config()
        weighting = build_loss_weighting(
            self.config.loss_weighting,
            spatial_dims=network.spatial_dims,
            label_channels=network.out_channels,
            image_channels=network.in_channels,
            ocm_lambda=self.config.ocm_lambda,
            qam_channels=self.config.qam_channels,
            seed=derived_seed(self.config.seed, 1),
            labelled_only=self.config.weight_labelled_only,
            signal=self.config.quality_signal,
        )
        return weighting.to(self.device)

    def _extra_modules(self) -> dict[str, nn.Module] | None:
        return None if self.weighting is None else {QUALITY_MODULE: self.weighting}

    def checkpoint_dir(self, which: str) -> Path:
        if self.run_dir is None:
            raise ValueError("this trainer has no run folder")
        return self.run_dir / CHECKPOINTS_DIR / which

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _notify(self, hook: str, *args: Any) -> None:
        if self.context.is_main:
            for callback in self.callbacks:
                getattr(callback, hook)(self, *args)

    def _mean_over_ranks(self, value: float) -> float:
        if not self.context.is_distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self._collective_device())
        torch.distributed.all_reduce(tensor)
        return float(tensor.item()) / self.context.world_size

    def _collective_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def _trainer_state(self) -> dict[str, Any]:
        return {"state": self.state.to_dict(), "config": self.config.to_dict()}

    def _save(self, which: str, with_optimizer: bool) -> None:
        if self.run_dir is None or not self.context.is_main:
            return
        save_checkpoint(
            self.checkpoint_dir(which),
            self.model,
            self._trainer_state(),
            optimizer=self.optimizer if with_optimizer else None,
            scaler_state=self.scaler.state_dict() if self.scaler.is_enabled() else None,
            extra_modules=self._extra_modules(),
        )

    def _restore(self) -> None:
        if self.run_dir is None:
            raise ValueError("resuming needs a run folder")
        folder = self.checkpoint_dir(LAST)
        if not (folder / "state.json").is_file():
            raise InputError(f"there is no training state to resume from in {self.run_dir}")
        stored = read_checkpoint_state(folder)["trainer"]["config"]
        # Settings added after a run was started take their defaults (older runs resume).
        stored = {**TrainConfig().to_dict(), **stored}
        current = self.config.to_dict()
        changed = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
        refused = [key for key in changed if key not in RESUMABLE_CHANGES]
        if refused:
            raise InputError(
                "cannot resume: the run was started with different settings for "
                + ", ".join(refused)
            )
        saved = load_checkpoint(folder, self.model, self.optimizer, self._extra_modules())
        self.state = TrainerState.from_dict(saved["trainer"]["state"])
        self.state.stopped_early = False
        if saved.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(saved["scaler"])
        logger.info("resumed from iteration %d", self.state.iteration)

    # ------------------------------------------------------------------------- training
    def train_step(self, iteration: int, module: nn.Module, time_share: float = 0.0) -> float:
        """One optimiser step on batch ``iteration``; returns this rank's loss.

        ``time_share``: the share of the time budget spent before this step (0: no budget).
        """
        batch = self.train_data.batch(iteration, self.context.rank, self.context.world_size)
        torch.manual_seed(derived_seed(self.config.seed, iteration, self.context.rank))
        image = batch.image.to(self.device, non_blocking=True)
        image = image.contiguous(memory_format=self.memory_format)
        label = batch.label.to(self.device, non_blocking=True)
        weight = None if batch.weight is None else batch.weight.to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        factor = lr_factor(self.config.lr_schedule, iteration, self.config.iterations, time_share)
        for group, base_lr in zip(self.optimizer.param_groups, self._base_lrs):
            group["lr"] = base_lr * factor
        with self._autocast():
            step_logits = module(image)
        warming_up = iteration <= self.config.weighting_warmup_iterations
        self.last_sample_weights = None
        if self.weighting is None or warming_up:
            loss = self.loss_fn([logits.float() for logits in step_logits], label, weight)
        else:
            loss = self._weighted_loss(step_logits, image, label, weight)
            self.last_case_ids = batch.case_ids
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the training loss became {loss.item()} at iteration {iteration}"
            )
        self.scaler.scale(loss).backward()
        if self.weighting is not None:
            self._average_quality_gradients()
        if self.config.grad_clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip_norm)
            if self.weighting is not None:
                nn.utils.clip_grad_norm_(self.weighting.parameters(), self.config.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach().item())

    def _weighted_loss(
        self,
        step_logits: Sequence[torch.Tensor],
        image: torch.Tensor,
        label: torch.Tensor,
        weight: torch.Tensor | None,
    ) -> torch.Tensor:
        """``Σ_i Θ_i·L_i`` over this process' samples (quality network forward included)."""
        assert self.weighting is not None
        per_sample = self.per_sample_loss_fn(
            [logits.float() for logits in step_logits], label, weight
        )
        known = None if weight is None else weight.flatten(1).sum(dim=1) > 0
        with self._autocast():
            result = self.weighting(per_sample, image, label, known)
        self.last_sample_weights = [float(w) for w in result.weights.cpu()]
        self.last_sample_losses = [float(v) for v in per_sample.detach().cpu()]
        # how much of each patch is labelled: a diagnostic of what the quality network keys on
        self.last_label_shares = [float(v) for v in label_shares(label).cpu()]
        return result.loss

    def _average_quality_gradients(self) -> None:
        """Average the quality network's gradients over processes (DDP does the network's)."""
        if not self.context.is_distributed or self.weighting is None:
            return
        for parameter in self.weighting.parameters():
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            torch.distributed.all_reduce(parameter.grad)
            parameter.grad.div_(self.context.world_size)

    @torch.no_grad()
    def predict_case(self, case: TrainingCase) -> np.ndarray:
        """Binary (z, y, x) prediction for a whole case crop (last recurrent step, p >= 0.5)."""
        was_training = self.model.training
        self.model.eval()
        try:
            image = torch.from_numpy(case.image)
            image = (image[None, None] if image.ndim == 3 else image[None]).to(self.device)
            image = image.contiguous(memory_format=self.memory_format)
            with self._autocast():
                logits = self.model(image)
            probability = torch.sigmoid(logits.float())[0, 0]
            return (probability >= 0.5).cpu().numpy()
        finally:
            self.model.train(was_training)

    def sync_buffers(self) -> None:
        """Give every rank rank 0's buffers (BatchNorm running statistics).

        DDP copies them from rank 0 at the start of each training forward, so after the last
        step each rank holds its own update; validation and checkpoints use rank 0's.
        """
        if not self.context.is_distributed:
            return
        for buffer in self.model.buffers():
            torch.distributed.broadcast(buffer.data, src=0)

    def validate(self, iteration: int) -> dict[str, Any]:
        """Dice and HD95 on every validation case; each rank measures its share."""
        self.sync_buffers()
        started = time.perf_counter()
        mine = self.val_data[self.context.rank :: self.context.world_size]
        rows = []
        for case in mine:
            metrics = segmentation_metrics(self.predict_case(case), case.label, case.spacing_xyz_mm)
            rows.append({"case_id": case.case_id, **metrics})
        gathered = [row for part in all_gather_objects(rows, self.context) for row in part]
        gathered.sort(key=lambda row: row["case_id"])
        summary = summarize(gathered)
        return {
            "iteration": iteration,
            **summary,
            "seconds": time.perf_counter() - started,
            "per_case": [_encode_metrics(row) for row in gathered],
        }

    def record_validation(self, record: dict[str, Any]) -> bool:
        """Update best/early-stop state, write checkpoints; True when training should stop."""
        dice = record.get("dice_mean")
        improved = dice is not None and (
            self.state.best_dice is None or dice > self.state.best_dice
        )
        record["is_best"] = bool(improved)
        if improved:
            self.state.best_dice = float(dice)
            self.state.best_iteration = int(record["iteration"])
            self.state.validations_without_improvement = 0
        else:
            self.state.validations_without_improvement += 1
        patience = self.config.early_stop_patience
        stop = patience is not None and self.state.validations_without_improvement >= patience
        self.state.stopped_early = bool(stop)
        self.state.validation_history.append(record)
        if improved:
            self._save(BEST, with_optimizer=False)
        self._save(LAST, with_optimizer=True)
        barrier(self.context)
        self._notify("on_validation_end", record)
        return stop

    def _budget_clock(self, seconds_before: float, started: float) -> float:
        """Training seconds so far (earlier sessions included), the same on every rank.

        With a time budget the ranks agree on their mean, so that they decay the rate alike and
        stop at the same iteration.
        """
        seconds = seconds_before + time.perf_counter() - started
        return seconds if self.config.time_budget_s is None else self._mean_over_ranks(seconds)

    def _time_share(self, seconds: float) -> float:
        """The share of ``config.time_budget_s`` that ``seconds`` of training spend (0: none)."""
        budget = self.config.time_budget_s
        return 0.0 if budget is None else seconds / budget

    def fit(self, resume: bool = False, cancel: CancelEvent | None = None) -> TrainResult:
        """Train up to ``config.iterations`` (continuing from the last checkpoint if ``resume``).

        Raises:
            CancelledError: ``cancel`` was set; the last checkpoint stays as it was.
            InputError: ``resume`` without a usable checkpoint, or with changed settings.
        """
        previous_deterministic = torch.are_deterministic_algorithms_enabled()
        previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        if self.config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=self.device.type != "cpu")
            if self.device.type == "cuda":
                torch.backends.cudnn.benchmark = False
        try:
            return self._fit(resume, cancel)
        finally:
            torch.use_deterministic_algorithms(previous_deterministic, warn_only=previous_warn_only)

    def _fit(self, resume: bool, cancel: CancelEvent | None) -> TrainResult:
        if resume:
            self._restore()
        module = wrap_model(self._forward, self.context, self.device)
        self.model.train()
        if self.weighting is not None:
            self.weighting.train()
        self._notify("on_train_start")
        started = time.perf_counter()
        seconds_before = self.state.train_seconds
        total = self.config.iterations
        while self.state.iteration < total and not self.state.stopped_early:
            if cancel is not None and cancel.is_set():
                raise CancelledError("training was cancelled")
            iteration = self.state.iteration + 1
            time_share = self._time_share(self.state.train_seconds)
            loss = self._mean_over_ranks(self.train_step(iteration, module, time_share))
            self.state.iteration = iteration
            self.state.train_seconds = self._budget_clock(seconds_before, started)
            record = {
                "iteration": iteration,
                "loss": loss,
                "lr": float(self.optimizer.param_groups[0]["lr"]),
                "seconds": time.perf_counter() - started,
            }
            if self.weighting is not None and self.last_sample_weights is not None:
                record["sample_weights"] = self.last_sample_weights
                record["case_ids"] = list(self.last_case_ids or ())
                record["label_shares"] = list(self.last_label_shares or ())
                record["sample_losses"] = list(self.last_sample_losses or ())
            if iteration % self.config.log_every == 0 or iteration == total:
                self.state.train_history.append(record)
            self._notify("on_iteration_end", record)
            out_of_time = (
                not self.state.stopped_early and self._time_share(self.state.train_seconds) >= 1
            )
            if iteration % self.config.val_every == 0 or iteration == total or out_of_time:
                self.record_validation(self.validate(iteration))
            if out_of_time:
                logger.info("time budget spent: stopped after iteration %d", iteration)
                self.state.stopped_early = True
        self._notify("on_train_end")
        last = self.state.validation_history[-1] if self.state.validation_history else None
        return TrainResult(
            iterations=self.state.iteration,
            best_dice=self.state.best_dice,
            best_iteration=self.state.best_iteration,
            stopped_early=self.state.stopped_early,
            last_validation=last,
        )
