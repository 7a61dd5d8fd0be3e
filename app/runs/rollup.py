"""Run counts and durations for /metrics, aggregated in SQL and rolled up as runs end.

A terminal run never changes again, so it can be counted once: a housekeeping job (on every
replica) aggregates a batch of uncounted terminal runs in SQL, adds the sums to run_rollups
and marks the runs counted, all in one transaction. A scrape adds run_rollups to the same
aggregate over the runs not counted yet, in one statement (one snapshot): it reads a row per
series plus the few recent runs, however long the history, and it is exact whichever replica
answers and however far the job has got.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Row,
    Select,
    and_,
    case,
    extract,
    false,
    func,
    insert,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.core.db import SessionFactory, engine_of, unit_of_work
from app.runs.models import DURATION_BUCKETS, Run, RunRollup
from app.runs.transitions import TERMINAL

# Runs counted since the last refresh past which catching up refreshes the statistics.
ANALYZE_AFTER = 10_000
_since_analyze = [0]  # runs this process counted since it last refreshed them
BUCKET_COLUMNS = tuple(f"le_{bound:g}" for bound in DURATION_BUCKETS)
SUMS = ("runs", "timed", "duration_sum", *BUCKET_COLUMNS)
KEY = ("pipeline_id", "status", "trigger_kind")
INTERVAL_S = 10.0
BATCH = 50_000
BUDGET_S = 2.0


# Serialization failure, deadlock, unique violation: a concurrent roll-up won.
LOST_RACE = frozenset({"40001", "40P01", "23505"})
log = logging.getLogger(__name__)


def _sqlstate(exc: DBAPIError) -> str | None:
    state = getattr(exc.orig, "sqlstate", None)
    return state if isinstance(state, str) else None


class RollupRace(Exception):
    """Another transaction counted some of this batch's runs first; the batch is undone."""


def duration_seconds(dialect: str) -> ColumnElement[Any]:
    """A run's wall time in seconds (NULL unless it has both a start and an end)."""
    if dialect == "sqlite":
        # julianday keeps ~0.1 ms at today's dates: ample for buckets of a second and more.
        return (func.julianday(Run.finished_at) - func.julianday(Run.started_at)) * 86400.0
    return extract("epoch", Run.finished_at - Run.started_at)


def _aggregates(dialect: str) -> list[ColumnElement[Any]]:
    seconds = duration_seconds(dialect)
    buckets = (
        func.coalesce(func.sum(case((seconds <= bound, 1), else_=0)), 0).label(name)
        for bound, name in zip(DURATION_BUCKETS, BUCKET_COLUMNS, strict=True)
    )
    return [
        func.count().label("runs"),
        func.count(seconds).label("timed"),
        func.coalesce(func.sum(seconds), 0.0).label("duration_sum"),
        *buckets,
    ]


def _series() -> list[ColumnElement[Any]]:
    return [Run.pipeline_id.expression, Run.status.expression, Run.trigger_kind.expression]


def counts(*, session: Session) -> dict[tuple[int, str, str], int]:
    """Runs per (pipeline id, status, trigger kind), over every run."""
    rolled = select(RunRollup.pipeline_id, RunRollup.status, RunRollup.trigger_kind, RunRollup.runs)
    live = select(*_series(), func.count()).where(Run.rolled_up == false()).group_by(*_series())
    found: dict[tuple[int, str, str], int] = {}
    rows = cast(Sequence[tuple[int, str, str, int]], session.execute(union_all(rolled, live)).all())
    for pipeline_id, status, kind, runs in rows:
        key = (int(pipeline_id), str(status), str(kind))
        found[key] = found.get(key, 0) + int(runs)
    return found


def histograms(*, session: Session) -> Sequence[Row[Any]]:
    """Per pipeline id: timed runs, their duration sum and the cumulative duration buckets
    (BUCKET_COLUMNS), over every run."""
    dialect = session.get_bind().dialect.name
    statement = _HISTOGRAMS.get(dialect)
    if statement is None:
        statement = _HISTOGRAMS[dialect] = _histograms(dialect)
    return session.execute(statement).all()


_HISTOGRAMS: dict[str, Select[Any]] = {}


def _histograms(dialect: str) -> Select[Any]:
    sums = SUMS[1:]  # all but the run count
    rolled = select(RunRollup.pipeline_id, *(getattr(RunRollup, name) for name in sums))
    live = (
        select(Run.pipeline_id, *_aggregates(dialect)[1:])
        .where(Run.rolled_up == false())
        .group_by(Run.pipeline_id)
    )
    both = union_all(rolled, live).subquery()
    return select(
        both.c.pipeline_id, *(func.sum(both.c[name]).label(name) for name in sums)
    ).group_by(both.c.pipeline_id)


def roll_up(factory: SessionFactory, *, batch: int = BATCH, budget_s: float = BUDGET_S) -> int:
    """Count uncounted terminal runs into run_rollups, one batch per transaction, for about
    budget_s at most; returns how many were counted."""
    deadline = time.monotonic() + budget_s
    counted = 0
    while True:
        try:
            with unit_of_work(factory) as session:
                done = _roll_up_batch(session, batch)
        except (RollupRace, DBAPIError) as exc:
            if isinstance(exc, DBAPIError) and _sqlstate(exc) not in LOST_RACE:
                raise
            # Another replica's job counted (some of) these runs first: nothing was written
            # here; what is left is counted at the next tick.
            log.info("run roll-up: another replica went first (%s); next tick", type(exc).__name__)
            return counted
        counted += done
        if done < batch or time.monotonic() > deadline:
            break
    _since_analyze[0] += counted
    if done < batch and _since_analyze[0] >= ANALYZE_AFTER:  # caught up after a large backlog
        _refresh_statistics(factory)
        _since_analyze[0] = 0
    return counted


def _refresh_statistics(factory: SessionFactory) -> None:
    """After a large catch-up on PostgreSQL, the roll-up's updates have left an index entry
    for every counted run in the partial index of uncounted ones, and the planner's row
    estimate for them is stale, until autovacuum next visits `runs` (never, where it is off):
    scrapes would read a dead entry per run or scan every run (at 1M runs, 22-28 ms or 230 ms
    a scrape instead of 12). VACUUM (ANALYZE) clears both; it blocks neither reads nor writes,
    and runs outside a transaction, as VACUUM must."""
    with factory() as session:
        engine = engine_of(session)
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM (ANALYZE) runs"))


def _roll_up_batch(session: Session, batch: int) -> int:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        # One snapshot for the sums and the marking: a run that ends meanwhile is neither
        # summed nor marked, and a row another job changed first fails this transaction
        # instead of being counted twice.
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    # `status || ''`: no index on status for this, so SQLite walks the small partial index of
    # uncounted runs (ix_runs_uncounted_id) instead of every terminal run in ix_runs_status.
    pending = and_(Run.rolled_up == false(), Run.status.concat("").in_(TERMINAL))
    last = session.scalar(select(Run.id).where(pending).order_by(Run.id).offset(batch - 1).limit(1))
    if last is not None:
        pending = and_(pending, Run.id <= last)
    groups = session.execute(
        select(*_series(), *_aggregates(dialect)).where(pending).group_by(*_series())
    ).all()
    if not groups:
        return 0
    result = session.execute(
        update(Run).where(pending).values(rolled_up=True),
        execution_options={"synchronize_session": False},
    )
    marked = cast(CursorResult[Any], result).rowcount
    expected = sum(int(group.runs) for group in groups)
    if marked != expected:
        raise RollupRace(f"marked {marked} runs counted, summed {expected}")
    _add(session, groups)
    return expected


def as_numbers(row: Row[Any]) -> dict[str, float | int]:
    """A row's SUMS as Python numbers (PostgreSQL sums integers and epochs as numeric)."""
    values = row._mapping
    return {
        name: float(values[name]) if name == "duration_sum" else int(values[name]) for name in SUMS
    }


def _add(session: Session, groups: Sequence[Row[Any]]) -> None:
    """Add each group's sums to its run_rollups row, creating the rows that are missing."""
    keys = [tuple(group[:3]) for group in groups]
    # By pipeline id: a row-value IN list of every key overflows PostgreSQL's parser stack
    # when a catch-up batch spans thousands of series.
    pipelines = sorted({key[0] for key in keys})
    stored = {
        (row.pipeline_id, row.status, row.trigger_kind): row
        for row in session.scalars(select(RunRollup).where(RunRollup.pipeline_id.in_(pipelines)))
    }
    new: list[dict[str, Any]] = []
    for key, group in zip(keys, groups, strict=True):
        sums = as_numbers(group)
        row = stored.get(key)
        if row is None:
            new.append(dict(zip(KEY, key, strict=True)) | sums)
            continue
        for name, value in sums.items():
            setattr(row, name, getattr(row, name) + value)
    if new:
        session.execute(insert(RunRollup), new)
    session.flush()
