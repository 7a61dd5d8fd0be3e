"""Automatic fires (schedules, metric breaches, new data, drift): exactly one run per fire.

Every fire carries a key (pipeline, trigger, scheduled time or event); the database's unique
key makes a second replica inserting the same fire lose and do nothing. The retrain budget
and the concurrency policy are checked in the same transaction, with the pipeline row locked
so concurrent fires of one pipeline queue up instead of racing past the checks. A fire that
policy turns down is still recorded, as a `skipped` run saying why.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.db import after_commit
from app.core.faults import crash_point
from app.core.time import utcnow
from app.events import service as events
from app.pipelines.models import Pipeline
from app.pipelines.service import spec_of
from app.runs import service as runs
from app.runs import transitions as t
from app.runs.models import Run
from app.spec.identity import trigger_id_of_key


def fire_automatic(
    session: Session,
    pipeline: Pipeline,
    fire: runs.Fire,
    *,
    dispatch: runs.Dispatch,
    scheduled_for: datetime | None = None,
) -> Run | None:
    """Insert the run for this fire once; None when the pipeline is paused."""
    assert fire.key is not None, "automatic fires are keyed"
    lock(session, pipeline)
    if existing := runs.by_fire_key(session, pipeline, fire.key):
        return existing
    return fire_locked(session, pipeline, fire, dispatch=dispatch, scheduled_for=scheduled_for)


def lock(session: Session, pipeline: Pipeline) -> None:
    """Lock the pipeline's row for this transaction and read it afresh (paused, spec)."""
    # FOR NO KEY UPDATE: serialises fires of this pipeline without conflicting with the key
    # share lock that inserting child rows (runs, batches, observations) takes on the same row.
    session.refresh(pipeline, with_for_update={"key_share": True})


def fire_locked(
    session: Session,
    pipeline: Pipeline,
    fire: runs.Fire,
    *,
    dispatch: runs.Dispatch,
    scheduled_for: datetime | None = None,
) -> Run | None:
    """fire_automatic for a caller that has taken `lock` and found no run for the fire's key."""
    key = fire.key
    assert key is not None, "automatic fires are keyed"
    if fire.trigger_id is None:
        fire = replace(fire, trigger_id=trigger_id_of_key(key))
    if pipeline.paused:
        return None
    slot = runs.free_slot(session, pipeline)
    refusal = _budget_refusal(session, pipeline)
    if refusal is None and slot is None:
        refusal = _busy_refusal(session, pipeline)
    if refusal is not None:
        return record(session, skipped(pipeline.id, fire, refusal, scheduled_for))
    assert slot is not None
    run = runs.queued_run(pipeline.id, slot, fire, scheduled_for=scheduled_for)
    recorded = record(session, run)
    if recorded is run:
        trigger = {"kind": fire.kind, "reason": fire.reason}
        data = {"run": run.id, "reason": fire.reason, "trigger": trigger}
        events.emit(session, "trigger.fired", pipeline=pipeline.name, data=data)
    after_commit(session, lambda: crash_point("after_run_insert"))
    if recorded is run and slot == "active":
        after_commit(session, lambda: dispatch(run.id))
    return recorded


def skipped(
    pipeline_id: int, fire: runs.Fire, reason: str, scheduled_for: datetime | None = None
) -> Run:
    """A fire that was recorded but not run, with the reason in its error."""
    run = runs.queued_run(pipeline_id, None, fire, scheduled_for=scheduled_for)
    run.status, run.error = t.SKIPPED, reason
    run.finished_at = utcnow()
    return run


def record(session: Session, run: Run) -> Run | None:
    """Insert a run unless its fire key exists; the run that stands for the fire."""
    try:
        with session.begin_nested():
            runs.add_run(session, run)
    except IntegrityError:
        # Another replica inserted this fire (or took the slot) first: theirs stands.
        pipeline = session.get(Pipeline, run.pipeline_id)
        assert pipeline is not None and run.fire_key is not None
        return runs.by_fire_key(session, pipeline, run.fire_key)
    return run


def _budget_refusal(session: Session, pipeline: Pipeline) -> str | None:
    budget = spec_of(pipeline).max_runs_per_day
    if budget is None:
        return None
    since = utcnow() - timedelta(days=1)
    fired = session.scalar(
        select(func.count())
        .select_from(Run)
        .where(
            Run.pipeline_id == pipeline.id,
            Run.trigger_kind != "manual",
            Run.status != t.SKIPPED,
            Run.retry_of_id.is_(None),
            Run.created_at >= since,
        )
    )
    if (fired or 0) < budget:
        return None
    return (
        f"Skipped: retrain budget spent ({fired} automatic runs in the last 24 h, "
        f"max_runs_per_day {budget})"
    )


def _busy_refusal(session: Session, pipeline: Pipeline) -> str:
    active = runs.active_run_id(session=session, pipeline_id=pipeline.id)
    return f"Skipped: run {active} is still active (concurrency: {spec_of(pipeline).concurrency})"
