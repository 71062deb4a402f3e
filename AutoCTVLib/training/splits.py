"""Case-level splits: seeded k-fold partitions and the train/validation pair of one fold.

Splits are by case id (never by patch), so no voxel of a validation case is seen in training.
The same ids and seed always give the same folds, whatever order the ids come in.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def kfold_split(case_ids: Iterable[str], n_folds: int, seed: int) -> list[list[str]]:
    """Partition ``case_ids`` into ``n_folds`` folds of near-equal size.

    The ids are sorted, shuffled with ``numpy.random.default_rng(seed)`` and dealt into
    contiguous folds (sizes differ by at most one). Each fold's ids are returned sorted.
    """
    ids = sorted({str(case_id) for case_id in case_ids})
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 2:
        raise ValueError(f"n_folds must be an integer of at least 2, got {n_folds!r}")
    if len(ids) < n_folds:
        raise ValueError(f"{len(ids)} cases cannot be split into {n_folds} folds")
    order = np.random.default_rng(seed).permutation(len(ids))
    return [sorted(ids[i] for i in part) for part in np.array_split(order, n_folds)]


def fold_split(
    case_ids: Iterable[str], fold: int, n_folds: int, seed: int
) -> tuple[list[str], list[str]]:
    """``(train_ids, validation_ids)`` for fold ``fold`` (0-based) of :func:`kfold_split`."""
    folds = kfold_split(case_ids, n_folds, seed)
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < n_folds:
        raise ValueError(f"fold must be between 0 and {n_folds - 1}, got {fold!r}")
    validation = folds[fold]
    train = sorted(case_id for k, part in enumerate(folds) if k != fold for case_id in part)
    return train, validation
