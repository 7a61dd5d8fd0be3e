"""How a data batch's rows are kept: one small Parquet file per batch, read back as a frame.

Each column has one Arrow type per batch: int64 or float64 for numbers, string or bool for
categories, null when the batch left it empty.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# LZ4 is a third of the cost of zstd to write for nearly the same size on numeric data.
COMPRESSION = "lz4"


def encode(table: pa.Table) -> bytes:
    """The table as Parquet bytes."""
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression=COMPRESSION,
        # Dictionaries pay off for categories and small integers; measured floats rarely
        # repeat, and trying them costs more than the rest of the write.
        use_dictionary=[f.name for f in table.schema if not pa.types.is_floating(f.type)],
        write_statistics=False,
    )
    data: bytes = sink.getvalue().to_pybytes()
    return data


def decode(data: bytes) -> pa.Table:
    """The table that `encode` wrote."""
    return pq.read_table(pa.BufferReader(data))


def frame(tables: Sequence[pa.Table]) -> pd.DataFrame:
    """The tables' rows in order, as one frame; columns in order of first appearance."""
    if not tables:
        return pd.DataFrame()
    try:
        # Permissive: int64 and float64 batches make float64, an empty (null) column takes
        # the other batches' type, a column some batches lack is null there.
        whole: pd.DataFrame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        names = dict.fromkeys(name for table in tables for name in table.column_names)
        return pd.DataFrame({name: _series(name, tables) for name in names})
    return whole


def _series(name: str, tables: Sequence[pa.Table]) -> pd.Series:
    parts = [
        table.select([name])
        if name in table.column_names
        else pa.table({name: pa.nulls(table.num_rows)})
        for table in tables
    ]
    try:
        series: pd.Series = (
            pa.concat_tables(parts, promote_options="permissive").column(name).to_pandas()
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Batches that disagree on this column (words in one, true/false in another):
        # pandas keeps both kinds of value, as objects.
        pieces: list[pd.Series] = [part.column(name).to_pandas() for part in parts]
        return pd.concat(pieces, ignore_index=True)
    return series


def numeric_kinds(table: pa.Table) -> dict[str, bool]:
    """Per column with a value: True if it holds numbers (stored batches have one type each)."""
    return {
        name: pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
        for name, column in zip(table.column_names, table.columns, strict=True)
        if column.null_count < len(column)
    }
