"""The evaluation holdout: which rows the candidate and production are scored on.

A row's side is decided by a hash of its values, not by a random draw over row positions.
When a retrain sees the same rows again, with new ones added, each old row stays on the side
it was on: the holdout keeps out the rows that production was trained on, so the champion is
not scored on its own training data, and identical rows never sit on both sides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from app.spec.estimators import EstimatorKind
from app.spec.schema import PipelineSpec
from app.training.fingerprint import RowHashes, row_hashes
from app.training.trainer import feature_columns

Mask = np.ndarray[Any, np.dtype[np.bool_]]
Counts = np.ndarray[Any, np.dtype[np.int64]]


@dataclass(frozen=True)
class Holdout:
    X_train: pd.DataFrame
    X_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series

    def seen_from_outside(self, hashes: RowHashes) -> Split:
        """What a process that does not fit needs of this split (see Split)."""
        return Split(hashes, self.X_test, self.y_test, self.y_train, len(self.X_train))


@dataclass(frozen=True)
class Split:
    """A split as the service sees it while a training process holds the training rows: the
    holdout to score on, the training labels (the no-skill baseline is fitted on them), how
    many training rows there are, and every row's hash (the data fingerprint)."""

    hashes: RowHashes
    X_test: pd.DataFrame
    y_test: pd.Series
    y_train: pd.Series
    train_rows: int


def split_holdout(
    frame: pd.DataFrame,
    spec: PipelineSpec,
    kind: EstimatorKind,
    hashes: RowHashes | None = None,
) -> Holdout:
    """Split off the holdout; for classifiers each class gives its own share of rows.

    Both sides keep the rows in the source's order. `hashes`: the frame's row_hashes when the
    caller has them already."""
    X = frame[feature_columns(spec, frame)]  # noqa: N806 (sklearn's X)
    y = frame[spec.target]
    hashes = row_hashes(frame) if hashes is None else hashes
    classes = y if kind == "classifier" else None
    test = holdout_mask(hashes, classes, spec.evaluation.holdout_fraction)
    train = ~test
    return Holdout(X_train=X[train], X_test=X[test], y_train=y[train], y_test=y[test])


def holdout_mask(hashes: RowHashes, classes: pd.Series | None, fraction: float) -> Mask:
    """True for holdout rows: ceil(fraction * rows) of them, spread over the classes in
    proportion to their sizes (largest remainders), each class's rows with the smallest
    hashes. A class keeps at least one training row."""
    rows, hashes = len(hashes), _scrambled(hashes)
    if classes is None:
        groups, counts = np.zeros(rows, dtype=np.intp), np.array([rows], dtype=np.int64)
    else:
        # Validation refuses null targets, so every row has a class (no -1 code).
        codes, _ = pd.factorize(classes, sort=True)
        groups, counts = codes, np.bincount(codes).astype(np.int64)
    quotas = _shares(counts, math.ceil(fraction * rows))
    # Each class's rows as one contiguous run of positions: a stable sort keeps row order.
    members = np.argsort(groups.astype(np.min_scalar_type(max(len(counts) - 1, 0))), kind="stable")
    test = np.zeros(rows, dtype=bool)
    start = 0
    for count, quota in zip(counts.tolist(), quotas.tolist(), strict=True):
        group = members[start : start + count]
        start += count
        test[group[_smallest(hashes[group], quota)]] = True
    return test


def _scrambled(hashes: RowHashes) -> RowHashes:
    """The row hashes through SplitMix64's finalizer.

    pandas combines a row's column hashes with multiplies and xors; their order is not
    random with respect to the values (on breast_cancer, the smallest 20 % made a holdout that
    every split drawn at random beat). Finalized, any bit of a row's values moves every bit
    of the key, and its order is as good as a shuffle."""
    with np.errstate(over="ignore"):  # the arithmetic is modulo 2**64 on purpose
        z = hashes + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return np.asarray(z ^ (z >> np.uint64(31)), dtype=np.uint64)


def _shares(counts: Counts, total: int) -> Counts:
    """`total` split in proportion to `counts`: floors, then one more for the largest
    remainders (the first class wins a tie); never a whole class (one row stays to train)."""
    exact = counts * total / counts.sum()
    shares = np.floor(exact).astype(np.int64)
    left = total - int(shares.sum())
    if left > 0:
        # A stable sort on the negated remainders: largest first, ties in class order.
        shares[np.argsort(-(exact - shares), kind="stable")[:left]] += 1
    return np.asarray(np.minimum(shares, np.maximum(counts - 1, 0)), dtype=np.int64)


def _smallest(values: RowHashes, k: int) -> np.ndarray[Any, np.dtype[np.intp]]:
    """Positions of the k smallest values; ties at the cut go to the earlier position."""
    if k <= 0:
        return np.empty(0, dtype=np.intp)
    if k >= len(values):
        return np.arange(len(values))
    cut = np.partition(values, k - 1)[k - 1]
    below = np.flatnonzero(values < cut)
    at_cut = np.flatnonzero(values == cut)[: k - len(below)]
    return np.sort(np.concatenate([below, at_cut]))
