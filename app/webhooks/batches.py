"""A posted body becomes a stored DataBatch: read, columns checked, values made plain."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.datasources import stored
from app.datasources.models import DataBatch
from app.pipelines.models import Pipeline
from app.pipelines.service import spec_of
from app.webhooks import bodies, columns, tables


def store(
    *, session: Session, pipeline: Pipeline, body: bytes, content_type: str | None
) -> DataBatch:
    """Store the body's rows as a new batch; InvalidInput (nothing stored) if any is wrong."""
    raw = bodies.read(body, content_type)
    rules = columns.rules_for(spec_of(pipeline), _newest_columns(session, pipeline.id))
    columns.check(raw, rules)
    table = tables.build(raw, _first_batch_kinds(session, pipeline.id))
    batch = DataBatch(
        pipeline_id=pipeline.id,
        row_count=table.num_rows,
        columns=raw.columns,
        parquet=stored.encode(table),
    )
    session.add(batch)
    session.flush()
    return batch


def _newest_columns(session: Session, pipeline_id: int) -> list[str] | None:
    newest: list[Any] | None = session.scalars(
        select(DataBatch.columns)
        .where(DataBatch.pipeline_id == pipeline_id)
        .order_by(DataBatch.id.desc())
        .limit(1)
    ).first()
    return None if newest is None else [str(column) for column in newest]


def _first_batch_kinds(session: Session, pipeline_id: int) -> dict[str, bool]:
    first_id = session.scalar(
        select(func.min(DataBatch.id)).where(DataBatch.pipeline_id == pipeline_id)
    )
    if first_id is None:
        return {}
    # Batches never change once stored, so the first batch's column kinds are worked out
    # once per process instead of decoding its rows on every delivery.
    key = (pipeline_id, first_id)
    if (kinds := _FIRST_KINDS.get(key)) is None:
        data = session.scalar(select(DataBatch.parquet).where(DataBatch.id == first_id))
        kinds = {} if data is None else stored.numeric_kinds(stored.decode(data))
        if len(_FIRST_KINDS) >= MAX_CACHED_PIPELINES:
            _FIRST_KINDS.pop(next(iter(_FIRST_KINDS)))
        _FIRST_KINDS[key] = kinds
    return kinds


MAX_CACHED_PIPELINES = 10_000
_FIRST_KINDS: dict[tuple[int, int], dict[str, bool]] = {}
