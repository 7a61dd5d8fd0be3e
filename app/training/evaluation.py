"""The evaluate step: score a model on the holdout and decide whether it may replace production."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)

from app.spec.estimators import EstimatorKind
from app.spec.schema import (
    CLASSIFICATION_METRICS,
    LOWER_IS_BETTER,
    REGRESSION_METRICS,
    Evaluation,
)
from app.training.errors import EvaluationError

# Scores are floats; a tie or an improvement of exactly min_improvement must not fail on
# rounding noise such as 0.83 - 0.80 == 0.02999...
TOLERANCE = 1e-12
_LABEL_METRICS = {"f1": f1_score, "precision": precision_score, "recall": recall_score}
_PREDICTIONS = frozenset({"predict", "predict_proba", "decision_function"})


class PredictedOnce:
    """A fitted model whose predictions on one holdout are made once and kept, however often
    a scorer asks: the training process scores the candidate with it, then sends what it
    predicted (recorded) for the chance level. For a forest the predictions are most of what
    scoring costs. Anything else is the model's own."""

    def __init__(self, model: Any, X: pd.DataFrame) -> None:  # noqa: N803 (sklearn's X)
        self._model = model
        self._X = X
        self._made: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._model, name)  # AttributeError as the model raises it
        if name not in _PREDICTIONS:
            return found

        def once(X: pd.DataFrame) -> Any:  # noqa: N803
            if X is not self._X:
                return found(X)
            if name not in self._made:
                self._made[name] = found(X)
            return self._made[name]

        return once

    def recorded(self) -> Recorded:
        """The predictions made so far, and what the model offers, without the model."""
        offered = frozenset(name for name in _PREDICTIONS if hasattr(self._model, name))
        classes = getattr(self._model, "classes_", None)
        return Recorded(classes, dict(self._made), offered, self._X.index)


class Recorded:
    """A model's predictions on one holdout, standing in for the model with scorers that ask
    for those predictions again: sent from the training process, which has the model, to the
    service, which does not.

    It has `classes_` and the prediction methods only where the model has them, as hasattr
    tells the scorers; a prediction that was not made, or one for another frame, is an
    EvaluationError."""

    def __init__(
        self, classes: Any, made: dict[str, Any], offered: frozenset[str], index: pd.Index
    ) -> None:
        self._args = (classes, made, offered, index)
        if classes is not None:
            self.classes_ = classes
        for name in offered:
            setattr(self, name, self._answer(name, made.get(name), index))

    def __reduce__(self) -> tuple[type[Recorded], tuple[Any, ...]]:
        return Recorded, self._args

    @staticmethod
    def _answer(name: str, values: Any, index: pd.Index) -> Any:
        def answer(X: pd.DataFrame) -> Any:  # noqa: N803
            if values is None or not X.index.equals(index):
                raise EvaluationError(
                    f"Evaluation failed: the training process did not record {name} for these rows"
                )
            return values

        return answer


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str


@dataclass(frozen=True)
class Baseline:
    """The best no-skill score on the holdout, and which trivial model made it."""

    strategy: str
    value: float
    # The skill the candidate's own predictions reach one time in a hundred against shuffled
    # holdout labels: what luck alone shows on a holdout this size (None: not measured).
    chance: float | None = None
    rows: int = 0

    @property
    def described(self) -> str:
        """The trivial model in words."""
        return _DESCRIBED[self.strategy]


_DESCRIBED = {
    "most_frequent": "always predicting the most frequent class",
    "stratified": "guessing classes in their training proportions",
    "mean": "always predicting the mean",
    "median": "always predicting the median",
}


def score(model: Any, X: pd.DataFrame, y: pd.Series, metric: str, kind: EstimatorKind) -> float:  # noqa: N803
    """The model's metric on (X, y); EvaluationError when the metric does not fit the model."""
    _check_metric_fits(metric, kind)
    try:
        if metric in REGRESSION_METRICS:
            return _regression_score(metric, y, model.predict(X))
        if metric == "roc_auc":
            return _roc_auc(model, X, y)
        return _label_score(metric, y, model.predict(X), model.classes_)
    except ValueError as exc:
        raise EvaluationError(f"Evaluation failed: cannot compute {metric}: {exc}") from exc


def _check_metric_fits(metric: str, kind: EstimatorKind) -> None:
    if metric not in CLASSIFICATION_METRICS + REGRESSION_METRICS:
        raise EvaluationError(f"Evaluation failed: unknown metric {metric!r}")
    wanted = "classifier" if metric in CLASSIFICATION_METRICS else "regressor"
    if kind != wanted:
        raise EvaluationError(
            f"Evaluation failed: metric {metric} needs a {wanted}, but the model is a {kind}"
        )


def _regression_score(metric: str, y: pd.Series, predicted: Any) -> float:
    if metric == "r2":
        return float(r2_score(y, predicted))
    if metric == "rmse":
        # sqrt of MSE rather than mean_squared_error(squared=False), which sklearn removed.
        return math.sqrt(float(mean_squared_error(y, predicted)))
    return float(mean_absolute_error(y, predicted))


def _label_score(metric: str, y: pd.Series, predicted: Any, classes: Any) -> float:
    if metric == "accuracy":
        return float(accuracy_score(y, predicted))
    scorer = _LABEL_METRICS[metric]
    if _is_binary(classes, y):
        # The greater label is the positive class, as in roc_auc_score and the usual 0/1 data.
        positive = sorted(classes)[-1]
        return float(scorer(y, predicted, average="binary", pos_label=positive, zero_division=0))
    return float(scorer(y, predicted, average="macro", zero_division=0))


def _roc_auc(model: Any, X: pd.DataFrame, y: pd.Series) -> float:  # noqa: N803
    classes = model.classes_
    if _is_binary(classes, y):
        if hasattr(model, "predict_proba"):
            positive = list(classes).index(sorted(classes)[-1])
            return float(roc_auc_score(y, model.predict_proba(X)[:, positive]))
        if hasattr(model, "decision_function"):
            # For two classes sklearn's decision_function scores the greater label.
            return float(roc_auc_score(y, model.decision_function(X)))
        raise EvaluationError(
            "Evaluation failed: roc_auc needs a model with predict_proba or decision_function"
        )
    if not hasattr(model, "predict_proba"):
        raise EvaluationError(
            "Evaluation failed: roc_auc on more than 2 classes needs predict_proba"
        )
    return float(roc_auc_score(y, model.predict_proba(X), multi_class="ovr", labels=classes))


def _is_binary(classes: Any, y: pd.Series) -> bool:
    # The union, not the model's classes alone: production may not know a label that the
    # new holdout contains, and then the score is a multiclass one.
    return len(set(np.asarray(classes).tolist()) | set(y.unique().tolist())) == 2


def gate(
    candidate: float,
    production: float | None,
    evaluation: Evaluation,
    lower_is_better: bool,
    baseline: Baseline | None = None,
) -> GateDecision:
    """Pass when the candidate passes candidate_gate and beats production by min_improvement."""
    own = candidate_gate(candidate, evaluation, lower_is_better, baseline)
    if not own.passed:
        return own
    versus = _production_check(candidate, production, evaluation, lower_is_better)
    if not versus.passed:
        return versus
    return GateDecision(True, f"{own.reason}; {versus.reason}")


def candidate_gate(
    candidate: float, evaluation: Evaluation, lower_is_better: bool, baseline: Baseline | None
) -> GateDecision:
    """The checks on the candidate alone: a finite score, min_score, and min_skill over the
    no-skill baseline (when there is one)."""
    if not math.isfinite(candidate):
        return GateDecision(False, f"Evaluation gate: candidate {evaluation.metric} is {candidate}")
    floor = _min_score_check(candidate, evaluation, lower_is_better)
    if not floor.passed or baseline is None:
        return floor
    skilled = _skill_check(candidate, baseline, evaluation)
    if not skilled.passed:
        return skilled
    return GateDecision(True, f"{floor.reason}; {skilled.reason}")


def perfect_score(metric: str) -> float:
    """The best value the metric can take: 0 for an error, 1 for the rest."""
    return 0.0 if metric in LOWER_IS_BETTER else 1.0


def skill(candidate: float, baseline: float, metric: str) -> float | None:
    """The share of the gap from the baseline to a perfect score that the candidate closes
    (1: all of it, 0: no better than guessing, below 0: worse); None if guessing is perfect."""
    if metric in LOWER_IS_BETTER:
        # On squared errors: against the mean this is R² for rmse, as for the r2 metric,
        # where the ratio of the errors themselves reads much lower (R² 0.5 is 0.3 of rmse).
        candidate, baseline = candidate**2, baseline**2
    gap = perfect_score(metric) - baseline
    if abs(gap) < TOLERANCE:
        return None
    return (candidate - baseline) / gap


def _skill_check(candidate: float, baseline: Baseline, evaluation: Evaluation) -> GateDecision:
    metric, floor = evaluation.metric, evaluation.min_skill
    value = skill(candidate, baseline.value, metric)
    versus = f"{baseline.described} scores {baseline.value:.3f}"
    if value is None:
        return GateDecision(True, f"{versus}, a perfect score: skill not measurable")
    if floor is None:
        return GateDecision(True, f"skill {value:.2f} over no-skill {baseline.value:.3f}")
    chance = baseline.chance if baseline.chance is not None else -math.inf
    if value >= max(floor, chance) - TOLERANCE:
        return GateDecision(True, f"skill {value:.2f} over no-skill {baseline.value:.3f}")
    if value >= floor - TOLERANCE:
        why = (
            f"on a holdout of {baseline.rows} rows, predictions unrelated to the labels reach "
            f"{chance:.2f} one time in 100, so this is within chance"
        )
    else:
        why = f"below min_skill {floor:.2f}"
    return GateDecision(
        False,
        f"Evaluation gate: candidate {metric} {candidate:.3f} shows no real skill: "
        f"{versus} on the same holdout, and the candidate closes only {value:.2f} of the gap "
        f"to a perfect score, {why}. The labels may be scrambled, shifted against the "
        "features or largely wrong: check the source data (or lower evaluation.min_skill "
        "if the problem is that hard)",
    )


def _min_score_check(
    candidate: float, evaluation: Evaluation, lower_is_better: bool
) -> GateDecision:
    metric, limit = evaluation.metric, evaluation.min_score
    if limit is None:
        return GateDecision(True, f"{metric} {candidate:.3f}, no min_score")
    # For rmse and mae, min_score is a ceiling: the error may be at most that large.
    if lower_is_better:
        passed, sign, fail_sign = candidate <= limit + TOLERANCE, "<=", ">"
    else:
        passed, sign, fail_sign = candidate >= limit - TOLERANCE, ">=", "<"
    if passed:
        return GateDecision(True, f"{metric} {candidate:.3f} {sign} min_score {limit:.3f}")
    return GateDecision(
        False, f"Evaluation gate: {metric} {candidate:.3f} {fail_sign} min_score {limit:.3f}"
    )


def _production_check(
    candidate: float, production: float | None, evaluation: Evaluation, lower_is_better: bool
) -> GateDecision:
    if production is None:
        return GateDecision(True, "no production model")
    if not math.isfinite(production):
        # Fail closed: a score that cannot be compared is no evidence the candidate is better.
        return GateDecision(
            False,
            f"Evaluation gate: production's {evaluation.metric} is {production}, "
            "so the candidate cannot be compared with it",
        )
    improvement = production - candidate if lower_is_better else candidate - production
    needed, metric = evaluation.min_improvement, evaluation.metric
    if improvement < needed - TOLERANCE:
        return GateDecision(
            False,
            f"Evaluation gate: candidate {metric} {candidate:.3f} does not beat production "
            f"{production:.3f} by min_improvement {needed:.3f}",
        )
    if improvement < 0:
        return GateDecision(
            True,
            f"trails production {production:.3f} by {-improvement:.3f}, "
            f"within min_improvement {needed:.3f}",
        )
    return GateDecision(True, f"beats production {production:.3f} by {improvement:.3f}")
