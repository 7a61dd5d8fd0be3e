"""Data batches keep their rows as one Parquet file instead of a JSON document of records

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 09:00:00.000000
"""

from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The table as this revision knows it; the ORM model may move on.
batches = sa.table(
    "data_batches",
    sa.column("id", sa.Integer()),
    sa.column("columns", sa.JSON()),
    sa.column("records", sa.JSON()),
    sa.column("parquet", sa.LargeBinary()),
)


def upgrade() -> None:
    with op.batch_alter_table("data_batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parquet", sa.LargeBinary(), nullable=True))
    connection = op.get_bind()
    for batch_id, names, records in _rows(connection, batches.c.columns, batches.c.records):
        data = _parquet(list(names or []), list(records or []))
        connection.execute(batches.update().where(batches.c.id == batch_id).values(parquet=data))
    with op.batch_alter_table("data_batches", schema=None) as batch_op:
        batch_op.alter_column("parquet", existing_type=sa.LargeBinary(), nullable=False)
        batch_op.drop_column("records")


def downgrade() -> None:
    with op.batch_alter_table("data_batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("records", sa.JSON(), nullable=True))
    connection = op.get_bind()
    for batch_id, _, data in _rows(connection, batches.c.columns, batches.c.parquet):
        records = pq.read_table(pa.BufferReader(data)).to_pylist()
        connection.execute(batches.update().where(batches.c.id == batch_id).values(records=records))
    with op.batch_alter_table("data_batches", schema=None) as batch_op:
        batch_op.alter_column("records", existing_type=sa.JSON(), nullable=False)
        batch_op.drop_column("parquet")


def _rows(connection: Connection, *columns: Any) -> Iterator[Any]:
    # One batch in memory at a time: a batch may be tens of megabytes.
    ids = connection.scalars(sa.select(batches.c.id).order_by(batches.c.id)).all()
    for batch_id in ids:
        row = connection.execute(sa.select(*columns).where(batches.c.id == batch_id)).one()
        yield (batch_id, *row)


def _parquet(names: list[str], records: list[dict[str, Any]]) -> bytes:
    """The stored records as the webhook now stores rows: one type per column."""
    for record in records:
        names += [name for name in record if name not in names]
    arrays = [_array([record.get(name) for record in records]) for name in names]
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(arrays, names=names), sink, compression="lz4")
    data: bytes = sink.getvalue().to_pybytes()
    return data


def _array(cells: list[Any]) -> pa.Array:
    # Stored records were already plain (None, bool, int, float, str), one kind per column
    # except where a category column held numbers as well as words.
    present = [cell for cell in cells if cell is not None]
    if not present:
        return pa.nulls(len(cells))
    if all(isinstance(c, int | float) and not isinstance(c, bool) for c in present):
        try:
            return pa.array(cells, pa.int64() if all(isinstance(c, int) for c in present) else None)
        except (pa.ArrowInvalid, OverflowError):
            return pa.array([None if c is None else float(c) for c in cells], pa.float64())
    if all(isinstance(c, bool) for c in present) or all(isinstance(c, str) for c in present):
        return pa.array(cells)
    return pa.array([None if c is None else str(c) for c in cells], pa.string())
