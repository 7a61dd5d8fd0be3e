"""A run's ML work, rehearsed once on a few made-up rows when a process starts.

Responsible for: making the first run after a start cost what any other run costs.
scikit-learn, pandas, narwhals, pyarrow and skops import parts of themselves on first use and
fill caches on their first calls. Without a rehearsal the first run after a start paid for
all of it, in the service (about 0.2 s of CPU more than the next run) and in its training
process, beside its fit. The service rehearses in its warm-up, before /readyz says ready;
the forkserver rehearses as it preloads (app.execution.rehearsed), so that every training
process forks with it done. A rehearsal that fails is logged and changes nothing else.

A forked training process still paid for its first calls: the pages it shares with the
forkserver are copied at the first write, its artifact writer's thread and that thread's
memory start with the first artifact: 10 trees on 30,000 rows, split, fitted, scored and
stored, took ~3,900 page faults and ~20 ms more in a new process than in a used one (~400).
So each new training process also makes those calls on made-up rows before its first call
(`rehearse_fitting`); its first run then takes ~1,100 page faults and no longer than the next.
"""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pandas as pd

from app.execution import fitting
from app.registry.artifacts import BlobArtifactStore, missing
from app.spec.schema import PipelineSpec
from app.training.baseline import no_skill_baseline
from app.training.chance import chance_skill
from app.training.evaluation import PredictedOnce, score
from app.training.fingerprint import fingerprint, row_hashes
from app.training.holdout import split_holdout
from app.training.reference import reference_profile
from app.training.trainer import feature_columns, train
from app.training.validation import check_data

log = logging.getLogger(__name__)
ROWS = 120


def rehearse() -> None:
    """Validate, split, fit, score, store and load a tiny model; never raises."""
    try:
        _rehearse()
    except Exception:
        log.warning("the start-up rehearsal of a run failed; the first run pays", exc_info=True)


def rehearse_fitting() -> None:
    """A run's calls to its training process, made in it on made-up rows; never raises."""
    try:
        spec = _spec()
        task = fitting.Task(spec, "classifier", ("sklearn.",), None, _Memory(), "rehearsal", 1)
        fitting.split(_made_up_rows(), spec, "classifier")
        fitting.fit(task)
        fitting.stored()
        fitting.forget()
    except Exception:
        log.warning("the rehearsal in a training process failed; its first run pays", exc_info=True)


def _rehearse() -> None:
    frame = _made_up_rows()
    spec = _spec()
    check_data(frame, spec, "classifier")
    hashes = row_hashes(frame)
    h = split_holdout(frame, spec, "classifier", hashes)
    fingerprint(frame, hashes)
    reference_profile(frame, feature_columns(spec, frame))
    baseline = no_skill_baseline(h.y_train, h.y_test, "accuracy", "classifier")
    X_train = pickle.loads(pickle.dumps(h.X_train, protocol=5))  # noqa: N806, S301 (our bytes)
    model = train(spec, X_train, h.y_train, ("sklearn.",)).model
    predicted = PredictedOnce(model, h.X_test)
    score(predicted, h.X_test, h.y_test, "accuracy", "classifier")
    chance_skill(predicted.recorded(), h.X_test, h.y_test, "accuracy", "classifier", baseline.value)
    store = _Memory()
    stored = store.save("rehearsal", 1, model)
    store.load(stored.uri, stored.sha256).predict(h.X_test)


def _spec() -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "name": "rehearsal",
            "source": {"kind": "csv", "path": "rehearsal.csv"},
            "target": "label",
            "model": {
                "estimator": "sklearn.tree.DecisionTreeClassifier",
                "params": {"max_depth": 2},
            },
        }
    )


def _made_up_rows() -> pd.DataFrame:
    """Numbers, a category and a gap in each, and a two-class label."""
    rng = np.random.default_rng(0)
    number = rng.normal(size=ROWS)
    number[0] = np.nan
    category = pd.Series(rng.choice(["a", "b", "c"], ROWS))
    category[1] = None
    label = (number > 0).astype(int)
    return pd.DataFrame({"number": number, "category": category, "label": label})


class _Memory(BlobArtifactStore):
    """An artifact store in a dict, for the rehearsal's one model."""

    def __init__(self) -> None:
        self._files: dict[str, bytes] = {}

    def write(self, uri: str, data: bytes) -> None:
        self._files[uri] = data

    def read(self, uri: str) -> bytes:
        if uri not in self._files:
            raise missing(uri)
        return self._files[uri]

    def remove(self, uri: str) -> None:
        self._files.pop(uri, None)
