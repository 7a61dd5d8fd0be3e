"""Scale out: artifacts in the database, and the worker that executed each run

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 20:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "artifact_chunks",
        sa.Column("uri", sa.String(length=1024), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("uri", "seq", name=op.f("pk_artifact_chunks")),
    )
    with op.batch_alter_table("runs") as batch_op:
        batch_op.add_column(sa.Column("worker", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch_op:
        batch_op.drop_column("worker")
    op.drop_table("artifact_chunks")
