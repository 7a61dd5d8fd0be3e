"""The `ingested` source: rows that other services posted to the pipeline's webhook."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.datasources import stored
from app.datasources.models import DataBatch
from app.datasources.windows import days_ago, rows_since
from app.spec.schema import Window


def load_ingested(window: Window | None, *, pipeline_id: int, session: Session) -> pd.DataFrame:
    """The pipeline's posted rows in arrival order, windowed; reads only, never flushes."""
    # Autoflush would write the caller's pending objects: this loader must stay read-only.
    with session.no_autoflush:
        statement = _batches(pipeline_id, window, session)
        frame = stored.frame([stored.decode(data) for data in session.scalars(statement)])
    if window is None:
        return frame
    if window.last_rows is not None:
        return frame.tail(window.last_rows).reset_index(drop=True)
    if window.column is not None:
        return rows_since(frame, window.column, days_ago(window))
    return frame  # last_days by arrival time was applied in the query


def _batches(pipeline_id: int, window: Window | None, session: Session) -> Select[bytes]:
    # Plain columns, not entities: the rows stay out of the session's identity map.
    statement = (
        select(DataBatch.parquet).where(DataBatch.pipeline_id == pipeline_id).order_by(DataBatch.id)
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
