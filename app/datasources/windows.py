"""Windows: keep only the newest rows of a loaded frame (`last_rows` or `last_days`)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from app.core.errors import SourceError
from app.core.time import utcnow
from app.spec.schema import Window

_SHOWN_COLUMNS = 20


def apply_window(frame: pd.DataFrame, window: Window | None) -> pd.DataFrame:
    """The rows of `frame` that `window` keeps, in their original order."""
    if window is None:
        return frame
    if window.last_rows is not None:
        return frame.tail(window.last_rows).reset_index(drop=True)
    if window.column is None:
        raise SourceError(
            "window.last_days needs window.column: the timestamp column that dates each row"
        )
    return rows_since(frame, window.column, days_ago(window))


def days_ago(window: Window) -> datetime:
    """The start of a `last_days` window, on the application clock."""
    return utcnow() - timedelta(days=window.last_days or 0)


def rows_since(frame: pd.DataFrame, column: str, start: datetime) -> pd.DataFrame:
    """Rows whose `column` is at or after `start`; rows without a timestamp are dropped."""
    if frame.columns.empty:
        return frame  # nothing was loaded, so there is no column to check
    # No upper bound: rows stamped a little in the future (clock skew) are still recent data.
    keep = timestamps(frame, column) >= start
    return frame[keep].reset_index(drop=True)


def timestamps(frame: pd.DataFrame, column: str) -> pd.Series:
    """`column` as UTC timestamps (naive values are taken as UTC)."""
    if column not in frame.columns:
        shown = ", ".join(map(str, frame.columns[:_SHOWN_COLUMNS]))
        raise SourceError(f"Window column {column!r} is not in the data (columns: {shown})")
    values = frame[column]
    if is_bool_dtype(values) or is_numeric_dtype(values):
        raise SourceError(f"Window column {column!r} holds numbers, not timestamps")
    try:
        parsed = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
    except (TypeError, ValueError) as exc:
        raise SourceError(f"Window column {column!r} does not hold timestamps: {exc}") from exc
    bad = values.notna() & parsed.isna()
    if bad.any():
        example = values[bad].iloc[0]
        raise SourceError(
            f"Window column {column!r} has a value that is not an ISO 8601 timestamp: {example!r}"
        )
    return parsed
