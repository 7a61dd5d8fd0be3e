"""Run roll-ups for /metrics: counts and durations of terminal runs, a row per series

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 21:00:00.000000

Existing runs are counted by the service's roll-up job after the upgrade (in batches, a
transaction each), not here: an upgrade stays quick however long the history.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BUCKETS = ("le_1", "le_5", "le_15", "le_60", "le_300", "le_900", "le_3600", "le_14400")


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("rolled_up", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.create_index(
        "ix_runs_uncounted",
        "runs",
        ["pipeline_id", "status", "trigger_kind"],
        unique=False,
        sqlite_where=sa.text("rolled_up = 0"),
        postgresql_where=sa.text("rolled_up = false"),
    )
    op.create_index(
        "ix_runs_uncounted_id",
        "runs",
        ["id"],
        unique=False,
        sqlite_where=sa.text("rolled_up = 0"),
        postgresql_where=sa.text("rolled_up = false"),
    )
    op.create_table(
        "run_rollups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pipeline_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("trigger_kind", sa.String(length=32), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("timed", sa.Integer(), nullable=False),
        sa.Column("duration_sum", sa.Float(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in BUCKETS),
        sa.ForeignKeyConstraint(
            ["pipeline_id"],
            ["pipelines.id"],
            name=op.f("fk_run_rollups_pipeline_id_pipelines"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_rollups")),
        sa.UniqueConstraint(
            "pipeline_id",
            "status",
            "trigger_kind",
            name=op.f("uq_run_rollups_pipeline_id_status_trigger_kind"),
        ),
    )


def downgrade() -> None:
    op.drop_table("run_rollups")
    op.drop_index("ix_runs_uncounted_id", table_name="runs")
    op.drop_index("ix_runs_uncounted", table_name="runs")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("rolled_up")
