"""CPU speed settings for inference, and why each one is (or is not) on by default.

Measured on a 2-core AVX2 machine (no AVX-512/AMX) with the thesis network
(residual + SE, 16–128 channels, K = 3) on a 100×123×194 network grid — the body crop of a
512×512×100 pelvic CT at 2×2×3 mm — one plain prediction (K forward steps), fresh processes,
interleaved, medians of 3 (``benchmarks/predict_speed.py`` repeats this end to end):

* ``torch.inference_mode`` — always on: no autograd bookkeeping, identical results.
* ``THP_MEM_ALLOC_ENABLE=1`` — set by the ``autoctv`` command before torch is imported
  (:func:`prepare_process_environment`): PyTorch's CPU allocator then backs large activation
  buffers with transparent huge pages (this machine's THP mode is ``madvise``). Minor page
  faults fell from 3.1 M to 65 k, system time from 7.4 s to 3.0 s, wall time from 11.6 s to
  8.9 s (−23 %; one thread: −21 %). Identical results. It must be in the environment before
  torch initialises its allocator, so only a fresh process can use it; a user's own setting
  (including ``0``) is respected.
* channels-last memory layout (``torch.channels_last_3d``) for network and input on the CPU —
  on by default: 9.2 s instead of 11.7 s with 2 threads (−21 %, oneDNN's blocked 3D convolutions
  parallelise better), no difference with 1 thread; results equal to float32 round-off.
* bfloat16 autocast for the whole network — off: without native bf16 instructions every
  convolution is emulated; a single decoder pass took minutes instead of seconds.
  ``benchmarks/predict_speed.py --bf16`` times it and reports its Dice change against float32
  (the 0.005 limit needs the trained model) for machines with AVX-512 BF16 or AMX.
* bfloat16 autocast for the Monte-Carlo decoder passes only (``bf16_sampling``) — ``"auto"``:
  on where the device runs bf16 natively (:func:`AutoCTVLib.device.native_bf16`: an AVX-512
  BF16 or AMX CPU, a bf16 GPU), off elsewhere. The plain prediction (the contour without
  uncertainty) stays float32; the samples use the same dropout masks and differ only by the
  rounding of the activations, far below the spread between samples. On a 2-core AVX-512 BF16
  AMD EPYC the 20 decoder passes of the cascade took 2.2× less time (``benchmarks/
  cascade_speed.py`` measures it end to end; ``docs/cascade.md`` gives the figures and the
  effect on the maps).
* ONNX Runtime / OpenVINO — not measured: neither is installed or a dependency of AutoCTV.

The library itself never changes the process environment; only the command line does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported lazily: the environment must be set before it loads
    import torch

logger = logging.getLogger(__name__)

THP_ENV = "THP_MEM_ALLOC_ENABLE"
BF16_SAMPLING = ("auto", "on", "off")


@dataclass(frozen=True)
class SpeedSettings:
    """How the network is run; recorded in every result's provenance.

    Attributes:
        channels_last: channels-last 3D layout for model and input (CPU only; ignored on GPUs).
        bf16_autocast: bfloat16 autocast for the network (CPU and CUDA). Off by default.
        bf16_sampling: bfloat16 autocast for the Monte-Carlo dropout decoder passes only (the
            plain prediction, and so the contour without uncertainty, stays float32):
            ``"auto"`` (on where the device runs bf16 natively, see
            :func:`AutoCTVLib.device.native_bf16`), ``"on"`` or ``"off"``.
    """

    channels_last: bool = True
    bf16_autocast: bool = False
    bf16_sampling: str = "auto"

    def __post_init__(self) -> None:
        if self.bf16_sampling not in BF16_SAMPLING:
            raise ValueError(
                f"bf16_sampling must be one of {', '.join(BF16_SAMPLING)}, "
                f"got {self.bf16_sampling!r}"
            )

    def samples_in_bf16(self, device: torch.device) -> bool:
        """Whether MC sampling on ``device`` runs under bfloat16 autocast."""
        if self.bf16_autocast or self.bf16_sampling == "on":
            return device.type in ("cpu", "cuda")
        if self.bf16_sampling == "off":
            return False
        from AutoCTVLib.device import native_bf16

        return native_bf16(device)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def prepare_process_environment(enable_thp: bool = True) -> str:
    """Set ``THP_MEM_ALLOC_ENABLE=1`` for this process if that can still take effect.

    Call it first thing in a command-line process, before anything imports torch.

    Returns:
        What happened, for the report: ``"enabled"``, ``"user setting <value>"`` (the variable
        was already set and is left alone), ``"too late (torch already imported)"``,
        ``"off"`` (``enable_thp`` false) or ``"not supported on <platform>"``.
    """
    if THP_ENV in os.environ:
        return f"user setting {os.environ[THP_ENV]}"
    if not enable_thp:
        return "off"
    if not sys.platform.startswith("linux"):
        return f"not supported on {sys.platform}"
    if "torch" in sys.modules:
        logger.debug("%s not set: torch was imported before the environment was prepared", THP_ENV)
        return "too late (torch already imported)"
    os.environ[THP_ENV] = "1"
    return "enabled"


def configure_threads(threads: int | None) -> int:
    """Set torch's intra-op CPU thread count (process-wide) when given; return the count in use.

    Raises:
        ValueError: ``threads`` is not a positive integer.
    """
    import torch

    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        torch.set_num_threads(threads)
    return int(torch.get_num_threads())


def memory_format(device: torch.device, settings: SpeedSettings) -> torch.memory_format:
    """The tensor layout to run the network in on ``device``."""
    import torch

    if settings.channels_last and device.type == "cpu":
        return torch.channels_last_3d
    return torch.contiguous_format


@contextlib.contextmanager
def sampling_context(device: torch.device, settings: SpeedSettings) -> Iterator[bool]:
    """bfloat16 autocast around MC sampling when :meth:`SpeedSettings.samples_in_bf16`;
    yields whether it is on."""
    import torch

    if settings.samples_in_bf16(device):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield True
    else:
        yield False


@contextlib.contextmanager
def inference_context(device: torch.device, settings: SpeedSettings) -> Iterator[None]:
    """``torch.inference_mode`` plus bf16 autocast when asked for (CPU or CUDA)."""
    import torch

    with torch.inference_mode():
        if settings.bf16_autocast and device.type in ("cpu", "cuda"):
            with torch.autocast(device.type, dtype=torch.bfloat16):
                yield
        else:
            yield
