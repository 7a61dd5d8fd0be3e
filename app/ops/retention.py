"""Retention: delete what is older than a cut-off and no longer needed.

Finished runs (with their steps), data batches and metric observations older than the
cut-off go; a run that made a model version stays (the production version's above all), and
model versions and their artifacts are never touched here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, delete, select, update
from sqlalchemy.orm import Session

from app.datasources.models import DataBatch
from app.monitoring.models import MetricObservation
from app.registry.models import ModelVersion
from app.runs import transitions as t
from app.runs.models import Run, RunStep


@dataclass(frozen=True)
class Pruned:
    runs: int
    data_batches: int
    observations: int


def prune(*, session: Session, before: datetime) -> Pruned:
    """Delete finished runs, data batches and observations older than `before`."""
    made_a_version = select(ModelVersion.run_id).where(ModelVersion.run_id.is_not(None))
    old_runs = select(Run.id).where(
        Run.status.in_(t.SETTLED),
        Run.finished_at < before,
        Run.id.not_in(made_a_version),
    )
    ids = list(session.scalars(old_runs))
    for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
        # Explicitly, not by ON DELETE: SQLite enforces foreign keys only when asked to.
        # A retry keeps its record when the run it retried goes; only the link goes.
        retries = update(Run).where(Run.retry_of_id.in_(chunk)).values(retry_of_id=None)
        session.execute(retries)
        session.execute(delete(RunStep).where(RunStep.run_id.in_(chunk)))
        session.execute(delete(Run).where(Run.id.in_(chunk)))
    batches = _deleted(session, delete(DataBatch).where(DataBatch.received_at < before))
    observed = delete(MetricObservation).where(MetricObservation.received_at < before)
    session.flush()
    return Pruned(runs=len(ids), data_batches=batches, observations=_deleted(session, observed))


def _deleted(session: Session, statement: Delete) -> int:
    result = cast(CursorResult[Any], session.execute(statement))
    return result.rowcount or 0
