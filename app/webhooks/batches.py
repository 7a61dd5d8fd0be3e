"""A posted body becomes a stored DataBatch: read, columns checked, values made plain."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.datasources.models import DataBatch
from app.pipelines.models import Pipeline
from app.pipelines.service import spec_of
from app.webhooks import bodies, columns, values
from app.webhooks.bodies import RawBatch, invalid
from app.webhooks.values import MAX_ERRORS, Cell, CellError


def store(
    *, session: Session, pipeline: Pipeline, body: bytes, content_type: str | None
) -> DataBatch:
    """Store the body's rows as a new batch; InvalidInput (nothing stored) if any is wrong."""
    raw = bodies.read(body, content_type)
    rules = columns.rules_for(spec_of(pipeline), _newest_columns(session, pipeline.id))
    columns.check(raw, rules)
    numeric = _numeric_columns(raw, _first_batch_kinds(session, pipeline.id))
    batch = DataBatch(
        pipeline_id=pipeline.id,
        row_count=len(raw.rows),
        columns=raw.columns,
        records=_records(raw, numeric),
    )
    session.add(batch)
    session.flush()
    return batch


def _records(raw: RawBatch, numeric: set[str]) -> list[dict[str, Cell]]:
    errors: list[dict[str, str]] = []
    records: list[dict[str, Cell]] = []
    for i, row in enumerate(raw.rows):
        record: dict[str, Cell] = {}
        for column in raw.columns:
            try:
                record[column] = _cell(row.get(column), column in numeric)
            except CellError as error:
                errors.append(values.at(i, column, error))
                if len(errors) == MAX_ERRORS:
                    raise invalid(errors) from None
        records.append(record)
    if errors:
        raise invalid(errors)
    return records


def _cell(value: Any, numeric: bool) -> Cell:
    cell = values.plain(value)
    return values.numeric_cell(cell) if numeric else cell


def _numeric_columns(raw: RawBatch, first_batch: dict[str, bool]) -> set[str]:
    # The first batch decides a column's type; a column it left empty, this batch decides.
    return {
        column
        for column in raw.columns
        if first_batch.get(column)
        or (column not in first_batch and values.mostly_numbers(r.get(column) for r in raw.rows))
    }


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
    # once per process instead of decoding and scanning its rows on every delivery.
    key = (pipeline_id, first_id)
    if (kinds := _FIRST_KINDS.get(key)) is None:
        records = session.scalar(select(DataBatch.records).where(DataBatch.id == first_id))
        kinds = values.numeric_in(records or [])
        if len(_FIRST_KINDS) >= MAX_CACHED_PIPELINES:
            _FIRST_KINDS.pop(next(iter(_FIRST_KINDS)))
        _FIRST_KINDS[key] = kinds
    return kinds


MAX_CACHED_PIPELINES = 10_000
_FIRST_KINDS: dict[tuple[int, int], dict[str, bool]] = {}
