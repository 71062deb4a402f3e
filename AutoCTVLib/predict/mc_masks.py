"""Element-dropout masks for Monte-Carlo sampling, drawn from a per-batch generator.

``torch.nn.functional.dropout`` on the CPU draws its Bernoulli noise one element at a time from
torch's global Mersenne Twister; on AMD CPUs (no MKL random path) that takes about 6–10 ns per
element, single-threaded — a fifth of a decoder pass of the cascade's segmenter (about 31
million dropout elements per pass). :func:`element_dropout` draws the same kind of mask from
NumPy's SFC64 generator instead (float32 uniforms u, kept where u ≥ p), about 2 ns per element,
and scales the kept elements by 1/(1 − p), as ``F.dropout`` does. P(kept) = 1 − p up to the 2⁻²⁴
resolution of the uniforms. On other devices the mask comes from a ``torch.Generator`` there
(Bernoulli noise, same steps as ``F.dropout``).

Each batch of samples gets its own generator (:func:`mask_generator`) seeded from the MC seed,
so sampling threads need no shared state and a seed gives the same maps however the batches are
spread over threads. :func:`element_dropout_from` makes a network's own ``nn.Dropout`` layers
draw from a :class:`MaskSource`, so the naive reference draws the same masks as the split
decoder of :mod:`AutoCTVLib.predict.mc_decoder` for the same seeds.

Tensors are (N, C, *S), any memory layout; the mask follows the tensor's storage order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch
from torch import nn

MaskGenerator = Union[torch.Generator, np.random.Generator]


def mask_generator(seed: int, device: torch.device) -> MaskGenerator:
    """A fresh generator for one batch: NumPy SFC64 on the CPU, ``torch.Generator`` elsewhere."""
    if device.type == "cpu":
        return np.random.Generator(np.random.SFC64(int(seed)))
    return torch.Generator(device=device).manual_seed(int(seed))


def element_dropout(x: torch.Tensor, p: float, generator: MaskGenerator) -> torch.Tensor:
    """``F.dropout(x, p, training=True)`` with the mask drawn from ``generator``."""
    if p <= 0.0:
        return x
    if p >= 1.0:
        return torch.zeros_like(x)
    if isinstance(generator, np.random.Generator):
        if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.bfloat16):
            raise ValueError("NumPy dropout masks need float32 or bfloat16 CPU tensors")
        uniforms = torch.empty_like(x, dtype=torch.float32)  # same layout: same mask per element
        generator.random(out=_storage(uniforms), dtype=np.float32)
        if x.dtype == torch.float32:
            return x * uniforms.ge_(p).mul_(1.0 / (1.0 - p))
        # bfloat16 (autocast sampling): scale after masking, so 1/(1 − p) is not rounded to 8 bits
        return (x * uniforms.ge_(p).to(x.dtype)).mul_(1.0 / (1.0 - p))
    noise = torch.empty_like(x)
    noise.bernoulli_(1.0 - p, generator=generator)
    noise.div_(1.0 - p)
    return x * noise


@dataclass
class MaskSource:
    """The generator the patched dropout layers draw from (set it before each batch)."""

    generator: MaskGenerator | None = None


@contextlib.contextmanager
def element_dropout_from(model: nn.Module, source: MaskSource) -> Iterator[None]:
    """Within the block, ``model``'s ``nn.Dropout`` layers in train mode draw their masks from
    ``source.generator`` (torch's own dropout while it is ``None``). Other dropout kinds are
    left alone."""
    layers = [module for module in model.modules() if type(module) is nn.Dropout]
    for layer in layers:

        def forward(x: torch.Tensor, layer: nn.Dropout = layer) -> torch.Tensor:
            if layer.training and source.generator is not None:
                return element_dropout(x, float(layer.p), source.generator)
            return nn.functional.dropout(x, layer.p, layer.training, layer.inplace)

        layer.forward = forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        for layer in layers:
            if "forward" in vars(layer):
                del layer.forward


def _storage(tensor: torch.Tensor) -> np.ndarray:
    """A flat NumPy view of a dense tensor's storage (any memory layout)."""
    if tensor.storage_offset() != 0 or not _is_dense(tensor):
        raise ValueError("expected a dense tensor that starts its storage")
    return tensor.as_strided((tensor.numel(),), (1,)).numpy()


def _is_dense(tensor: torch.Tensor) -> bool:
    """True when the elements fill their storage span without gaps or overlaps."""
    order = sorted(range(tensor.ndim), key=lambda axis: tensor.stride(axis))
    expected = 1
    for axis in order:
        if tensor.shape[axis] != 1 and tensor.stride(axis) != expected:
            return False
        expected *= tensor.shape[axis]
    return True
