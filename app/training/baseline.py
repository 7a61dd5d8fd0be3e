"""The no-skill baseline: what a model that never looks at the features scores on the holdout.

A candidate trained on labels that have no relation to the features (scrambled, shifted by a
join bug, mostly flipped) learns nothing, and scores about what guessing scores. Comparing it
with production on the same corrupted holdout cannot see that (both land near chance); comparing
it with guessing can.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier, DummyRegressor

from app.spec.estimators import EstimatorKind
from app.spec.schema import LOWER_IS_BETTER
from app.training.evaluation import Baseline, score

# Guessing that never looks at the features: the most frequent class, draws in the classes'
# proportions, the mean, the median. The best of them is the bar.
_CLASSIFIER_STRATEGIES = ("most_frequent", "stratified")
_REGRESSOR_STRATEGIES = ("mean", "median")


def no_skill_baseline(
    y_train: pd.Series, y_test: pd.Series, metric: str, kind: EstimatorKind
) -> Baseline:
    """The best holdout score of the trivial models, fitted on the training labels alone."""
    lower_is_better = metric in LOWER_IS_BETTER
    best: Baseline | None = None
    # Trivial models ignore the features; a column of zeros of the right length is all they need.
    blank = pd.DataFrame({"blank": np.zeros(len(y_test))})
    for strategy in _CLASSIFIER_STRATEGIES if kind == "classifier" else _REGRESSOR_STRATEGIES:
        value = score(_fitted(strategy, y_train), blank, y_test, metric, kind)
        better = best is None or (value < best.value if lower_is_better else value > best.value)
        if better:
            best = Baseline(strategy, value, rows=len(y_test))
    assert best is not None
    return best


def _fitted(strategy: str, y_train: pd.Series) -> DummyClassifier | DummyRegressor:
    features = pd.DataFrame({"blank": np.zeros(len(y_train))})
    if strategy in _REGRESSOR_STRATEGIES:
        return DummyRegressor(strategy=strategy).fit(features, y_train)
    # A fixed seed: the same data always gets the same verdict.
    return DummyClassifier(strategy=strategy, random_state=0).fit(features, y_train)
