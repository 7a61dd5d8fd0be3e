"""Whole-column conversion of posted values stores and refuses exactly what the cell-by-cell
rules do, for CSV text, JSON values and typed (Parquet) columns."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.webhooks import arrays, values
from app.webhooks.arrays import Converted
from app.webhooks.values import CSV_MISSING, NonFinite

CSV_CELLS = [
    "1", "-0", "007", "+3", " 4 ", "2.5", "1.", ".5", "1e5", "-2E-3", "1e999", "inf", "nan",
    "0x10", "١٢", "12345678901234567890", "", "NA", " NA ", "null", "pro", " team", "True",
]  # fmt: skip
# What json.loads gives: never a float NaN (the NaN literal is a NonFinite), but 1e999 is inf.
JSON_VALUES: list[Any] = [
    None, 0, 3, -7, 2**70, 1.5, float("inf"), True, False, "pro", "41", " 2.5 ", "",
    {"a": 1}, [1], NonFinite("NaN"),
]  # fmt: skip
KINDS = st.sampled_from([None, True, False])


def same(fast: Converted, slow: Converted) -> None:
    assert fast.errors == slow.errors
    if slow.array is None:
        assert fast.array is None
        return
    assert fast.array is not None
    assert fast.array.type == slow.array.type
    assert [plain(v) for v in fast.array.to_pylist()] == [plain(v) for v in slow.array.to_pylist()]


def plain(value: Any) -> Any:
    # -0.0 == 0.0, but a NaN would never equal itself: stored arrays hold none.
    assert not (isinstance(value, float) and math.isnan(value))
    return value


@settings(max_examples=300, deadline=None)
@given(cells=st.lists(st.sampled_from(CSV_CELLS), min_size=1, max_size=12), numeric=KINDS)
def test_csv_columns_match_the_cell_rules(cells: list[str], numeric: bool | None) -> None:
    text = pa.array([None if c in CSV_MISSING else c for c in cells], pa.string())
    slow = arrays.from_cells([values.csv_cell(c) for c in cells], numeric)
    same(arrays.from_text(text, numeric), slow)


@settings(max_examples=300, deadline=None)
@given(cells=st.lists(st.sampled_from(JSON_VALUES), min_size=1, max_size=12), numeric=KINDS)
def test_json_columns_match_the_cell_rules(cells: list[Any], numeric: bool | None) -> None:
    same(arrays.from_values(cells, numeric), arrays.from_cells(cells, numeric))


@pytest.mark.parametrize(
    "array",
    [
        pa.array([1, None, 3], pa.uint8()),
        pa.array([2**64 - 1, 1], pa.uint64()),
        pa.array([1.5, float("nan"), None], pa.float32()),
        pa.array(["a", None, "b"]).dictionary_encode(),
        pa.array(["1", " 2 ", None], pa.large_string()),
        pa.array([True, None]),
        pa.array([None, None], pa.int64()),
        pa.array(np.array([0.5, np.nan], dtype=np.float16)),
        pa.array([Decimal("1.25"), None]),
        pa.array([datetime(2024, 6, 1, 10, tzinfo=UTC), None]),
        pa.array([[1], None]),
        pa.array([b"x", None]),
    ],
    ids=lambda array: str(array.type),
)
@pytest.mark.parametrize("numeric", [None, True, False])
def test_typed_columns_match_the_cell_rules(array: pa.Array, numeric: bool | None) -> None:
    slow = arrays.from_cells(array.to_pylist(), numeric)
    same(arrays.from_typed(array, numeric, array.to_pylist), slow)
