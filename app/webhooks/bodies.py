"""Reading a posted body: JSON records as sent, CSV as text columns, Parquet as typed ones."""

from __future__ import annotations

import codecs
import csv
import io
import json
from dataclasses import dataclass
from itertools import chain
from typing import Any

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from app.core.errors import InvalidInput, field_error
from app.core.problems import summary
from app.webhooks.errors import UnsupportedMediaType
from app.webhooks.values import CSV_MISSING, MAX_ERRORS, NonFinite

PARQUET_MAGIC = b"PAR1"
PARQUET_TYPES = frozenset({"application/vnd.apache.parquet", "application/x-parquet"})
CSV_TYPES = frozenset({"text/csv", "application/csv"})
ACCEPTED = "application/json, text/csv or application/vnd.apache.parquet"
# The header is read as row 0 (and compared with the csv module's reading of it); quoted
# values may hold newlines, as the csv module allows.
CSV_READ = pcsv.ReadOptions(autogenerate_column_names=True)
CSV_PARSE = pcsv.ParseOptions(newlines_in_values=True)


@dataclass(frozen=True)
class RawBatch:
    """Parsed rows before any check: an Arrow table (CSV as text, Parquet typed) or JSON rows.

    JSON rows may each lack or add keys; tabular rows cannot.
    """

    columns: list[str]
    row_count: int
    table: pa.Table | None = None
    records: list[dict[str, Any]] | None = None
    # CSV: every cell is text still to be read as a number, a missing value or a word.
    text: bool = False

    @property
    def tabular(self) -> bool:
        return self.records is None


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
    if not batch.row_count:
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
    columns = dict.fromkeys(chain.from_iterable(records))
    return RawBatch(list(columns), len(records), records=records)


def _read_csv(body: bytes) -> RawBatch:
    # The csv module defined what a posted CSV means before pyarrow read them; it still
    # reads the header, and the whole body whenever pyarrow's reading differs or fails.
    text = _utf8(body)
    header = _csv_header(text)
    names = [name.strip() for name in header]
    _check_names(names)
    table = _arrow_csv(body, header) or _python_csv(text, len(header))
    return RawBatch(names, table.num_rows, table=table.rename_columns(names), text=True)


def _utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _unreadable_csv(exc) from None


def _csv_header(text: str) -> list[str]:
    try:
        for line in csv.reader(io.StringIO(text, newline="")):
            if line:  # csv yields [] for blank lines
                return line
    except csv.Error as exc:
        raise _unreadable_csv(exc) from None
    raise invalid([field_error("body.columns", "no header row: the first line names columns")])


def _arrow_csv(body: bytes, header: list[str]) -> pa.Table | None:
    """Every column as text (missing-value words null), or None if pyarrow reads it otherwise."""
    names = [f"f{i}" for i in range(len(header))]
    convert = pcsv.ConvertOptions(
        column_types=dict.fromkeys(names, pa.string()), null_values=sorted(CSV_MISSING)
    )
    data = pa.py_buffer(body)
    if body.startswith(codecs.BOM_UTF8):
        data = data.slice(len(codecs.BOM_UTF8))
    try:
        table = pcsv.read_csv(
            pa.BufferReader(data),
            read_options=CSV_READ,
            parse_options=CSV_PARSE,
            convert_options=convert,
        )
    except pa.ArrowInvalid:
        return None  # mostly a row of another length: the csv module names each one
    first = [column[0].as_py() for column in table.columns] if table.num_rows else []
    if first != [None if name in CSV_MISSING else name for name in header]:
        return None
    return table.slice(1)


def _python_csv(text: str, width: int) -> pa.Table:
    try:
        lines = [line for line in csv.reader(io.StringIO(text, newline="")) if line]
    except csv.Error as exc:
        raise _unreadable_csv(exc) from None
    errors = [
        field_error(f"body.records.{i}", f"has {len(line)} values; the header has {width}")
        for i, line in enumerate(lines[1:])
        if len(line) != width
    ]
    if errors:
        raise invalid(errors)
    columns = zip(*lines[1:], strict=True) if len(lines) > 1 else [()] * width
    arrays = [
        pa.array([None if c in CSV_MISSING else c for c in cells], pa.string()) for cells in columns
    ]
    return pa.table(arrays, names=[f"f{i}" for i in range(width)])


def _unreadable_csv(exc: Exception) -> InvalidInput:
    return invalid([field_error("body", f"is not a readable UTF-8 CSV: {exc}")])


def _read_parquet(body: bytes) -> RawBatch:
    try:
        table = pq.read_table(pa.BufferReader(body))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise invalid([field_error("body", f"is not a readable Parquet file: {exc}")]) from None
    columns = [str(name) for name in table.column_names]
    _check_names(columns)
    return RawBatch(columns, table.num_rows, table=table)


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
