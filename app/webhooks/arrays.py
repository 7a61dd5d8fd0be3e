"""Whole columns of a posted batch converted at once, by the cell rules of values.py.

Each function takes one column as read and whether it is numeric (None: this batch decides,
see values.py) and returns the column to store, or its first bad cells. Arrow's compute
functions settle what bodies mostly hold (numbers, words, missing values) in a few passes
over the column; anything else (a bad cell, a number with spaces round it, a timestamp, a
nested value) sends the column through values.py cell by cell, which also words every
refusal, so both paths store and refuse exactly the same things.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from app.webhooks import values
from app.webhooks.values import CSV_MISSING, MAX_ERRORS, Cell, CellError

# values.NUMBER for RE2, which Arrow uses: Python's \d is any Unicode decimal digit, \p{Nd}.
NUMBER_PATTERN = r"^[+-]?(\p{Nd}+\.?\p{Nd}*|\.\p{Nd}+)([eE][+-]?\p{Nd}+)?$"
_MISSING = pa.array(sorted(CSV_MISSING), pa.string())


@dataclass(frozen=True)
class Converted:
    """A column ready to store, or (array None) its first bad cells as (row, why)."""

    array: pa.Array | None
    errors: list[tuple[int, str]] = field(default_factory=list)


def from_text(text: pa.Array, numeric: bool | None) -> Converted:
    """A CSV column: text, with the cells that are exactly a missing-value word already null."""
    if text.null_count == len(text):
        return Converted(pa.nulls(len(text)))
    if numeric and (numbers := _numbers(text)) is not None:
        return Converted(numbers)
    return _read_text(text, numeric)


def from_values(cells: Sequence[Any], numeric: bool | None) -> Converted:
    """A JSON column: the rows' values (None where a row left the column out)."""
    # Only columns of one plain kind go to Arrow: its inference would read True as 1.0
    # next to a float, and nested values as structs.
    kinds = set(map(type, cells)) - {type(None)}
    if not kinds:
        return Converted(pa.nulls(len(cells)))
    if kinds <= {int, float} or kinds == {str} or kinds == {bool}:
        try:
            array = pa.array(cells)
        except (pa.ArrowException, OverflowError):
            return from_cells(cells, numeric)  # an integer past int64
        return from_typed(array, numeric, lambda: cells)
    return from_cells(cells, numeric)


def from_typed(
    array: pa.Array, numeric: bool | None, cells: Callable[[], Sequence[Any]]
) -> Converted:
    """A typed column (Parquet, or JSON that Arrow typed); `cells` are its Python values."""
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if array.null_count == len(array):
        return Converted(pa.nulls(len(array)))
    if numeric is None:
        numeric = _mostly_numbers(array)
    fast = _typed_numbers(array) if numeric else _typed_categories(array)
    if fast is None:
        return from_cells(cells(), numeric)
    # NaN is missing: a column of only NaN is an empty one.
    return Converted(pa.nulls(len(fast)) if fast.null_count == len(fast) else fast)


def from_cells(cells: Sequence[Any], numeric: bool | None) -> Converted:
    """The column cell by cell, by values.py's rules."""
    if numeric is None:
        numeric = values.mostly_numbers(cells)
    stored: list[Cell] = []
    errors: list[tuple[int, str]] = []
    for row, value in enumerate(cells):
        try:
            stored.append(values.cell(value, numeric))
        except CellError as error:
            errors.append((row, str(error)))
            if len(errors) == MAX_ERRORS:
                break
    if errors:
        return Converted(None, errors)
    return Converted(_number_array(stored) if numeric else _category_array(stored))


def _read_text(text: pa.Array, numeric: bool | None) -> Converted:
    # The exact reading: values.csv_cell strips a cell before it looks for a missing word or
    # a number, and keeps a word as it was sent.
    trimmed = pc.utf8_trim_whitespace(text)
    missing = pc.or_(pc.is_null(text), pc.is_in(trimmed, value_set=_MISSING))
    spelled = pc.fill_null(pc.match_substring_regex(trimmed, NUMBER_PATTERN), False)
    number = pc.and_not(spelled, missing)
    numbers, blanks = _count(number), _count(missing)
    if blanks == len(text):
        return Converted(pa.nulls(len(text)))
    if numeric is None:
        numeric = numbers > len(text) - blanks - numbers
    if numeric and numbers + blanks == len(text):
        parsed = _numbers(pc.if_else(number, trimmed, pa.scalar(None, pa.string())))
        if parsed is not None:
            return Converted(parsed)
    elif not numeric and numbers == 0:
        return Converted(pc.if_else(missing, pa.scalar(None, pa.string()), text))
    cells = [None if cell is None else values.csv_cell(cell) for cell in text.to_pylist()]
    return from_cells(cells, numeric)


def _numbers(text: pa.Array) -> pa.Array | None:
    """int64 if every cell spells an integer, else float64; None unless all are finite numbers.

    Arrow's parser reads what values.NUMBER spells (ASCII digits) plus inf and nan, which the
    finite check turns away; it refuses spaces, words and hex, and a + sign on an integer.
    """
    if text.null_count == len(text):
        return pa.nulls(len(text))
    try:
        floats = text.cast(pa.float64())
    except pa.ArrowInvalid:
        return None
    if _count(pc.is_finite(floats)) != len(text) - text.null_count:
        return None
    if any(_any(pc.match_substring(text, mark)) for mark in (".", "e", "E")):
        return floats
    try:
        return text.cast(pa.int64())
    except pa.ArrowInvalid:
        return None


def _typed_numbers(array: pa.Array) -> pa.Array | None:
    kind = array.type
    if pa.types.is_integer(kind):
        try:
            return array.cast(pa.int64())
        except pa.ArrowInvalid:
            return None  # a uint64 past int64
    if pa.types.is_floating(kind):
        floats = array.cast(pa.float64())
        if _infinities(floats):
            return None  # refused, cell by cell
        return pc.if_else(pc.is_nan(floats), pa.scalar(None, pa.float64()), floats)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _numbers(pc.utf8_trim_whitespace(array.cast(pa.string())))
    return None


def _typed_categories(array: pa.Array) -> pa.Array | None:
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return array.cast(pa.string())
    if pa.types.is_boolean(kind):
        return array
    if pa.types.is_integer(kind):
        return array.cast(pa.string())  # as str() writes an int; floats go cell by cell
    return None


def _number_array(stored: list[Cell]) -> pa.Array:
    present = [value for value in stored if value is not None]
    if not present:
        return pa.nulls(len(stored))
    if all(isinstance(value, int) for value in present):
        try:
            return pa.array(stored, pa.int64())
        except (pa.ArrowInvalid, OverflowError):
            pass  # past int64: stored as a float, as pandas would have read it
    return pa.array([None if v is None else float(v) for v in stored], pa.float64())


def _category_array(stored: list[Cell]) -> pa.Array:
    kinds = {type(value) for value in stored if value is not None}
    if not kinds:
        return pa.nulls(len(stored))
    if kinds == {str}:
        return pa.array(stored, pa.string())
    if kinds == {bool}:
        return pa.array(stored, pa.bool_())
    # A column of one type per batch: numbers among words are kept as training's one-hot
    # encoder reads every category anyway, as text (str(3) == "3", str(True) == "True").
    return pa.array([None if v is None else str(v) for v in stored], pa.string())


def _mostly_numbers(array: pa.Array) -> bool:
    """values.mostly_numbers for a typed column with a value: all of it is numbers, or none."""
    if pa.types.is_floating(array.type):
        floats = array.cast(pa.float64())
        return _count(pc.invert(pc.is_nan(floats))) > 0  # NaN counts neither way
    return _is_number_type(array.type)


def _is_number_type(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
    )


def _infinities(floats: pa.Array) -> int:
    return _count(pc.is_inf(floats))


def _count(mask: pa.Array) -> int:
    return int(pc.sum(mask).as_py() or 0)


def _any(mask: pa.Array) -> bool:
    return pc.any(mask).as_py() is True
