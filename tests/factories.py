"""Plain typed factories: data files and pipeline specs for tests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FINAL = {"completed", "failed", "rejected", "awaiting_approval", "cancelled", "skipped"}


def churn_frame(rows: int = 300, *, seed: int = 0, shuffle_labels: bool = False) -> pd.DataFrame:
    """A small churn-like table: numeric and categorical features, a learnable binary target."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows)
    spend = rng.normal(50, 15, rows).round(2)
    plan = rng.choice(["basic", "pro", "team"], rows)
    logit = 0.08 * (age - 45) - 0.06 * (spend - 50) + np.where(plan == "basic", 1.0, -1.0)
    churned = (logit + rng.normal(0, 0.5, rows) > 0).astype(int)
    if shuffle_labels:
        churned = rng.permutation(churned)
    return pd.DataFrame({"age": age, "monthly_spend": spend, "plan": plan, "churned": churned})


def write_csv(path: Path, frame: pd.DataFrame | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (churn_frame() if frame is None else frame).to_csv(path, index=False)
    return path


def pipeline_spec(name: str = "retrain-customer-model", **overrides: Any) -> dict[str, Any]:
    """A valid spec on data/customers.csv; override any top-level field."""
    spec: dict[str, Any] = {
        "name": name,
        "description": "Churn model",
        "source": {"kind": "csv", "path": "data/customers.csv"},
        "target": "churned",
        "model": {
            "estimator": "sklearn.linear_model.LogisticRegression",
            "params": {"max_iter": 1000},
        },
        "validation": {"min_rows": 50, "max_null_fraction": 0.05, "required_columns": ["age"]},
        "evaluation": {"metric": "accuracy", "holdout_fraction": 0.25, "min_score": 0.6},
        "deployment": {"mode": "auto", "target": {"kind": "builtin"}},
        "concurrency": "skip",
    }
    spec.update(overrides)
    return spec


def wait_for_run(client: Any, run_id: int, timeout: float = 60.0) -> dict[str, Any]:
    """Poll GET /runs/{id} until the run ends; returns the final run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}").json()
        if run["status"] in FINAL:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish within {timeout} s: {run}")
