"""Cell values of a posted batch: made JSON-safe, and checked against each column's type.

A column is numeric when the pipeline's first batch had only numbers in it; for a column the
first batch did not fill (or for the first batch itself), when most of this batch's values are
numbers. A numeric column then takes numbers, numeric strings and nulls only, so training
never sees a stray word turn a number column into a category.

These are the rules cell by cell; `arrays.py` applies them to whole columns at once and comes
back here for the cells it cannot settle that way (and to word each refusal).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from app.core.errors import field_error

MAX_ERRORS = 20
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
INTEGER = re.compile(r"[+-]?\d+")
Cell = None | bool | int | float | str
# What pandas' read_csv reads as missing, so a posted CSV reads like a CSV source does.
CSV_MISSING = frozenset(
    {"", "#N/A", "#NA", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
)


@dataclass(frozen=True)
class NonFinite:
    """A JSON NaN, Infinity or -Infinity: Python's parser accepts them, JSON does not."""

    literal: str


class CellError(ValueError):
    """A value that cannot be stored; the message says what to send instead."""


def parse_number(text: str) -> int | float | None:
    """The number a string spells (CSV cells, numeric strings in JSON), or None."""
    if text.isascii() and text.isdigit():
        return int(text)  # the common case, without the regular expressions
    text = text.strip()
    if not NUMBER.fullmatch(text):
        return None
    return int(text) if INTEGER.fullmatch(text) else float(text)


def csv_cell(text: str) -> Cell:
    """A CSV cell as read: missing, a number, or the text as sent."""
    if text.strip() in CSV_MISSING:
        return None
    number = parse_number(text)
    return text if number is None else number


def cell(value: Any, numeric: bool) -> Cell:
    """The value stored for `value` in a numeric or a categorical column; CellError if none."""
    plain_value = plain(value)
    return numeric_cell(plain_value) if numeric else plain_value


def is_number(value: object) -> bool:
    # bool is an int to Python, but a category to training (see training/preprocessing.py).
    return isinstance(value, int | float) and not isinstance(value, bool)


def plain(value: Any) -> Cell:
    """A JSON-safe value: numpy and pandas scalars unwrapped, times as ISO 8601, NaN as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return _finite(value)
    return _plain_other(value)


def _plain_other(value: Any) -> Cell:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return None if value.is_nan() else _finite(float(value))
    if isinstance(value, NonFinite):
        raise CellError(f"{value.literal} is not valid JSON; send null for a missing value")
    if isinstance(value, dict | list | tuple):
        raise CellError("nested objects and lists are not supported; send one plain value")
    if isinstance(value, bytes | bytearray):
        raise CellError("binary values are not supported")
    raise CellError(f"unsupported value of type {type(value).__name__}")


def _finite(value: float) -> float | None:
    if math.isnan(value):
        return None
    if math.isinf(value):
        raise CellError("is not a finite number")
    return value


def numeric_cell(value: Cell) -> Cell:
    """A value of a numeric column: a number or None; numeric strings are read as numbers."""
    if value is None or is_number(value):
        return value
    if isinstance(value, str) and (number := parse_number(value)) is not None:
        return _finite(float(number)) if isinstance(number, float) else number
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    raise CellError(f"expected a number (this column is numeric), got {shown}")


def mostly_numbers(values: Iterable[Any]) -> bool:
    """More than half of the non-null values are numbers (bools and strings are not)."""
    numbers = others = 0
    for value in values:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if is_number(value) or isinstance(value, np.number | Decimal):
            numbers += 1
        else:
            others += 1
    return numbers > others


def at(row: int, column: str, message: str) -> dict[str, str]:
    """The 422 entry for one bad cell."""
    return field_error(f"body.records.{row}.{column}", message)
