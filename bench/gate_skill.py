"""What the no-skill gate sees: skill and chance_skill of candidates trained on clean and on
corrupted labels (scrambled, shifted one row, a share flipped), on bundled datasets.

    .venv/bin/python -m bench.gate_skill

Each cell is `skill/chance_skill verdict` for five corruption seeds (one for clean and
shifted, which draw nothing); P passes the default gate (min_skill 0.2), r is rejected.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_diabetes

from app.core.settings import Settings
from app.spec.estimators import EstimatorKind
from app.spec.schema import PipelineSpec
from app.training.baseline import no_skill_baseline
from app.training.chance import chance_skill
from app.training.evaluation import score, skill
from app.training.holdout import split_holdout
from app.training.trainer import train

MIN_SKILL = 0.2
Corrupt = Callable[[np.ndarray, np.random.Generator, EstimatorKind], np.ndarray]


def _spec(estimator: str, params: dict[str, object], metric: str) -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "name": "bench",
            "source": {"kind": "sklearn", "dataset": "iris"},
            "target": "target",
            "model": {"estimator": estimator, "params": params},
            "evaluation": {"metric": metric, "holdout_fraction": 0.2},
        }
    )


def _flip(share: float) -> Corrupt:
    def corrupt(y: np.ndarray, rng: np.random.Generator, kind: EstimatorKind) -> np.ndarray:
        y = y.copy()
        rows = rng.choice(len(y), int(len(y) * share), replace=False)
        y[rows] = 1 - y[rows] if kind == "classifier" else rng.permutation(y[rows])
        return y

    return corrupt


CORRUPTIONS: dict[str, Corrupt | None] = {
    "clean": None,
    "scrambled": lambda y, rng, kind: rng.permutation(y),
    "shifted": lambda y, rng, kind: np.roll(y, 1),
    "flip40%": _flip(0.4),
}


def _verdict(frame: pd.DataFrame, spec: PipelineSpec, kind: EstimatorKind) -> str:
    holdout = split_holdout(frame, spec, kind)
    metric, allowed = spec.evaluation.metric, Settings().allowed_estimators
    model = train(spec, holdout.X_train, holdout.y_train, allowed).model
    candidate = score(model, holdout.X_test, holdout.y_test, metric, kind)
    base = no_skill_baseline(holdout.y_train, holdout.y_test, metric, kind)
    chance = chance_skill(model, holdout.X_test, holdout.y_test, metric, kind, base.value)
    value = skill(candidate, base.value, metric) or 0.0
    floor = max(MIN_SKILL, chance if chance is not None else -1.0)
    return f"{value:.2f}/{chance or 0:.2f}{'P' if value >= floor else 'r'}"


def main() -> None:
    warnings.simplefilter("ignore")
    cancer = load_breast_cancer(as_frame=True).frame.sample(frac=1, random_state=0)
    diabetes = load_diabetes(as_frame=True).frame.sample(frac=1, random_state=0)
    logistic = ("sklearn.linear_model.LogisticRegression", {"max_iter": 5000})
    cases: list[tuple[str, pd.DataFrame, PipelineSpec, EstimatorKind]] = [
        ("breast_cancer LR accuracy", cancer, _spec(*logistic, "accuracy"), "classifier"),
        ("breast_cancer LR roc_auc", cancer, _spec(*logistic, "roc_auc"), "classifier"),
        (
            "diabetes Ridge rmse",
            diabetes,
            _spec("sklearn.linear_model.Ridge", {}, "rmse"),
            "regressor",
        ),
    ]
    for label, frame, spec, kind in cases:
        cells = []
        for name, corrupt in CORRUPTIONS.items():
            seeds = range(1, 6) if name in ("scrambled", "flip40%") else range(1, 2)
            verdicts = []
            for seed in seeds:
                data = frame.reset_index(drop=True).copy()
                if corrupt is not None:
                    rng = np.random.default_rng(seed)
                    data["target"] = corrupt(data["target"].to_numpy(), rng, kind)
                verdicts.append(_verdict(data, spec, kind))
            cells.append(f"{name}: {' '.join(verdicts)}")
        print(f"{label}\n  " + "\n  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
