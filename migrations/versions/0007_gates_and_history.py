"""Gates and history: forced promotions in the ledger, archived pipelines, ids never reused

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 20:50:00.000000

- promotions: `forced` and `gate_reason`, the record of a person overriding a gate.
- pipelines: `archived_at`; a name is unique among live pipelines only (a partial unique
  index replaces the unique constraint), so a re-created name starts a new history.
- model_versions: `artifact_purged_at`, set when an admin purges an archived pipeline's files.
- On SQLite, pipelines, runs, model_versions, promotions and audit_log are rebuilt with
  AUTOINCREMENT, so an id is never handed out twice (PostgreSQL sequences never reuse one).
  migrations/env.py turns foreign keys off while tables are rebuilt: dropping the old table
  would otherwise delete its rows first and cascade that to every table that references it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEVER_REUSED = ("pipelines", "runs", "model_versions", "promotions", "audit_log")
LIVE_NAME = "uq_pipelines_live_name"
ONE_PRODUCTION = "uq_model_versions_one_production"


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _partial(where: str) -> dict[str, sa.TextClause]:
    return {"sqlite_where": sa.text(where), "postgresql_where": sa.text(where)}


def upgrade() -> None:
    # Partial indexes are dropped around the rebuild and made again: batch mode's copy of a
    # table need not keep an index's WHERE clause.
    op.drop_index(ONE_PRODUCTION, table_name="model_versions")
    for table in NEVER_REUSED:
        _rebuild(table)
    op.create_index(
        ONE_PRODUCTION,
        "model_versions",
        ["pipeline_id"],
        unique=True,
        **_partial("stage = 'production'"),
    )
    op.create_index(
        LIVE_NAME, "pipelines", ["name"], unique=True, **_partial("archived_at IS NULL")
    )


def _rebuild(table: str) -> None:
    # SQLite: always rebuild, with AUTOINCREMENT; PostgreSQL: plain ALTERs.
    with op.batch_alter_table(
        table,
        recreate="always" if _sqlite() else "auto",
        table_kwargs={"sqlite_autoincrement": True},
    ) as batch_op:
        if table == "pipelines":
            batch_op.drop_constraint("uq_pipelines_name", type_="unique")
            batch_op.add_column(
                sa.Column("archived_at", app.core.db.UTCDateTime(timezone=True), nullable=True)
            )
        if table == "model_versions":
            batch_op.add_column(
                sa.Column(
                    "artifact_purged_at", app.core.db.UTCDateTime(timezone=True), nullable=True
                )
            )
        if table == "promotions":
            batch_op.add_column(
                sa.Column("forced", sa.Boolean(), nullable=False, server_default=sa.false())
            )
            batch_op.add_column(sa.Column("gate_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    # Fails if two pipelines share a name (one archived): the old schema cannot hold that.
    op.drop_index(LIVE_NAME, table_name="pipelines")
    with op.batch_alter_table("pipelines") as batch_op:
        batch_op.drop_column("archived_at")
        batch_op.create_unique_constraint("uq_pipelines_name", ["name"])
    op.drop_index(ONE_PRODUCTION, table_name="model_versions")
    with op.batch_alter_table("model_versions") as batch_op:
        batch_op.drop_column("artifact_purged_at")
    op.create_index(
        ONE_PRODUCTION,
        "model_versions",
        ["pipeline_id"],
        unique=True,
        **_partial("stage = 'production'"),
    )
    with op.batch_alter_table("promotions") as batch_op:
        batch_op.drop_column("gate_reason")
        batch_op.drop_column("forced")
