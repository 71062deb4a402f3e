"""Monte-Carlo dropout mode: every module in eval mode except the dropout layers.

``with mc_dropout(model): ...`` makes normalisation layers use their running statistics while
dropout stays stochastic, then restores every module's previous ``training`` flag, also when
the block raises. Draw the random masks from a seeded generator with ``torch.manual_seed`` /
``torch.random.fork_rng`` around the block if results must repeat.

Cheap sampling: for a :class:`~AutoCTVLib.nn.unet3d.UNet` whose ``encoder_is_deterministic`` is
true (dropout_where "bottleneck" or "decoder"), ``features = model.encode(x)`` once and then
``model.decode(features)`` per sample gives the same distribution as full forward passes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

DROPOUT_TYPES: tuple[type[nn.Module], ...] = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)


def is_dropout(module: nn.Module) -> bool:
    """True for torch's dropout layers (``p`` may be anything)."""
    return isinstance(module, DROPOUT_TYPES)


def dropout_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(qualified name, module)`` of every dropout layer with p > 0, in registration order."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if is_dropout(module) and float(getattr(module, "p", 0.0)) > 0
    ]


def has_dropout(model: nn.Module) -> bool:
    """True when MC-dropout sampling would give varying outputs."""
    return bool(dropout_modules(model))


def first_dropout(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The first dropout layer in registration order (``None`` without dropout).

    For the U-Net, registration order follows the forward order of the encoder, then the
    bridge, then the decoder, so everything computed before this layer's block is
    deterministic in MC mode.
    """
    found = dropout_modules(model)
    return found[0] if found else None


@contextlib.contextmanager
def mc_dropout(model: nn.Module, *, require_dropout: bool = True) -> Iterator[nn.Module]:
    """Context manager: ``model`` in eval mode with only its dropout layers in train mode.

    Args:
        model: any module.
        require_dropout: raise ``ValueError`` when the model has no dropout layer (MC samples
            would all be identical).

    Yields:
        ``model`` itself. On exit each module's previous ``training`` flag is restored.
    """
    if require_dropout and not has_dropout(model):
        raise ValueError(
            "this model has no dropout layers, so Monte-Carlo dropout cannot estimate "
            "uncertainty; use a model trained with dropout"
        )
    previous = {module: module.training for module in model.modules()}
    try:
        model.eval()
        for _, module in dropout_modules(model):
            module.train()
        yield model
    finally:
        for module, was_training in previous.items():
            module.training = was_training
