"""Loading a pipeline's training data: one entry point for every source kind."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
from sklearn import datasets
from sqlalchemy.orm import Session

from app.core.settings import Settings
from app.datasources.files import load_file
from app.datasources.ingested import load_ingested
from app.datasources.messages import redact_url
from app.datasources.sql import load_sql, masked_url
from app.datasources.windows import apply_window
from app.spec.schema import (
    CsvSource,
    IngestedSource,
    ParquetSource,
    SklearnSource,
    Source,
    SqlSource,
    Window,
)

_SKLEARN_LOADERS: dict[str, Callable[..., Any]] = {
    "iris": datasets.load_iris,
    "wine": datasets.load_wine,
    "breast_cancer": datasets.load_breast_cancer,
    "diabetes": datasets.load_diabetes,
    "digits": datasets.load_digits,
}


def load_frame(
    source: Source,
    *,
    pipeline_id: int,
    session: Session,
    settings: Settings,
    attempts: list[str] | None = None,
) -> pd.DataFrame:
    """The source's rows, windowed; an empty frame is returned, not refused.

    `attempts` receives how an http(s) source was fetched, if it took more than one try."""
    if isinstance(source, IngestedSource):
        return load_ingested(source.window, pipeline_id=pipeline_id, session=session)
    return apply_window(_load_all(source, settings, attempts), source.window)


def describe_source(source: Source) -> str:
    """Short text for a run's load_data step, e.g. "csv data/customers.csv"; no passwords."""
    text = _describe(source)
    if source.window is None:
        return text
    return f"{text}, {_describe_window(source.window, ingested=source.kind == 'ingested')}"


def _load_all(
    source: CsvSource | ParquetSource | SqlSource | SklearnSource,
    settings: Settings,
    attempts: list[str] | None,
) -> pd.DataFrame:
    if isinstance(source, SqlSource):
        return load_sql(source, settings)
    if isinstance(source, SklearnSource):
        return _load_sklearn(source.dataset)
    return load_file(source, settings, attempts)


def _load_sklearn(name: str) -> pd.DataFrame:
    # Bundled with scikit-learn: nothing is downloaded. The label column is `target`.
    frame: pd.DataFrame = _SKLEARN_LOADERS[name](as_frame=True).frame
    return frame


def _describe(source: Source) -> str:
    if isinstance(source, CsvSource | ParquetSource):
        return f"{source.kind} {redact_url(source.path)}"
    if isinstance(source, SqlSource):
        if source.connection is not None:
            return f"sql connection {source.connection}"
        return f"sql {masked_url(source.url or '')}"
    if isinstance(source, SklearnSource):
        return f"sklearn {source.dataset}"
    return "ingested rows from the new-data webhook"


def _describe_window(window: Window, *, ingested: bool) -> str:
    if window.last_rows is not None:
        return f"last {window.last_rows} rows"
    by = window.column or ("arrival time" if ingested else "(no column set)")
    return f"last {window.last_days:g} days by {by}"
