"""The reference profile: how each feature was distributed in a model's training data.

Drift triggers compare newly ingested rows with it. Numeric features keep decile bins (for
PSI) and a sample of values (for KS); categorical features keep category frequencies.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from app.training.columns import numeric_columns

DECILES = np.linspace(0.1, 0.9, 9)
SAMPLE_SIZE = 1_000
TOP_CATEGORIES = 50
OTHER = "__other__"
# JSON (and PostgreSQL's json type) has no infinity; float() reads these strings back.
OPEN_ENDS = ("-inf", "inf")
# Fixed so that retraining on the same data stores the same sample.
SAMPLE_SEED = 0
PROFILE_ROWS = 20_000


def reference_profile(frame: pd.DataFrame, features: list[str]) -> dict[str, Any]:
    """Per feature: decile bins, their fractions and a sample (numeric), or frequencies."""
    present = [feature for feature in features if feature in frame.columns]
    frame = frame[present]
    if len(frame) > PROFILE_ROWS:
        # A 20k-row sample pins each decile's share to within about 0.002, far below what
        # a PSI threshold can tell apart, at a fraction of the cost on big training sets
        # (it runs beside validation and training).
        rows = np.random.default_rng(SAMPLE_SEED).choice(len(frame), PROFILE_ROWS, replace=False)
        frame = frame.iloc[np.sort(rows)]
    numeric = set(numeric_columns(frame))
    return {
        feature: numeric_profile(frame[feature])
        if feature in numeric
        else categorical_profile(frame[feature])
        for feature in present
    }


def numeric_profile(column: pd.Series) -> dict[str, Any]:
    """Decile bin edges (unique, open-ended), the fraction of rows per bin, and a sample."""
    values = numeric_values(column)
    cuts = np.unique(np.quantile(values, DECILES)) if values.size else np.array([])
    sample = values
    if values.size > SAMPLE_SIZE:
        sample = np.random.default_rng(SAMPLE_SEED).choice(values, SAMPLE_SIZE, replace=False)
    return {
        "kind": "numeric",
        "rows": int(values.size),
        "edges": [OPEN_ENDS[0], *(float(cut) for cut in cuts), OPEN_ENDS[1]],
        "fractions": bin_fractions(cuts, values),
        "sample": [float(value) for value in sample],
    }


def categorical_profile(column: pd.Series) -> dict[str, Any]:
    """The frequency of the most common categories, the rest pooled under `__other__`."""
    values = category_values(column)
    counts = values.value_counts()
    total = int(counts.sum())
    top = counts.iloc[:TOP_CATEGORIES]
    frequencies = {str(name): int(count) / total for name, count in top.items()} if total else {}
    frequencies[OTHER] = (total - int(top.sum())) / total if total else 0.0
    return {"kind": "categorical", "rows": total, "frequencies": frequencies}


def numeric_values(column: pd.Series) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The column's finite numbers; text that is not a number counts as missing."""
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return np.asarray(values[np.isfinite(values)], dtype=np.float64)


def category_values(column: pd.Series) -> pd.Series:
    """The column's present values as text, as the model's one-hot encoder sees them."""
    return column.dropna().astype(str)


def cut_points(edges: list[Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The inner edges of stored bins (the open ends dropped)."""
    return np.asarray([float(edge) for edge in edges[1:-1]], dtype=float)


def bin_fractions(
    cuts: np.ndarray[Any, np.dtype[np.float64]], values: np.ndarray[Any, np.dtype[np.float64]]
) -> list[float]:
    """The fraction of values in each bin [edge_i, edge_i+1) around these cut points."""
    if values.size == 0:
        return [0.0] * (cuts.size + 1)
    counts = np.bincount(np.searchsorted(cuts, values, side="right"), minlength=cuts.size + 1)
    return [float(count) / values.size for count in counts]
