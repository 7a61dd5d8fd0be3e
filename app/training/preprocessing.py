"""The preprocessing half of every trained pipeline: impute, scale numbers, one-hot the rest."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from app.training.columns import numeric_columns


def build_preprocessor(X: pd.DataFrame) -> ColumnTransformer:  # noqa: N803 (sklearn's X)
    """A ColumnTransformer for X's columns: numeric ones scaled, all others one-hot encoded."""
    numeric = numeric_columns(X)
    categorical = [str(column) for column in X.columns if str(column) not in numeric]
    transformers: list[tuple[str, Pipeline, list[str]]] = []
    if numeric:
        transformers.append(("numeric", _numeric_pipeline(), numeric))
    if categorical:
        transformers.append(("categorical", _categorical_pipeline(), categorical))
    return ColumnTransformer(transformers, remainder="drop")


def as_categories(X: pd.DataFrame) -> pd.DataFrame:  # noqa: N803 (sklearn's X)
    """Object columns of strings, with NaN for every kind of missing value.

    SimpleImputer refuses bool columns and trips over pd.NA (pandas "string"/"boolean"
    dtypes), and OneHotEncoder refuses columns that mix numbers and strings. Strings make a
    JSON `true` at predict time match a CSV `True` seen in training.
    """
    return X.astype(str).astype(object).mask(X.isna(), np.nan)


def _numeric_pipeline() -> Pipeline:
    # keep_empty_features: a column with no values in the train split is imputed, not dropped,
    # so the model keeps one input per column whatever the split drew.
    imputer = SimpleImputer(strategy="median", keep_empty_features=True)
    return Pipeline([("impute", imputer), ("scale", StandardScaler())])


def _categorical_pipeline() -> Pipeline:
    return Pipeline(
        [
            ("as_categories", FunctionTransformer(as_categories, feature_names_out="one-to-one")),
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("encode", OneHotEncoder(handle_unknown="ignore")),
        ]
    )
