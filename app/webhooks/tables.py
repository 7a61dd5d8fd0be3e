"""A read and column-checked batch becomes one Arrow table, each column converted whole."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from operator import itemgetter
from typing import Any

import pyarrow as pa

from app.webhooks import arrays, values
from app.webhooks.arrays import Converted
from app.webhooks.bodies import RawBatch, invalid
from app.webhooks.values import MAX_ERRORS


def build(raw: RawBatch, first_batch: dict[str, bool]) -> pa.Table:
    """The table to store; InvalidInput naming the first bad cells, row by row.

    The first batch decides a column's kind (`first_batch`, True: numbers); a column it left
    empty, this batch decides.
    """
    stored: list[pa.Array] = []
    # (row, column position, column, why): sorted, the first MAX_ERRORS are the ones a
    # row-by-row check would have met first, since each column reports its first ones.
    errors: list[tuple[int, int, str, str]] = []
    for position, (column, converted) in enumerate(_converted(raw, first_batch)):
        if converted.array is not None:
            stored.append(converted.array)
        errors += [(row, position, column, why) for row, why in converted.errors]
    if errors:
        errors.sort()
        raise invalid([values.at(row, column, why) for row, _, column, why in errors[:MAX_ERRORS]])
    return pa.table(stored, names=raw.columns)


def _converted(raw: RawBatch, first_batch: dict[str, bool]) -> Iterator[tuple[str, Converted]]:
    if raw.records is not None:
        for column, cells in zip(raw.columns, _json_columns(raw), strict=True):
            yield column, arrays.from_values(cells, first_batch.get(column))
        return
    assert raw.table is not None
    for column, chunks in zip(raw.columns, raw.table.columns, strict=True):
        array = chunks.combine_chunks()
        numeric = first_batch.get(column)
        if raw.text:
            yield column, arrays.from_text(array, numeric)
        else:
            yield column, arrays.from_typed(array, numeric, array.to_pylist)


def _json_columns(raw: RawBatch) -> list[Sequence[Any]]:
    """Each column's values in row order; None where a row leaves the column out."""
    assert raw.records is not None
    records, columns = raw.records, raw.columns
    if not columns:
        return []
    try:
        # Most bodies give every row every column: one C-level pass picks them all out.
        rows = list(map(itemgetter(*columns), records))
    except KeyError:
        return [[record.get(column) for record in records] for column in columns]
    if len(columns) == 1:
        return [rows]
    return list(zip(*rows, strict=True))
