"""A posted body becomes a stored DataBatch: read, columns checked, values made plain."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
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
    first: list[Any] | None = session.scalars(
        select(DataBatch.records)
        .where(DataBatch.pipeline_id == pipeline_id)
        .order_by(DataBatch.id)
        .limit(1)
    ).first()
    return values.numeric_in(first or [])
