"""Monte-Carlo dropout sampling of the CTV network: the cheap path and the naive reference.

Every sample t gives a foreground probability ``p_t`` per network-grid voxel; what is kept are
the moments ``mean p``, ``mean p²`` and ``mean H(p_t)`` (binary entropy in bits), from which
:func:`maps_from_moments` derives mean probability, predictive entropy, mutual information and
variance. Moments are linear in the samples, so overlapping sliding windows blend them like one
pool of samples. (Onto the input grid the predictor interpolates the maps, not the moments; see
:func:`AutoCTVLib.predict.predictor.maps_on_input_grid`.)

What the cheap path (:func:`sample_moments`, method ``"cheap"``) samples, exactly:

1. Recurrent steps 1..K−1 run once with dropout off (eval mode: the network's ordinary
   prediction). Only the last step K is sampled. (The naive path samples every step.)
2. Step K's encoder runs once: with dropout placed at the ``bottleneck`` or in the
   ``decoder`` the encoder holds no dropout layer, so its output is the same for every sample.
   A deterministic decode gives the plain probability ``p̂`` (the result without uncertainty)
   and the squeeze-and-excitation (SE) gates of the bridge and decoder blocks.
3. The sampling region: the bounding box of the voxels with ``lo < p̂ < hi`` (default 0.01 and
   0.99) or on the ``p̂ = 0.5`` surface, grown by ``margin_mm`` and aligned to the U-Net's
   pooling grid (multiples of ``2 ** (levels − 1)`` voxels).
4. N decoder passes over the encoder features cropped to that box, several samples per batch,
   with only the dropout layers active (:func:`AutoCTVLib.nn.mc_dropout`). The decoder is the
   split one of :mod:`AutoCTVLib.predict.mc_decoder` (the skip halves of the first decoder
   convolutions computed once; the same function up to float rounding). Batch b draws its
   masks from a generator seeded with the b-th seed drawn from ``settings.seed``; on the CPU
   two batches run at once in threads (``workers``), which changes nothing in the result but
   keeps both cores of a small CPU busy (:func:`_sum_batches`). SE gates are global
   averages over the whole volume; in the cropped passes they are held at the values of the
   deterministic pass (with element dropout over ~10⁶ voxels a gate barely moves between
   samples). Without a crop (``boundary_crop=False`` or a box covering the volume) the gates are
   computed per sample as in a full pass.
5. Outside the box every sample is taken to equal ``p̂``: entropy ``H(p̂)``, mutual information
   and variance 0. These voxels are far (≥ ``margin_mm``) from any voxel the model doubts.

With dropout everywhere (``dropout_where="all"``) the encoder is stochastic; step K then runs
in full (encoder and decoder) for every sample, over the whole volume.

Where the mathematics says the paths agree, they do sample for sample under the same seed:
for a plain U-Net (K = 1) without crop and one sample per batch, the cheap path draws the same
dropout masks as the naive path (sample t from the t-th seed; the encoder draws none), so the
moments are the same up to float rounding (the split decoder sums in another order, < 1e-5);
for K > 1 the same holds against ``naive_moments(..., sample_steps="last")``.
Batching several samples and cropping change which random numbers go where, not the
distribution (batching) or only slightly (crop borders, held SE gates); the uncertainty
benchmark measures the effect against naive full MC.

Cost, measured for the thesis network (K = 3, 16–128 channels, decoder dropout) on the
100×123×194 network grid of a 512×512×100 pelvic CT, 2 CPU threads: the plain prediction takes
9.8 s; one stochastic decoder pass over the whole grid 3.0 s, over a box of 20 % of the grid
(about the CTV's box plus 20 mm) 0.57 s. So N = 20 adds about 11 s (cheap path) instead of
60 s (decoder passes over the whole grid) or 196 s (naive: K full steps per sample).

Tensors are (N, C, z, y, x); moment maps (z, y, x), float32, on the network grid.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from AutoCTVLib.errors import CancelledError
from AutoCTVLib.inference.uncertainty import UncertaintyMaps, binary_entropy
from AutoCTVLib.nn.blocks import SqueezeExcitation
from AutoCTVLib.nn.mc_dropout import mc_dropout
from AutoCTVLib.nn.padding import Padding
from AutoCTVLib.nn.recurrent import RecurrentRefinement
from AutoCTVLib.nn.unet3d import UNet, UNetFeatures
from AutoCTVLib.predict.mc_decoder import (
    SampledDecoder,
    can_split_decoder,
    has_only_element_dropout,
)
from AutoCTVLib.predict.mc_masks import MaskSource, element_dropout_from, mask_generator

logger = logging.getLogger(__name__)

MC_METHODS = ("cheap", "naive")
SAMPLE_STEPS = ("all", "last")
_LN2 = math.log(2.0)

SampleProgress = Callable[[float, str], None]


@dataclass(frozen=True)
class MCSettings:
    """How Monte-Carlo dropout uncertainty is sampled (recorded in provenance).

    Attributes:
        samples: N stochastic passes (≥ 1).
        method: ``"cheap"`` (see the module docstring) or ``"naive"`` (N full passes, every
            recurrent step sampled: the reference, K·N times the network cost).
        boundary_crop: cheap path only: sample only the box around the predicted boundary.
        margin_mm: cheap path: margin added around the doubtful voxels before cropping.
        uncertain_range: cheap path: plain probabilities strictly inside this range are
            doubtful (they and the 0.5 surface define the sampling box).
        decode_batch: samples per decoder batch; 0 picks it from the memory budget.
        seed: seeds the dropout masks (same seed, same maps).
    """

    samples: int = 20
    method: str = "cheap"
    boundary_crop: bool = True
    margin_mm: float = 20.0
    uncertain_range: tuple[float, float] = (0.01, 0.99)
    decode_batch: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1:
            raise ValueError(f"MC samples must be a positive integer, got {self.samples!r}")
        if self.method not in MC_METHODS:
            raise ValueError(f"MC method must be one of {MC_METHODS}, got {self.method!r}")
        if not (math.isfinite(self.margin_mm) and self.margin_mm >= 0):
            raise ValueError(f"margin_mm must be a non-negative number, got {self.margin_mm}")
        lo, hi = (float(v) for v in self.uncertain_range)
        if not 0.0 <= lo < 0.5 < hi <= 1.0:
            raise ValueError(f"uncertain_range must satisfy 0 <= lo < 0.5 < hi <= 1, got {lo, hi}")
        object.__setattr__(self, "uncertain_range", (lo, hi))
        if isinstance(self.decode_batch, bool) or self.decode_batch < 0:
            raise ValueError(f"decode_batch must be >= 0, got {self.decode_batch!r}")

    def to_dict(self) -> dict[str, object]:
        return {
            "samples": self.samples,
            "method": self.method,
            "boundary_crop": self.boundary_crop,
            "margin_mm": self.margin_mm,
            "uncertain_range": list(self.uncertain_range),
            "decode_batch": self.decode_batch,
            "seed": self.seed,
            "sampled": (
                "every recurrent step, whole volume"
                if self.method == "naive"
                else "last recurrent step only; decoder passes"
                + (" in the box around the predicted boundary" if self.boundary_crop else "")
            ),
        }


@dataclass(frozen=True)
class MCMoments:
    """Moments of N samples on the network grid, float32 tensors (z, y, x) on one device.

    Attributes:
        mean_prob: mean of p_t.
        mean_sq_prob: mean of p_t².
        mean_entropy: mean of H(p_t), bits.
        plain_prob: the deterministic (dropout off) prediction p̂.
        sampled_voxels: voxels inside the sampling region (the others took p̂).
        n_samples: N.
    """

    mean_prob: torch.Tensor
    mean_sq_prob: torch.Tensor
    mean_entropy: torch.Tensor
    plain_prob: torch.Tensor
    sampled_voxels: int
    n_samples: int

    def stacked(self) -> torch.Tensor:
        """(4, z, y, x): mean p, mean p², mean H, plain p (for sliding-window blending)."""
        return torch.stack([self.mean_prob, self.mean_sq_prob, self.mean_entropy, self.plain_prob])

    @classmethod
    def from_stacked(cls, stacked: torch.Tensor, n_samples: int, sampled_voxels: int) -> MCMoments:
        return cls(stacked[0], stacked[1], stacked[2], stacked[3], sampled_voxels, n_samples)


def entropy_bits(prob: torch.Tensor) -> torch.Tensor:
    """Binary entropy in bits of a probability tensor (0 at 0 and 1), same shape, float32."""
    p = prob.float().clamp(0.0, 1.0)
    q = 1.0 - p
    return (-(torch.special.xlogy(p, p) + torch.special.xlogy(q, q)) / _LN2).clamp_min_(0.0)


def deterministic_moments(plain_prob: torch.Tensor, n_samples: int = 1) -> MCMoments:
    """Moments of N samples that all equal ``plain_prob`` (no spread)."""
    p = plain_prob.float()
    return MCMoments(p.clone(), p * p, entropy_bits(p), p, 0, n_samples)


def maps_from_moments(
    mean_prob: np.ndarray,
    mean_sq_prob: np.ndarray,
    mean_entropy: np.ndarray,
    n_samples: int,
) -> UncertaintyMaps:
    """Uncertainty maps (bits) from sample moments on any grid (numpy arrays, z, y, x).

    ``entropy = H(mean p)``, ``mutual_information = clip(H(mean p) − mean H, 0, entropy)``,
    ``variance = max(mean p² − (mean p)², 0)``, ``expected_entropy = min(mean H, entropy)``.
    """
    mean = np.clip(np.asarray(mean_prob, dtype=np.float32), 0.0, 1.0)
    entropy = binary_entropy(mean, "bits")
    expected = np.asarray(mean_entropy, dtype=np.float32)
    mutual_information = np.clip(entropy - expected, 0.0, entropy).astype(np.float32)
    variance = np.maximum(np.asarray(mean_sq_prob, dtype=np.float32) - mean * mean, 0.0)
    return UncertaintyMaps(
        mean_prob=mean,
        entropy=entropy,
        expected_entropy=np.minimum(np.maximum(expected, 0.0), entropy).astype(np.float32),
        mutual_information=mutual_information,
        variance=variance.astype(np.float32),
        n_samples=int(n_samples),
        unit="bits",
    )


def supports_cheap_sampling(network: nn.Module) -> bool:
    """True for a U-Net or a recurrent U-Net (the networks with an encode/decode split)."""
    return _unet_of(network) is not None


# --------------------------------------------------------------------------- cheap path


@dataclass(frozen=True)
class LastStep:
    """The deterministic part of the cheap path (steps 1..K−1, step K's encoder and a plain
    decode), kept for the sampling that follows.

    Attributes:
        plain_prob: p̂, the prediction with dropout off, (z, y, x) float32.
        unet: the U-Net of the last step.
        last_input: step K's input (image and fed-back probability), (1, C, z, y, x).
        features: step K's encoder output, or ``None`` when the encoder holds dropout.
        gates: SE gates of the bridge and decoder blocks from the plain decode.
    """

    plain_prob: torch.Tensor
    unet: UNet
    last_input: torch.Tensor
    features: UNetFeatures | None
    gates: dict[int, torch.Tensor]


def run_last_step(network: nn.Module, image: torch.Tensor) -> LastStep:
    """Run the deterministic part of the cheap path (no random numbers are drawn).

    ``network`` must be a U-Net or a recurrent U-Net (:func:`supports_cheap_sampling`).
    """
    found = _unet_of(network)
    if found is None:
        raise ValueError("cheap MC sampling needs a U-Net (with or without recurrence)")
    if image.ndim != 5 or image.shape[0] != 1:
        raise ValueError(f"expected one image shaped (1, C, z, y, x), got {tuple(image.shape)}")
    unet, steps, recurrent = found
    network.eval()
    last_input = _last_step_input(unet, steps, recurrent, image)
    if not unet.encoder_is_deterministic:
        plain = torch.sigmoid(unet(last_input).float())[0, 0]
        return LastStep(plain, unet, last_input, None, {})
    features = unet.encode(last_input)
    with _captured_gates(_decoder_se_modules(unet)) as gates:
        plain = torch.sigmoid(unet.decode(features).float())[0, 0]
    return LastStep(plain, unet, last_input, features, dict(gates))


def sample_last_step(
    last_step: LastStep,
    settings: MCSettings,
    spacing_zyx_mm: Sequence[float],
    *,
    decode_batch: int = 1,
    workers: int = 1,
    progress: SampleProgress | None = None,
    cancel: threading.Event | None = None,
) -> MCMoments:
    """Steps 3–5 of the module docstring: N stochastic passes of the last step's decoder.

    ``workers`` > 1 decodes that many batches at once in threads (CPU; see
    :func:`_sum_batches`); the result does not depend on it.
    """
    unet, features, plain = last_step.unet, last_step.features, last_step.plain_prob
    samples = settings.samples
    with _seeded(settings.seed, plain.device):
        if features is None:
            return _sample_whole_last_step(
                unet, last_step.last_input, plain, samples, decode_batch, progress, cancel
            )
        moments = deterministic_moments(plain, samples)
        box = sampling_box(plain, features.padding, settings, spacing_zyx_mm, unet.size_multiple)
        if box is None:
            logger.debug("no doubtful voxel: MC sampling skipped")
            if progress is not None:
                progress(1.0, "nothing doubtful to sample")
            return moments
        padded_shape = tuple(int(n) for n in features.skips[0].shape[2:])
        covers_all = all(
            start == 0 and stop == size for (start, stop), size in zip(box, padded_shape)
        )
        if covers_all or not settings.boundary_crop:
            sums = _sample_decoder(
                unet,
                features,
                samples,
                decode_batch,
                contextlib.nullcontext(),
                workers,
                progress,
                cancel,
            )
            target = tuple(slice(0, n) for n in plain.shape)
            return _with_samples(moments, sums, target, samples)
        fixed = _fixed_gates(_decoder_se_modules(unet), last_step.gates)
        sums = _sample_decoder(
            unet,
            crop_features(features, box),
            samples,
            decode_batch,
            fixed,
            workers,
            progress,
            cancel,
        )
        target, source = _unpadded_slices(box, features.padding, tuple(plain.shape))
        return _with_samples(moments, sums[(slice(None), *source)], target, samples)


def sample_moments(
    network: nn.Module,
    image: torch.Tensor,
    settings: MCSettings,
    spacing_zyx_mm: Sequence[float],
    *,
    decode_batch: int = 1,
    workers: int = 1,
    progress: SampleProgress | None = None,
    cancel: threading.Event | None = None,
) -> MCMoments:
    """MC moments of ``network`` on ``image`` (1, C, z, y, x) by ``settings.method``.

    Args:
        network: a :class:`UNet` or :class:`RecurrentRefinement` around one (cheap path);
            any module for the naive path (used for other networks too). Left in eval mode.
        image: one preprocessed image on the device (and memory layout) to run on.
        settings: see :class:`MCSettings`.
        spacing_zyx_mm: network-grid spacing (z, y, x) in mm (for the crop margin).
        decode_batch: samples per decoder batch (the caller derives it from memory).
        workers: batches decoded at once in threads (cheap path; the caller derives it from
            the CPU threads and memory); the result does not depend on it.
        progress: called with (fraction of samples done, message).
        cancel: checked between batches; when set, :class:`CancelledError` is raised.
    """
    if settings.method == "naive" or not supports_cheap_sampling(network):
        return naive_moments(
            network, image, settings.samples, settings.seed, progress=progress, cancel=cancel
        )
    last_step = run_last_step(network, image)
    return sample_last_step(
        last_step,
        settings,
        spacing_zyx_mm,
        decode_batch=decode_batch,
        workers=workers,
        progress=progress,
        cancel=cancel,
    )


def sampling_box(
    plain_prob: torch.Tensor,
    padding: Padding,
    settings: MCSettings,
    spacing_zyx_mm: Sequence[float],
    multiple: int,
) -> tuple[tuple[int, int], ...] | None:
    """``(start, stop)`` per axis, in the encoder's padded coordinates, of the sampling box.

    ``None`` when no voxel is doubtful (step 3 of the module docstring).
    """
    lo, hi = settings.uncertain_range
    foreground = (plain_prob >= 0.5).float()[None, None]
    dilated = F.max_pool3d(foreground, 3, stride=1, padding=1)
    eroded = -F.max_pool3d(-foreground, 3, stride=1, padding=1)
    region = ((plain_prob > lo) & (plain_prob < hi)) | (dilated != eroded)[0, 0]
    if not bool(region.any()):
        return None
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        present = torch.nonzero(region.any(dim=other[1]).any(dim=other[0])).flatten()
        first, last = int(present.min()), int(present.max())
        before, after = padding.before_after[axis]
        size = plain_prob.shape[axis] + before + after
        margin = math.ceil(settings.margin_mm / float(spacing_zyx_mm[axis]) - 1e-9)
        start = max(0, (first + before - margin) // multiple * multiple)
        stop = min(size, math.ceil((last + 1 + before + margin) / multiple) * multiple)
        box.append((start, stop))
    return tuple(box)


def crop_features(features: UNetFeatures, box: Sequence[tuple[int, int]]) -> UNetFeatures:
    """The encoder features inside ``box`` (padded full-resolution coordinates, aligned to the
    pooling grid) at every level; ``decode`` of the result gives logits for exactly the box."""
    levels = len(features.skips)

    def cut(tensor: torch.Tensor, level: int) -> torch.Tensor:
        index = [slice(None), slice(None)]
        for start, stop in box:
            if start % (1 << level) or stop % (1 << level):
                raise ValueError(f"crop box {tuple(box)} is not aligned to level {level}")
            index.append(slice(start >> level, stop >> level))
        return tensor[tuple(index)]

    return UNetFeatures(
        skips=tuple(cut(skip, level) for level, skip in enumerate(features.skips)),
        deepest=cut(features.deepest, levels),
        padding=Padding(((0, 0),) * len(box)),
    )


def _unpadded_slices(
    box: Sequence[tuple[int, int]], padding: Padding, shape: tuple[int, ...]
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """(slices of the unpadded grid, slices of the box output) where the box meets the grid."""
    target, source = [], []
    for (start, stop), (before, _), size in zip(box, padding.before_after, shape):
        lo = max(0, start - before)
        hi = min(size, stop - before)
        target.append(slice(lo, hi))
        source.append(slice(lo + before - start, hi + before - start))
    return tuple(target), tuple(source)


def _with_samples(
    moments: MCMoments, sums: torch.Tensor, target: tuple[slice, ...], n: int
) -> MCMoments:
    mean_prob = moments.mean_prob.clone()
    mean_sq = moments.mean_sq_prob.clone()
    mean_entropy = moments.mean_entropy.clone()
    mean_prob[target] = sums[0] / n
    mean_sq[target] = sums[1] / n
    mean_entropy[target] = sums[2] / n
    sampled = math.prod(s.stop - s.start for s in target)
    return MCMoments(mean_prob, mean_sq, mean_entropy, moments.plain_prob, sampled, n)


def _sample_decoder(
    unet: UNet,
    features: UNetFeatures,
    samples: int,
    batch: int,
    gates_context: contextlib.AbstractContextManager[object],
    workers: int,
    progress: SampleProgress | None,
    cancel: threading.Event | None,
) -> torch.Tensor:
    """Sums of p, p² and H(p) over ``samples`` stochastic decodes: (3, z, y, x).

    Batch b draws its element-dropout masks from :func:`mask_generator` seeded with the b-th of
    :func:`_batch_seeds` (other dropout kinds: torch's global generator seeded with it).
    """
    counts = _batch_counts(samples, batch)
    seeds = _batch_seeds(len(counts))
    device = features.deepest.device
    source = MaskSource()
    with mc_dropout(unet, require_dropout=False), gates_context:
        patched = element_dropout_from(unet, source)  # for unet.decode below
        if can_split_decoder(unet) and has_only_element_dropout(unet):
            decoder = SampledDecoder(unet, features)

            def decode(index: int) -> torch.Tensor:
                return decoder(counts[index], mask_generator(seeds[index], device))

            parallel = workers
        else:

            def decode(index: int) -> torch.Tensor:
                torch.manual_seed(seeds[index])
                source.generator = mask_generator(seeds[index], device)
                return unet.decode(_expanded(features, counts[index]))

            parallel = 1

        def batch_sums(index: int) -> torch.Tensor:
            return _probability_sums(torch.sigmoid(decode(index).float())[:, 0])

        with patched:
            return _sum_batches(batch_sums, counts, parallel, progress, cancel)


def _sample_whole_last_step(
    unet: UNet,
    last_input: torch.Tensor,
    plain: torch.Tensor,
    samples: int,
    batch: int,
    progress: SampleProgress | None,
    cancel: threading.Event | None,
) -> MCMoments:
    """Encoder with dropout: the whole last step runs per sample over the whole volume."""
    counts = _batch_counts(samples, batch)
    seeds = _batch_seeds(len(counts))

    source = MaskSource()

    def batch_sums(index: int) -> torch.Tensor:
        torch.manual_seed(seeds[index])
        source.generator = mask_generator(seeds[index], last_input.device)
        logits = unet(last_input.expand(counts[index], *last_input.shape[1:]))
        return _probability_sums(torch.sigmoid(logits.float())[:, 0])

    with mc_dropout(unet, require_dropout=False), element_dropout_from(unet, source):
        sums = _sum_batches(batch_sums, counts, 1, progress, cancel)
    moments = deterministic_moments(plain, samples)
    target = tuple(slice(0, n) for n in plain.shape)
    return _with_samples(moments, sums, target, samples)


def _batch_counts(samples: int, batch: int) -> list[int]:
    """Samples per batch: ``batch`` each, the rest in the last one."""
    size = max(1, batch)
    return [min(size, samples - start) for start in range(0, samples, size)]


def _batch_seeds(batches: int) -> list[int]:
    """One seed per batch, drawn from torch's global generator (seeded by the caller)."""
    return [int(v) for v in torch.randint(0, 2**62, (batches,), dtype=torch.int64).tolist()]


def _sum_batches(
    batch_sums: Callable[[int], torch.Tensor],
    counts: Sequence[int],
    workers: int,
    progress: SampleProgress | None,
    cancel: threading.Event | None,
) -> torch.Tensor:
    """Add ``batch_sums(b)`` over the batches in batch order.

    With ``workers`` > 1 the batches run in that many threads, each with ``1/workers`` of
    torch's CPU threads (restored afterwards): on a small CPU, independent decodes keep the
    cores busier than one decode split over them. Each batch owns its generator and the sums
    are added in batch order, so the result is the same as with one worker (up to the
    rounding of convolutions run with fewer threads).
    """
    samples = sum(counts)
    total: torch.Tensor | None = None
    done = 0

    def add(sums: torch.Tensor, count: int) -> None:
        nonlocal total, done
        total = sums if total is None else total + sums
        done += count
        if progress is not None:
            progress(done / samples, f"MC sample {done} of {samples}")

    if workers <= 1 or len(counts) <= 1:
        for index, count in enumerate(counts):
            _check_cancel(cancel)
            add(batch_sums(index), count)
    else:
        mode = torch.inference_mode if torch.is_inference_mode_enabled() else torch.no_grad
        autocast = _autocast_state()  # thread-local in torch: carried into the workers

        def task(index: int) -> torch.Tensor:
            _check_cancel(cancel)
            with mode(), _autocast_as(autocast):
                return batch_sums(index)

        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, threads // workers))
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mc") as pool:
                futures = [pool.submit(task, index) for index in range(len(counts))]
                try:
                    for future, count in zip(futures, counts):
                        add(future.result(), count)
                finally:
                    for future in futures:
                        future.cancel()
        finally:
            torch.set_num_threads(threads)
    assert total is not None
    return total


def _autocast_state() -> list[tuple[str, torch.dtype]]:
    """The autocast regions the calling thread is in: ``(device type, dtype)`` each."""
    return [
        (device, torch.get_autocast_dtype(device))
        for device in ("cpu", "cuda")
        if torch.is_autocast_enabled(device)
    ]


@contextlib.contextmanager
def _autocast_as(state: Sequence[tuple[str, torch.dtype]]) -> Iterator[None]:
    """Enter the autocast regions of :func:`_autocast_state` (in another thread)."""
    with contextlib.ExitStack() as stack:
        for device, dtype in state:
            stack.enter_context(torch.autocast(device, dtype=dtype))
        yield


# --------------------------------------------------------------------------- naive reference


def naive_moments(
    network: nn.Module,
    image: torch.Tensor,
    samples: int,
    seed: int = 0,
    *,
    sample_steps: str = "all",
    progress: SampleProgress | None = None,
    cancel: threading.Event | None = None,
) -> MCMoments:
    """Reference MC: ``samples`` full forward passes of ``network`` in MC-dropout mode.

    ``sample_steps="all"`` samples every recurrent step (naive full MC); ``"last"`` runs steps
    1..K−1 once with dropout off and samples the last step in full (encoder and decoder) over
    the whole volume, which is what the cheap path computes without crop.
    """
    if sample_steps not in SAMPLE_STEPS:
        raise ValueError(f"sample_steps must be one of {SAMPLE_STEPS}, got {sample_steps!r}")
    network.eval()
    with _seeded(seed, image.device):
        plain = torch.sigmoid(network(image).float())[0, 0]
        stochastic: nn.Module = network
        stochastic_input = image
        found = _unet_of(network)
        if sample_steps == "last" and found is not None:
            unet, steps, recurrent = found
            stochastic = unet
            stochastic_input = _last_step_input(unet, steps, recurrent, image)
        seeds = _batch_seeds(samples)
        source = MaskSource()

        def sample_sums(index: int) -> torch.Tensor:
            torch.manual_seed(seeds[index])
            source.generator = mask_generator(seeds[index], image.device)
            logits = stochastic(stochastic_input)
            return _probability_sums(torch.sigmoid(logits.float())[:, 0])

        with mc_dropout(stochastic, require_dropout=False):
            with element_dropout_from(stochastic, source):
                sums = _sum_batches(sample_sums, [1] * samples, 1, progress, cancel)
    moments = deterministic_moments(plain, samples)
    return _with_samples(moments, sums, tuple(slice(0, n) for n in plain.shape), samples)


# --------------------------------------------------------------------------- helpers


def _unet_of(network: nn.Module) -> tuple[UNet, int, bool] | None:
    """(U-Net, recurrent steps K, whether a probability channel is fed back) or None."""
    if isinstance(network, RecurrentRefinement) and isinstance(network.network, UNet):
        return network.network, network.steps, True
    if isinstance(network, UNet):
        return network, 1, False
    return None


def _last_step_input(unet: UNet, steps: int, recurrent: bool, image: torch.Tensor) -> torch.Tensor:
    """The input of step K: the image with the probability of step K−1 (dropout off)."""
    if not recurrent:
        return image
    probability = image.new_zeros((image.shape[0], unet.out_channels, *image.shape[2:]))
    for _ in range(steps - 1):
        probability = torch.sigmoid(unet(torch.cat([image, probability], dim=1)))
    return torch.cat([image, probability.to(image.dtype)], dim=1)


def _decoder_se_modules(unet: UNet) -> list[SqueezeExcitation]:
    return [
        module
        for part in (unet.bridge, unet.decoder)
        for module in part.modules()
        if isinstance(module, SqueezeExcitation)
    ]


@contextlib.contextmanager
def _captured_gates(modules: list[SqueezeExcitation]) -> Iterator[dict[int, torch.Tensor]]:
    """Record each SE module's gate (N, C) during the block."""
    gates: dict[int, torch.Tensor] = {}
    handles = []
    for index, module in enumerate(modules):

        def keep(_module: nn.Module, _inputs: object, output: torch.Tensor, index: int = index):
            gates[index] = output.detach()

        handles.append(module.excitation.register_forward_hook(keep))
    try:
        yield gates
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _fixed_gates(
    modules: list[SqueezeExcitation], gates: dict[int, torch.Tensor]
) -> Iterator[None]:
    """Make each SE module scale its input by the recorded gate instead of its own."""
    handles = []
    for index, module in enumerate(modules):
        gate = gates[index]

        def replace(
            module: SqueezeExcitation,
            inputs: tuple[torch.Tensor, ...],
            _output: torch.Tensor,
            gate: torch.Tensor = gate,
        ) -> torch.Tensor:
            x = inputs[0]
            return x * gate.to(x.dtype).reshape(*gate.shape, *([1] * module.spatial_dims))

        handles.append(module.register_forward_hook(replace))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _expanded(features: UNetFeatures, count: int) -> UNetFeatures:
    if count == 1:
        return features

    def grow(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.expand(count, *tensor.shape[1:])

    return UNetFeatures(
        skips=tuple(grow(skip) for skip in features.skips),
        deepest=grow(features.deepest),
        padding=features.padding,
    )


def _probability_sums(prob: torch.Tensor) -> torch.Tensor:
    """Sums over a batch of probabilities (B, z, y, x) of p, p² and H(p): (3, z, y, x)."""
    return torch.stack([prob.sum(0), (prob * prob).sum(0), entropy_bits(prob).sum(0)])


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise CancelledError("the prediction was cancelled")


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global generators for the block and restore them afterwards."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield
