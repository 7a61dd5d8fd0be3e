"""The validate step: refuse data a model should not be trained on, saying why with numbers."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from app.spec.estimators import EstimatorKind
from app.spec.schema import PipelineSpec
from app.training.trainer import feature_columns

FAILED = "Data validation failed: "
MAX_LISTED_COLUMNS = 10


@dataclass(frozen=True)
class DataCheck:
    passed: bool
    reason: str
    detail: str


# A rule returns why the data is refused, or None when it passes. Later rules may assume
# that earlier ones passed (for example, that the target column exists).
Rule = Callable[["Profile", PipelineSpec, EstimatorKind], str | None]


class Profile:
    """The data under validation, with each costly statistic computed once."""

    def __init__(self, frame: pd.DataFrame, spec: PipelineSpec) -> None:
        self.frame = frame
        self.spec = spec

    @cached_property
    def null_fractions(self) -> pd.Series:
        used = [*feature_columns(self.spec, self.frame), self.spec.target]
        return self.frame[used].isna().mean()

    @cached_property
    def class_counts(self) -> pd.Series:
        return self.frame[self.spec.target].value_counts()


def check_data(frame: pd.DataFrame, spec: PipelineSpec, kind: EstimatorKind) -> DataCheck:
    """Apply the validation rules in order; the first failure is the reason."""
    data = Profile(frame, spec)
    for rule in RULES:
        failure = rule(data, spec, kind)
        if failure is not None:
            return DataCheck(passed=False, reason=FAILED + failure, detail=_shape(frame))
    return DataCheck(
        passed=True, reason="Data validation passed", detail=_summary(data, spec, kind)
    )


def _no_rows(data: Profile, spec: PipelineSpec, kind: EstimatorKind) -> str | None:
    frame = data.frame
    return "the data source returned no rows" if len(frame) == 0 else None


def _target_missing(data: Profile, spec: PipelineSpec, kind: EstimatorKind) -> str | None:
    frame = data.frame
    if spec.target in frame.columns:
        return None
    return f"target column {spec.target!r} not found (available: {_listing(frame.columns)})"


def _features_missing(data: Profile, spec: PipelineSpec, kind: EstimatorKind) -> str | None:
    frame = data.frame
    if not feature_columns(spec, frame):
        return f"no feature columns besides the target {spec.target!r}"
    missing = [column for column in spec.features or [] if column not in frame.columns]
    if not missing:
        return None
    return f"feature columns not found: {_listing(missing)} (available: {_listing(frame.columns)})"


def _required_missing(data: Profile, spec: PipelineSpec, kind: EstimatorKind) -> str | None:
    frame = data.frame
    missing = [c for c in spec.validation.required_columns if c not in frame.columns]
    return f"required columns not found: {_listing(missing)}" if missing else None


def _too_few_rows(data: Profile, spec: PipelineSpec, kind: EstimatorKind) -> str | None:
    frame = data.frame
    rows, min_rows = len(frame), spec.validation.min_rows
    return f"{rows} rows < min_rows {min_rows}" if rows < min_rows else None


def _too_many_nulls(data: Profile, spec: PipelineSpec, kind: EstimatorKind) -> str | None:
    fractions = data.null_fractions
    worst, fraction = str(fractions.idxmax()), float(fractions.max())
    limit = spec.validation.max_null_fraction
    if fraction > limit:
        return f"column {worst!r} null fraction {fraction:.3f} > max_null_fraction {limit:.3f}"
    if fraction == 1.0:
        # max_null_fraction 1.0 lets this through, but an empty column has nothing to learn
        # from and nothing to impute with.
        return f"column {worst!r} has no values (all rows are null)"
    return None


def _target_nulls(data: Profile, spec: PipelineSpec, kind: EstimatorKind) -> str | None:
    frame = data.frame
    nulls = int(frame[spec.target].isna().sum())
    if nulls == 0:
        return None
    return f"target {spec.target!r} has {nulls} null values; every row needs a target to train on"


def _too_few_classes(data: Profile, spec: PipelineSpec, kind: EstimatorKind) -> str | None:
    if kind != "classifier":
        return None
    classes = len(data.class_counts)
    if classes >= 2:
        return None
    noun = "class" if classes == 1 else "classes"
    return f"target {spec.target!r} has {classes} {noun}; a classifier needs at least 2"


def _rare_class(data: Profile, spec: PipelineSpec, kind: EstimatorKind) -> str | None:
    if kind != "classifier":
        return None
    counts = data.class_counts
    if counts.min() >= 2:
        return None
    rarest = _plain(counts.idxmin())
    return (
        f"class {rarest!r} of target {spec.target!r} has only 1 row; "
        "a stratified holdout needs at least 2 rows per class"
    )


def _holdout_too_small(data: Profile, spec: PipelineSpec, kind: EstimatorKind) -> str | None:
    frame = data.frame
    # Stratifying needs every class on both sides of the split; a regression score such as
    # r2 needs at least two holdout rows. train_test_split rounds the test share up.
    fraction = spec.evaluation.holdout_fraction
    test_rows = math.ceil(fraction * len(frame))
    train_rows = len(frame) - test_rows
    needed = len(data.class_counts) if kind == "classifier" else 2
    if min(test_rows, train_rows) >= needed:
        return None
    return (
        f"holdout_fraction {fraction} of {len(frame)} rows leaves {train_rows} train and "
        f"{test_rows} holdout rows; each side needs at least {needed}"
    )


RULES: tuple[Rule, ...] = (
    _no_rows,
    _target_missing,
    _features_missing,
    _required_missing,
    _too_few_rows,
    _too_many_nulls,
    _target_nulls,
    _too_few_classes,
    _rare_class,
    _holdout_too_small,
)


def _plain(value: object) -> object:
    """A numpy scalar as its Python value, so messages read `0`, not `np.int64(0)`."""
    return value.item() if isinstance(value, np.generic) else value


def _listing(columns: Iterable[object]) -> str:
    names = [repr(str(column)) for column in columns]
    shown = ", ".join(names[:MAX_LISTED_COLUMNS])
    hidden = len(names) - MAX_LISTED_COLUMNS
    return f"{shown}, … ({hidden} more)" if hidden > 0 else shown


def _shape(frame: pd.DataFrame) -> str:
    return f"{len(frame)} rows, {len(frame.columns)} columns"


def _summary(data: Profile, spec: PipelineSpec, kind: EstimatorKind) -> str:
    frame = data.frame
    features = len(feature_columns(spec, frame))
    max_null = float(data.null_fractions.max())
    summary = f"{len(frame)} rows, {features} features, {max_null:.3f} max null fraction"
    if kind == "classifier":
        summary += f", {len(data.class_counts)} classes"
    return summary
