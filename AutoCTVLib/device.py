"""Choosing the compute device: ``"auto"`` picks CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

import logging

import torch

from AutoCTVLib.errors import DeviceError
from AutoCTVLib.options import DEVICE_CHOICES

logger = logging.getLogger(__name__)

__all__ = ["DEVICE_CHOICES", "mps_available", "native_bf16", "select_device"]


def mps_available() -> bool:
    """True when torch was built with Apple MPS support and an MPS device is present."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def native_bf16(device: torch.device) -> bool:
    """True when ``device`` runs bfloat16 convolutions natively: a CUDA GPU with bf16 support,
    or a CPU on which oneDNN has bf16 kernels (AVX-512 BF16 or AMX). Elsewhere bf16 is
    emulated and slower than float32."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def select_device(request: str = "auto") -> torch.device:
    """The ``torch.device`` for a user's choice.

    Args:
        request: ``"auto"`` (CUDA if available, else MPS, else CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or ``"mps"``.

    Raises:
        DeviceError: an explicitly requested GPU is not available.
        ValueError: ``request`` is not one of the choices.
    """
    name = str(request).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            device = torch.device("cuda")
        elif mps_available():
            device = torch.device("mps")
        else:
            device = torch.device("cpu")
        logger.debug("device 'auto' chose %s", device)
        return device
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError("a CUDA GPU was requested but none is available; use --device cpu")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"GPU {device.index} was requested but only {torch.cuda.device_count()} "
                "CUDA device(s) are present"
            )
        return device
    if name == "mps":
        if not mps_available():
            raise DeviceError("Apple MPS was requested but is not available; use --device cpu")
        return torch.device("mps")
    raise ValueError(
        f"device must be one of {', '.join(DEVICE_CHOICES)} (or cuda:N), got {request!r}"
    )
