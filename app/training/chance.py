"""How much skill luck alone shows on a holdout this size.

The candidate's own holdout predictions are scored against shuffles of the holdout labels:
predictions that cannot know the labels. The skill they reach one time in a hundred is a floor
for the candidate's real skill, so a small holdout's lucky draw is not taken as learning.
The metrics are computed here with numpy over all shuffles at once (what sklearn's scorers do
per call, without their per-call checks: 200 calls to them cost seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from app.spec.estimators import EstimatorKind
from app.training.errors import EvaluationError
from app.training.evaluation import skill

DRAWS = 200
# Beyond a few thousand rows chance is far below any useful min_skill anyway.
MAX_ROWS = 5000
Matrix = np.ndarray[Any, np.dtype[Any]]


@dataclass(frozen=True)
class Draws:
    """The holdout rows scored (None: all), their labels, and DRAWS shuffles of those labels.

    They depend on the holdout alone, not on the model: a run draws them while it fits."""

    rows: Matrix | None
    labels: Matrix
    shuffled: Matrix


def draws(y_test: pd.Series) -> Draws:
    """The shuffles the chance level of a model on this holdout is measured with."""
    rng = np.random.default_rng(0)  # the same data always gets the same verdict
    rows = None
    if len(y_test) > MAX_ROWS:
        rows = np.sort(rng.choice(len(y_test), MAX_ROWS, replace=False))
    labels = y_test.to_numpy() if rows is None else y_test.to_numpy()[rows]
    return Draws(rows, labels, np.stack([rng.permutation(labels) for _ in range(DRAWS)]))


def chance_skill(
    model: Any,
    X_test: pd.DataFrame,  # noqa: N803 (sklearn's X)
    y_test: pd.Series,
    metric: str,
    kind: EstimatorKind,
    baseline: float,
    drawn: Draws | None = None,
) -> float | None:
    """The skill the model's predictions reach against shuffled labels one time in 100;
    `drawn`: draws(y_test), when made already."""
    drawn = drawn if drawn is not None else draws(y_test)
    holdout = Scored(model, X_test, drawn.rows)
    try:
        scores = _scores(holdout, drawn.labels, drawn.shuffled, metric, kind)
    except (EvaluationError, ValueError):
        return None  # a metric that cannot be computed here has no chance level either
    skills = [s for s in (skill(float(v), baseline, metric) for v in scores) if s is not None]
    return float(np.quantile(skills, 0.99)) if skills else None


@dataclass(frozen=True)
class Scored:
    """The model and the whole holdout, and the rows of it scored here (None: all).

    Predictions are made on the whole holdout and then taken at the rows, so that the
    candidate's predictions for its score serve here too (Recorded)."""

    model: Any
    X: pd.DataFrame
    rows: Matrix | None

    def taken(self, values: Any) -> Matrix:
        array = np.asarray(values)
        return array if self.rows is None else array[self.rows]


def _scores(
    holdout: Scored, labels: Matrix, shuffled: Matrix, metric: str, kind: EstimatorKind
) -> Matrix:
    model = holdout.model
    if kind == "regressor":
        return _regression(holdout.taken(model.predict(holdout.X)).astype(float), shuffled, metric)
    classes = sorted(set(np.asarray(model.classes_).tolist()) | set(labels.tolist()))
    if metric == "roc_auc":
        if len(classes) != 2:
            return _multiclass_auc(holdout, shuffled)
        positive = classes[-1]
        ranks = pd.Series(holdout.taken(_positive_scores(model, holdout.X, positive))).rank()
        return _auc(ranks.to_numpy(), shuffled == positive)
    predicted = holdout.taken(model.predict(holdout.X))
    if metric == "accuracy":
        return np.asarray((shuffled == predicted[None, :]).mean(axis=1))
    return _label_metric(predicted, shuffled, metric, classes)


def _regression(predicted: Matrix, shuffled: Matrix, metric: str) -> Matrix:
    errors = shuffled.astype(float) - predicted[None, :]
    if metric == "mae":
        return np.asarray(np.abs(errors).mean(axis=1))
    if metric == "rmse":
        return np.asarray(np.sqrt((errors**2).mean(axis=1)))
    spread = ((shuffled[0] - shuffled[0].mean()) ** 2).sum()  # the same for every shuffle
    if spread == 0:
        raise EvaluationError("r2 of a constant target")
    return np.asarray(1 - (errors**2).sum(axis=1) / spread)


def _positive_scores(model: Any, X: pd.DataFrame, positive: Any) -> Matrix:  # noqa: N803
    if hasattr(model, "predict_proba"):
        column = list(model.classes_).index(positive)
        return np.asarray(model.predict_proba(X)[:, column])
    return np.asarray(model.decision_function(X))


def _auc(ranks: Matrix, is_positive: Matrix) -> Matrix:
    """ROC AUC from the ranks of the scores (Mann-Whitney U), one per row of labels."""
    positives = is_positive.sum(axis=1)
    negatives = is_positive.shape[1] - positives
    rank_sum = (is_positive * ranks[None, :]).sum(axis=1)
    return np.asarray((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def _label_metric(predicted: Matrix, shuffled: Matrix, metric: str, classes: list[Any]) -> Matrix:
    """f1, precision or recall as sklearn computes them (zero_division=0): for the greatest
    label when there are two, else the macro average over every label."""
    wanted = [classes[-1]] if len(classes) == 2 else classes
    per_class = []
    for label in wanted:
        said, truly = (predicted == label)[None, :], shuffled == label
        hits = (said & truly).sum(axis=1)
        precision = _ratio(hits, np.broadcast_to(said.sum(), hits.shape))
        recall = _ratio(hits, truly.sum(axis=1))
        if metric == "precision":
            per_class.append(precision)
        elif metric == "recall":
            per_class.append(recall)
        else:
            per_class.append(_ratio(2 * precision * recall, precision + recall))
    return np.asarray(np.mean(per_class, axis=0))


def _ratio(top: Matrix, bottom: Matrix) -> Matrix:
    out = np.zeros(top.shape, dtype=float)
    np.divide(top, bottom, out=out, where=bottom > 0)
    return out


def _multiclass_auc(holdout: Scored, shuffled: Matrix) -> Matrix:
    """One-vs-rest roc_auc as score() computes it, by sklearn's scorer on fewer shuffles (each
    call is slow), from the predictions on the whole holdout."""
    model = holdout.model
    if not hasattr(model, "predict_proba"):
        raise EvaluationError("roc_auc on more than 2 classes needs predict_proba")
    scores = holdout.taken(model.predict_proba(holdout.X))
    return np.array(
        [
            roc_auc_score(drawn, scores, multi_class="ovr", labels=model.classes_)
            for drawn in shuffled[: DRAWS // 4]
        ]
    )
