"""The `ingested` source: rows that other services posted to the pipeline's webhook."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from sqlalchemy import Row, Select, select
from sqlalchemy.orm import Session

from app.datasources.models import DataBatch
from app.datasources.windows import days_ago, rows_since
from app.pipelines.spec import Window

BatchRow = Row[list[Any], list[Any]]


def load_ingested(window: Window | None, *, pipeline_id: int, session: Session) -> pd.DataFrame:
    """The pipeline's posted rows in arrival order, windowed; reads only, never flushes."""
    # Autoflush would write the caller's pending objects: this loader must stay read-only.
    with session.no_autoflush:
        statement = _batches(pipeline_id, window, session)
        frame = _frame(session.execute(statement).all())
    if window is None:
        return frame
    if window.last_rows is not None:
        return frame.tail(window.last_rows).reset_index(drop=True)
    if window.column is not None:
        return rows_since(frame, window.column, days_ago(window))
    return frame  # last_days by arrival time was applied in the query


def _batches(
    pipeline_id: int, window: Window | None, session: Session
) -> Select[list[Any], list[Any]]:
    # Plain columns, not entities: the records stay out of the session's identity map.
    statement = (
        select(DataBatch.columns, DataBatch.records)
        .where(DataBatch.pipeline_id == pipeline_id)
        .order_by(DataBatch.id)
    )
    if window is None:
        return statement
    if window.last_rows is not None:
        first_id = _first_needed_batch(pipeline_id, window.last_rows, session)
        return statement.where(DataBatch.id >= first_id)
    if window.column is None:
        return statement.where(DataBatch.received_at >= days_ago(window))
    return statement


def _first_needed_batch(pipeline_id: int, rows: int, session: Session) -> int:
    """The id of the oldest batch still needed for the newest `rows` rows."""
    newest_first = (
        select(DataBatch.id, DataBatch.row_count)
        .where(DataBatch.pipeline_id == pipeline_id)
        .order_by(DataBatch.id.desc())
    )
    seen = 0
    first_id = 0
    for batch_id, row_count in session.execute(newest_first):
        first_id = batch_id
        seen += row_count
        if seen >= rows:
            break
    return first_id


def _frame(batches: Sequence[BatchRow]) -> pd.DataFrame:
    records = [record for _, batch_records in batches for record in batch_records]
    # Announced columns first, in order; then any key a record has that was not announced.
    columns = dict.fromkeys(str(name) for batch_columns, _ in batches for name in batch_columns)
    for record in records:
        columns.update(dict.fromkeys(record))
    return pd.DataFrame.from_records(records, columns=list(columns))
