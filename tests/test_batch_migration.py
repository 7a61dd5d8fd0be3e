"""Migration 0003 turns batches stored as JSON records into Parquet, and back, on both backends;
the `ingested` source reads the converted rows as it read the records."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.orm import Session

from app.core import migrate
from app.datasources.ingested import load_ingested
from tests.conftest import BACKENDS, create_pg_database, drop_pg_database

NOW = datetime(2024, 6, 1, tzinfo=UTC)
pipelines = sa.table(
    "pipelines",
    *(sa.column(name) for name in ("id", "name", "paused", "webhook_secret", "generation")),
    sa.column("spec", sa.JSON()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)
batches = sa.table(
    "data_batches",
    *(sa.column(name) for name in ("id", "pipeline_id", "received_at", "row_count")),
    sa.column("columns", sa.JSON()),
    sa.column("records", sa.JSON()),
)
# As the webhook stored them before 0003: plain values, a row without a key it announced,
# a category column holding a number among its words, a column nobody filled.
OLD_BATCHES: list[tuple[list[str], list[dict[str, Any]]]] = [
    (
        ["age", "spend", "plan", "empty"],
        [
            {"age": 31, "spend": 50.5, "plan": "pro", "empty": None},
            {"age": 44, "spend": None, "plan": 3, "empty": None},
        ],
    ),
    (["age", "spend", "plan", "empty"], [{"age": None, "spend": 2, "plan": True}]),
]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    created = create_pg_database()
    yield created
    drop_pg_database(created)


def store_old_batches(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            pipelines.insert().values(
                id=1,
                name="old",
                spec={},
                paused=False,
                webhook_secret="s",
                generation=1,
                created_at=NOW,
                updated_at=NOW,
            )
        )
        for i, (names, records) in enumerate(OLD_BATCHES, start=1):
            connection.execute(
                batches.insert().values(
                    id=i,
                    pipeline_id=1,
                    received_at=NOW,
                    row_count=len(records),
                    columns=names,
                    records=records,
                )
            )


def test_json_batches_become_parquet_and_come_back(url: str) -> None:
    config = migrate.alembic_config(url)
    command.upgrade(config, "0002")
    engine = sa.create_engine(url)
    try:
        store_old_batches(engine)
        command.upgrade(config, "0003")
        with Session(engine) as session:
            frame = load_ingested(None, pipeline_id=1, session=session)
        command.downgrade(config, "0002")
        with engine.connect() as connection:
            restored = connection.scalars(sa.select(batches.c.records).order_by(batches.c.id))
            records = [list(r) for r in restored]
    finally:
        engine.dispose()
    expected = pd.DataFrame(
        {
            "age": [31.0, 44.0, None],
            "spend": [50.5, None, 2.0],
            # Categories are stored as text, as training reads them; a batch of only
            # true/false keeps its booleans.
            "plan": pd.Series(["pro", "3", True], dtype=object),
            "empty": [None, None, None],
        }
    )
    pd.testing.assert_frame_equal(frame, expected)
    assert records == [
        [
            {"age": 31, "spend": 50.5, "plan": "pro", "empty": None},
            {"age": 44, "spend": None, "plan": "3", "empty": None},
        ],
        [{"age": None, "spend": 2, "plan": True, "empty": None}],
    ]
