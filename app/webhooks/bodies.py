"""Reading a posted body (JSON records, CSV or Parquet) into rows of column -> value."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from app.core.errors import InvalidInput, field_error
from app.core.problems import summary
from app.webhooks.errors import UnsupportedMediaType
from app.webhooks.values import MAX_ERRORS, NonFinite, parse_number

PARQUET_MAGIC = b"PAR1"
PARQUET_TYPES = frozenset({"application/vnd.apache.parquet", "application/x-parquet"})
CSV_TYPES = frozenset({"text/csv", "application/csv"})
# What pandas' read_csv reads as missing, so a posted CSV reads like a CSV source does.
CSV_MISSING = frozenset(
    {"", "#N/A", "#NA", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
)
ACCEPTED = "application/json, text/csv or application/vnd.apache.parquet"


@dataclass(frozen=True)
class RawBatch:
    """Parsed rows before any check. JSON rows may each lack or add keys; tabular rows cannot."""

    columns: list[str]
    rows: list[dict[str, Any]]
    tabular: bool


def read(body: bytes, content_type: str | None) -> RawBatch:
    """The rows of `body`, by its media type; InvalidInput when it cannot be read."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        batch = _read_json(body)
    elif media in CSV_TYPES:
        batch = _read_csv(body)
    elif media in PARQUET_TYPES or (
        media == "application/octet-stream" and body.startswith(PARQUET_MAGIC)
    ):
        batch = _read_parquet(body)
    else:
        shown = media or "no Content-Type"
        raise UnsupportedMediaType(f"Cannot read {shown}: send {ACCEPTED}")
    if not batch.rows:
        raise invalid([field_error("body.records", "is empty: send at least one row")])
    return batch


def invalid(errors: list[dict[str, str]]) -> InvalidInput:
    """The 422 for a batch, listing its first problems."""
    return InvalidInput(summary(errors), errors=errors[:MAX_ERRORS])


def _read_json(body: bytes) -> RawBatch:
    try:
        document = json.loads(body, parse_constant=NonFinite)
    except (ValueError, RecursionError) as exc:
        raise invalid([field_error("body", f"is not valid JSON: {exc}")]) from None
    if not isinstance(document, dict):
        raise invalid([field_error("body", 'must be an object: {"records": [...]}')])
    errors = [field_error(f"body.{key}", "unknown field") for key in document if key != "records"]
    records = document.get("records")
    if not isinstance(records, list):
        errors.append(field_error("body.records", "required: a list of row objects"))
        raise invalid(errors)
    errors += [
        field_error(f"body.records.{i}", "must be an object of column: value")
        for i, record in enumerate(records)
        if not isinstance(record, dict)
    ]
    if errors:
        raise invalid(errors)
    columns = dict.fromkeys(key for record in records for key in record)
    return RawBatch(list(columns), records, tabular=False)


def _read_csv(body: bytes) -> RawBatch:
    try:
        lines = list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise invalid([field_error("body", f"is not a readable UTF-8 CSV: {exc}")]) from None
    lines = [line for line in lines if line]  # csv yields [] for blank lines
    if not lines:
        raise invalid([field_error("body.columns", "no header row: the first line names columns")])
    header = [name.strip() for name in lines[0]]
    _check_names(header)
    errors = [
        field_error(f"body.records.{i}", f"has {len(line)} values; the header has {len(header)}")
        for i, line in enumerate(lines[1:])
        if len(line) != len(header)
    ]
    if errors:
        raise invalid(errors)
    rows = [dict(zip(header, map(_csv_cell, line), strict=True)) for line in lines[1:]]
    return RawBatch(header, rows, tabular=True)


def _csv_cell(text: str) -> Any:
    if text.strip() in CSV_MISSING:
        return None
    number = parse_number(text)
    return text if number is None else number


def _read_parquet(body: bytes) -> RawBatch:
    try:
        table = pq.read_table(pa.BufferReader(body))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise invalid([field_error("body", f"is not a readable Parquet file: {exc}")]) from None
    columns = [str(name) for name in table.column_names]
    _check_names(columns)
    rows: list[dict[str, Any]] = table.to_pylist()
    return RawBatch(columns, rows, tabular=True)


def _check_names(names: list[str]) -> None:
    seen: set[str] = set()
    errors: list[dict[str, str]] = []
    for name in names:
        if not name:
            errors.append(field_error("body.columns", "a column has no name"))
        elif name in seen:
            errors.append(field_error("body.columns", f"column {name!r} appears twice"))
        seen.add(name)
    if errors:
        raise invalid(errors)
