"""Learning-rate schedules, as a pure function of the iteration (nothing to checkpoint).

``"constant"`` keeps the optimiser's learning rate; ``"poly"`` is the polynomial decay nnU-Net
trains with, ``lr · (1 − (i − 1) / N) ** 0.9`` for iteration ``i`` of ``N`` (1-based): the full
rate on the first step, close to zero on the last. Because the factor depends only on ``i`` and
``N``, a resumed run continues the same curve; resuming to a larger ``N`` stretches the rest.
"""

from __future__ import annotations

LR_SCHEDULES = ("constant", "poly")
POLY_EXPONENT = 0.9


def lr_factor(schedule: str, iteration: int, total: int) -> float:
    """The multiplier of the base learning rate at 1-based ``iteration`` of ``total``."""
    if schedule == "constant":
        return 1.0
    if schedule == "poly":
        if not 1 <= iteration <= total:
            raise ValueError(f"iteration {iteration} lies outside 1..{total}")
        return (1.0 - (iteration - 1) / total) ** POLY_EXPONENT
    raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {schedule!r}")
