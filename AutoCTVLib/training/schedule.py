"""Learning-rate schedules, as a pure function of training progress (nothing to checkpoint).

``"constant"`` keeps the optimiser's learning rate; ``"poly"`` is the polynomial decay nnU-Net
trains with, ``lr · (1 − (i − 1) / N) ** 0.9`` for iteration ``i`` of ``N`` (1-based): the full
rate on the first step, close to zero on the last. Because the factor depends only on ``i`` and
``N``, a resumed run continues the same curve; resuming to a larger ``N`` stretches the rest.

A run with a time budget (``TrainConfig.time_budget_s``) does not know its ``N`` in advance:
there the decay follows whichever share is larger, iterations done or budget spent, so the rate
reaches zero when the budget runs out however fast the machine is.
"""

from __future__ import annotations

LR_SCHEDULES = ("constant", "poly")
POLY_EXPONENT = 0.9


def lr_factor(schedule: str, iteration: int, total: int, time_share: float = 0.0) -> float:
    """The multiplier of the base learning rate at 1-based ``iteration`` of ``total``.

    ``time_share``: the share of a time budget spent before this step (0 without a budget;
    values above 1 count as 1).
    """
    if schedule == "constant":
        return 1.0
    if schedule == "poly":
        if not 1 <= iteration <= total:
            raise ValueError(f"iteration {iteration} lies outside 1..{total}")
        if not time_share >= 0.0:
            raise ValueError(f"time_share must be non-negative, got {time_share}")
        progress = max((iteration - 1) / total, min(time_share, 1.0))
        return (1.0 - progress) ** POLY_EXPONENT
    raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {schedule!r}")
