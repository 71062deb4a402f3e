"""Test-time left-right mirroring: the network's answer averaged over the image and its mirror.

Real anatomy is mirrored left-right (patients lie the other way round in the scanner, organs sit
a little to one side), and a network trained with left-right flips has learned both
orientations; nnU-Net averages its prediction over mirrored inputs for the same reason. On the
reoriented network grid (x = left → right, the last axis of a (z, y, x) array) the image is
mirrored along x, the network runs on both, and its output is mirrored back and averaged.

* Plain prediction: ``p = (p(image) + mirror(p(mirror(image)))) / 2``.
* Monte-Carlo dropout with N samples: ⌈N/2⌉ samples on the image and ⌊N/2⌋ on its mirror (its
  own seed), so the N samples are drawn from dropout masks *and* both orientations and cost what
  N samples cost. The moments (mean p, mean p², mean H) are sample means, so the two halves
  combine as a weighted mean (mirrored back); the maps then hold the orientations' disagreement
  as well as the dropout spread.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

import numpy as np

from AutoCTVLib.errors import CancelledError
from AutoCTVLib.predict.mc import MCSettings
from AutoCTVLib.predict.network_stage import NetworkResult

#: ``once(image, mc, half)``: one run of the network stage on an image (z, y, x) or
#: (C, z, y, x); ``half`` (0 or 1) says which half of the work it is, for progress reports.
RunOnce = Callable[[np.ndarray, "MCSettings | None", int], NetworkResult]
#: Seed offset of the mirrored half of the MC samples (their masks differ from the first half's).
MIRRORED_SEED_OFFSET = 1


def mirror_x(array: np.ndarray) -> np.ndarray:
    """``array`` mirrored along its last axis (x), as a contiguous copy."""
    return np.ascontiguousarray(array[..., ::-1])


def run_mirrored(
    once: RunOnce,
    image: np.ndarray,
    mc: MCSettings | None,
    cancel: threading.Event | None = None,
) -> NetworkResult:
    """The network stage averaged over ``image`` and its left-right mirror (module docstring).

    With a single MC sample there is nothing to split: it runs on the image alone.
    """
    if mc is not None and mc.samples < 2:
        return once(image, mc, 0)
    mc_first = mc_second = None
    if mc is not None:
        first_count = (mc.samples + 1) // 2
        mc_first = dataclasses.replace(mc, samples=first_count)
        mc_second = dataclasses.replace(
            mc, samples=mc.samples - first_count, seed=mc.seed + MIRRORED_SEED_OFFSET
        )
    straight = once(image, mc_first, 0)
    if cancel is not None and cancel.is_set():
        raise CancelledError("cancelled")
    flipped = once(mirror_x(image), mc_second, 1)
    plain = 0.5 * (straight.plain_prob + mirror_x(flipped.plain_prob))
    combined = dataclasses.replace(
        straight,
        plain_prob=plain.astype(np.float32),
        network_s=straight.network_s + flipped.network_s,
        sampling_s=straight.sampling_s + flipped.sampling_s,
    )
    if mc is None or straight.moments is None or flipped.moments is None:
        return combined
    weight_first = straight.n_samples / mc.samples
    weight_second = flipped.n_samples / mc.samples
    moments = tuple(
        (weight_first * first + weight_second * mirror_x(second)).astype(np.float32)
        for first, second in zip(straight.moments, flipped.moments)
    )
    fractions = [f for f in (straight.sampled_fraction, flipped.sampled_fraction) if f is not None]
    return dataclasses.replace(
        combined,
        moments=moments,  # type: ignore[arg-type]
        n_samples=mc.samples,
        sampled_fraction=float(np.mean(fractions)) if fractions else None,
    )
