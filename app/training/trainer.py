"""The train step: choose the features and fit the allow-listed estimator."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from app.spec.estimators import EstimatorError, resolve_estimator
from app.spec.schema import PipelineSpec
from app.training.errors import TrainingError
from app.training.preprocessing import build_preprocessor


@dataclass(frozen=True)
class TrainedModel:
    model: Pipeline
    params: dict[str, Any]
    fit_seconds: float


def feature_columns(spec: PipelineSpec, frame: pd.DataFrame) -> list[str]:
    """The spec's features, or every column but the target in the frame's order."""
    if spec.features is not None:
        return list(spec.features)
    return [column for column in frame.columns if column != spec.target]


def train(
    spec: PipelineSpec,
    X: pd.DataFrame,  # noqa: N803 (sklearn's X)
    y: pd.Series,
    allowed_prefixes: Sequence[str],
) -> TrainedModel:
    """Fit preprocessing plus the spec's estimator on the train split.

    Runs in a training process (app.execution.processes): it takes only what the fit needs, since
    each argument crosses a pipe."""
    try:
        resolved = resolve_estimator(spec.model.estimator, allowed_prefixes)
        estimator = resolved.build(dict(spec.model.params))
    except EstimatorError as exc:
        raise TrainingError(f"Training failed: {exc}") from exc
    model = Pipeline([("preprocess", build_preprocessor(X)), ("estimator", estimator)])
    started = time.perf_counter()
    try:
        model.fit(X, y)
    # Any exception: estimators raise ValueError, TypeError, LinAlgError and more, and each
    # must end the run as a readable failure rather than a crashed worker.
    except Exception as exc:
        raise TrainingError(f"Training failed: {str(exc) or type(exc).__name__}") from exc
    fit_seconds = time.perf_counter() - started
    return TrainedModel(
        model=model, params=json_safe(estimator.get_params(deep=False)), fit_seconds=fit_seconds
    )


def json_safe(params: dict[str, Any]) -> dict[str, Any]:
    """Params as JSON: scalars, lists and dicts kept, anything else (an object, NaN) as repr."""
    return {str(key): _json_value(value) for key, value in params.items()}


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return json_safe(value)
    return repr(value)
