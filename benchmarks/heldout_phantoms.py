"""Held-out phantoms for CTV benchmarks: seeds and grid variants, generated on demand.

Variants (as ``autoctv phantom`` makes them):

* ``test``: the bundled model's held-out test set (seeds 5000–5019, varied clinical grid, as
  ``benchmarks/ctv_data.py`` writes ``test.h5``);
* ``default``: the default 512×512×100 grid at 0.98×0.98×3 mm (``autoctv phantom``);
* ``vary_grid``: ``--vary-grid``; ``flip``: ``--flip`` (feet first); ``noise40``:
  ``--noise-hu 40``.

Seeds of the ``default``…``noise40`` variants start at :data:`UNSEEN_SEED_START`, a range no
training or other benchmark of the project uses.

``validation`` (seeds from :data:`VALIDATION_SEED_START`, set up like ``test``) is for choosing
settings (e.g. a score's definition) before the held-out cases are looked at; no training uses it
and no held-out figure is reported on it.
"""

from __future__ import annotations

from collections.abc import Iterator

from AutoCTVLib.phantom import Phantom, PhantomConfig, generate_phantom

TEST_SEED_START = 5000
UNSEEN_SEED_START = 9100
VALIDATION_SEED_START = 7000
VARIANTS = ("test", "default", "vary_grid", "flip", "noise40", "validation")


def variant_config(variant: str, seed: int) -> PhantomConfig:
    """The phantom settings of one variant."""
    if variant in ("test", "validation"):
        return PhantomConfig(seed=seed, vary_grid=True, annotator_style="standard")
    if variant == "default":
        return PhantomConfig(seed=seed)
    if variant == "vary_grid":
        return PhantomConfig(seed=seed, vary_grid=True)
    if variant == "flip":
        return PhantomConfig(seed=seed, flip=True)
    if variant == "noise40":
        return PhantomConfig(seed=seed, noise_hu=40.0)
    raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")


def variant_seeds(variant: str, count: int) -> range:
    """The seeds of the first ``count`` cases of a variant."""
    starts = {"test": TEST_SEED_START, "validation": VALIDATION_SEED_START}
    start = starts.get(variant, UNSEEN_SEED_START)
    return range(start, start + count)


def held_out_cases(variant: str, count: int) -> Iterator[tuple[int, Phantom]]:
    """``(seed, phantom)`` for the first ``count`` cases of ``variant``."""
    for seed in variant_seeds(variant, count):
        yield seed, generate_phantom(variant_config(variant, seed))
