"""The baseline for bench/overhead.py: one run's ML work in plain scikit-learn, nothing else.

Started once as a child process; each line on stdin is a JSON job
`{"csv", "target", "holdout_fraction", "estimator", "params"}` and each answer on stdout is
`{"seconds", "phases", "score"}`. Imports happen once, so the times exclude start-up,
as the service's do after its first run.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

RANDOM_STATE = 42


def build_model(X: pd.DataFrame, estimator: str, params: dict[str, Any]) -> Pipeline:  # noqa: N803
    """Median-impute + scale the numbers, most-frequent-impute + one-hot the rest."""
    numeric = [str(c) for c in X.select_dtypes("number").columns]
    categorical = [str(c) for c in X.columns if str(c) not in numeric]
    preprocess = ColumnTransformer(
        [
            (
                "numeric",
                Pipeline(
                    [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
                ),
                numeric,
            ),
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        ("encode", OneHotEncoder(handle_unknown="ignore")),
                    ]
                ),
                categorical,
            ),
        ]
    )
    module, _, name = estimator.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return Pipeline([("preprocess", preprocess), ("estimator", cls(**params))])


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Read, split, fit, score; the time of the whole and of each phase.

    With `rows` (an .npz of train and test positions), the script still splits with
    train_test_split (its split costs what a bare script's does), then fits and scores on
    those rows instead; taking them is not timed."""
    given = np.load(job["rows"]) if "rows" in job else None
    phases: dict[str, float] = {}
    started = time.perf_counter()
    frame = pd.read_csv(job["csv"], low_memory=False)
    phases["read"] = time.perf_counter() - started
    started = time.perf_counter()
    X, y = frame.drop(columns=job["target"]), frame[job["target"]]  # noqa: N806
    X_train, X_test, y_train, y_test = train_test_split(  # noqa: N806
        X, y, test_size=job["holdout_fraction"], random_state=RANDOM_STATE, stratify=y
    )
    phases["split"] = time.perf_counter() - started
    if given is not None:
        train, test = given["train"], given["test"]
        X_train, X_test, y_train, y_test = X.iloc[train], X.iloc[test], y.iloc[train], y.iloc[test]  # noqa: N806
    started = time.perf_counter()
    model = build_model(X_train, job["estimator"], job["params"])
    model.fit(X_train, y_train)
    phases["fit"] = time.perf_counter() - started
    started = time.perf_counter()
    score = float(model.score(X_test, y_test))
    phases["score"] = time.perf_counter() - started
    seconds = sum(phases.values())
    # What the service's gate adds: the previous job's model (production) scored on the same
    # holdout. Timed apart so the benchmark can compare with and without it.
    started = time.perf_counter()
    if _production:
        _production[0].score(X_test, y_test)
    phases["score_production"] = time.perf_counter() - started
    _production[:] = [model]
    return {"seconds": seconds, "phases": phases, "score": score}


_production: list[Pipeline] = []


def main() -> None:
    # Jobs run in a worker thread, as the service's do: glibc gives a thread its own malloc
    # arena, which keeps freed memory, while the main thread's arena hands it back to the OS
    # and page-faults it in again on the next job (~70 ms of a 1 s job here). In the main
    # thread the baseline would be slower for a reason that has nothing to do with the service.
    with ThreadPoolExecutor(max_workers=1) as worker:
        for line in sys.stdin:
            if not line.strip():
                break
            result = worker.submit(run_job, json.loads(line)).result()
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
