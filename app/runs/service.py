"""Runs: fire (with idempotency and the concurrency policy), read, list and cancel."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth import audit
from app.auth.roles import Actor
from app.core.db import MAX_ID, after_commit
from app.core.errors import Conflict, NotFound
from app.core.faults import crash_point
from app.core.time import utcnow
from app.pipelines.models import Pipeline
from app.pipelines.service import spec_of
from app.runs import transitions as t
from app.runs.models import Run, RunStep
from app.runs.schemas import RunRead, StepRead, TriggerRead
from app.spec.schema import PipelineSpec

STEPS = ("load_data", "validate", "train", "evaluate", "deploy")
Dispatch = Callable[[int], None]
# Steps are inserted through the table, not the entity: an ORM insert of a list of rows goes
# through the bulk-save machinery, which costs more than the statement itself.
STEPS_TABLE = cast(Table, RunStep.__table__)


@dataclass(frozen=True)
class Fire:
    """What fired a run and why, in words a person understands."""

    kind: str
    reason: str
    key: str | None = None
    actor: str = "system"
    trigger_id: str | None = None


def get(*, session: Session, run_id: int) -> Run:
    """The run with this id, or NotFound."""
    run = session.get(Run, run_id) if 1 <= run_id <= MAX_ID else None
    if run is None:
        raise NotFound(f"Run {run_id} does not exist")
    return run


def list_page(
    *, session: Session, pipeline: Pipeline, limit: int, offset: int
) -> tuple[list[Run], int]:
    """A pipeline's runs, newest first, one page, and the total count."""
    where = Run.pipeline_id == pipeline.id
    total = session.scalar(select(func.count()).select_from(Run).where(where)) or 0
    rows = session.scalars(
        select(Run).where(where).order_by(Run.id.desc()).limit(limit).offset(offset)
    )
    return list(rows), total


def fire(*, session: Session, pipeline: Pipeline, fire: Fire, dispatch: Dispatch) -> Run:
    """Insert a queued run once per fire key, honouring the pipeline's concurrency policy."""
    if fire.key is not None and (existing := by_fire_key(session, pipeline, fire.key)):
        return existing
    slot = _free_slot(session, pipeline)
    run = queued_run(pipeline.id, slot, fire)
    try:
        with session.begin_nested():
            add_run(session, run)
    except IntegrityError:
        # Lost a race: the same fire key, or the slot, was taken by a concurrent insert.
        if fire.key is not None and (existing := by_fire_key(session, pipeline, fire.key)):
            return existing
        raise _busy(session, pipeline) from None
    after_commit(session, lambda: crash_point("after_run_insert"))
    if slot == "active":
        after_commit(session, lambda: dispatch(run.id))
    return run


def trigger_manual(
    *,
    session: Session,
    pipeline: Pipeline,
    actor: Actor,
    reason: str | None,
    idempotency_key: str | None,
    dispatch: Dispatch,
) -> Run:
    """A run fired by hand (the same idempotency key always gives the same run), audited."""
    spec_of(pipeline)  # one whose stored spec no longer loads: 409 now, no doomed run
    said = "manual" + (f": {reason}" if reason else "")
    key = f"manual:{idempotency_key}" if idempotency_key else None
    run = fire(
        session=session,
        pipeline=pipeline,
        fire=Fire(kind="manual", reason=said, key=key, actor=actor.label),
        dispatch=dispatch,
    )
    audit.record(
        session=session,
        actor=actor,
        action="run.trigger",
        target=f"pipelines/{pipeline.name}",
        detail={"run_id": run.id, "reason": said},
    )
    return run


def cancel_by(*, session: Session, run_id: int, actor: Actor, dispatch: Dispatch) -> Run:
    """Cancel run `run_id` on `actor`'s behalf (see cancel), audited."""
    run = cancel(session=session, run=get(session=session, run_id=run_id), dispatch=dispatch)
    audit.record(session=session, actor=actor, action="run.cancel", target=f"runs/{run.id}")
    return run


def queued_run(pipeline_id: int, slot: str | None, fire: Fire, **extra: Any) -> Run:
    """A new queued run, not yet in a session: `add_run` inserts it with its steps."""
    return Run(
        pipeline_id=pipeline_id,
        status=t.QUEUED,
        trigger_kind=fire.kind,
        trigger_reason=fire.reason,
        fire_key=fire.key,
        trigger_id=fire.trigger_id,
        slot=slot,
        actor=fire.actor,
        metrics={},
        **extra,
    )


def add_run(session: Session, run: Run) -> None:
    """Insert a new run and its five steps (pending; skipped if the run is a skipped fire)."""
    session.add(run)
    session.flush()
    status = "skipped" if run.status == t.SKIPPED else "pending"
    # One statement for the five steps: as ORM objects they cost a flush's bookkeeping and,
    # on SQLite, an INSERT each to read the ids back, on the path from a breach to the start.
    session.execute(
        insert(STEPS_TABLE),
        [
            {"run_id": run.id, "position": position, "name": name, "status": status}
            for position, name in enumerate(STEPS)
        ],
    )
    # The steps went in beside the ORM: whoever reads run.steps next loads them.
    session.expire(run, ["steps"])


def held_slots(session: Session, pipeline_id: int) -> set[str]:
    """The concurrency slots ('active', 'waiting') the pipeline's runs hold now."""
    return set(
        session.scalars(
            select(Run.slot).where(Run.pipeline_id == pipeline_id, Run.slot.is_not(None))
        )
    )


def cancel(*, session: Session, run: Run, dispatch: Dispatch) -> Run:
    """Cancel a queued run at once; ask a running one to stop at its next step boundary."""
    if run.status == t.RUNNING:
        run.cancel_requested = True
        session.flush()
        return run
    if run.status not in (t.QUEUED, t.AWAITING_APPROVAL):
        raise Conflict(f"Run {run.id} is already {run.status}; nothing to cancel")
    why = "Cancelled before it started" if run.status == t.QUEUED else "Cancelled before approval"
    promoted = t.transition(session, run, t.CANCELLED, error=why)
    for step in run.steps:
        if step.status == "pending":
            step.status = "cancelled"
    if promoted is not None:
        after_commit(session, lambda: dispatch(promoted))
    session.flush()
    return run


def ensure_idle(*, session: Session, pipeline: Pipeline) -> None:
    """Conflict if the pipeline has a run queued or running (deleting it must wait)."""
    active = session.scalars(
        select(Run.id).where(Run.pipeline_id == pipeline.id, Run.slot.is_not(None))
    ).first()
    if active is not None:
        raise Conflict(
            f"Pipeline {pipeline.name} has run {active} in progress; cancel it first",
            extra={"active_run_id": active},
        )


def active_run_id(*, session: Session, pipeline_id: int) -> int | None:
    """The run holding the pipeline's active slot, if any."""
    return session.scalars(
        select(Run.id).where(Run.pipeline_id == pipeline_id, Run.slot == "active")
    ).one_or_none()


def to_read(run: Run, pipeline_name: str) -> RunRead:
    """The API shape of a run."""
    return run_read(run, pipeline_name, [StepRead.model_validate(step) for step in run.steps])


def run_read(run: Any, pipeline: str, steps: list[StepRead]) -> RunRead:
    """RunRead from anything with a run's columns: an ORM row or a row of a statement."""
    return RunRead(
        id=run.id,
        pipeline=pipeline,
        status=run.status,
        trigger=TriggerRead(kind=run.trigger_kind, reason=run.trigger_reason),
        attempt=run.attempt,
        retry_of=run.retry_of_id,
        actor=run.actor,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        error=run.error,
        steps=steps,
        metrics=run.metrics,
        model_version=run.model_version,
        worker=run.worker,
    )


def by_fire_key(session: Session, pipeline: Pipeline, key: str) -> Run | None:
    """The run already inserted for this fire key, if any."""
    return session.scalars(
        select(Run).where(Run.pipeline_id == pipeline.id, Run.fire_key == key)
    ).one_or_none()


def free_slot(session: Session, pipeline: Pipeline) -> str | None:
    """The slot a new run of this pipeline would take under its concurrency policy, if any."""
    held = held_slots(session, pipeline.id)
    if "active" not in held:
        return "active"
    if spec_of(pipeline).concurrency == "queue" and "waiting" not in held:
        return "waiting"
    return None


def _free_slot(session: Session, pipeline: Pipeline) -> str:
    slot = free_slot(session, pipeline)
    if slot is None:
        raise _busy(session, pipeline)
    return slot


def _busy(session: Session, pipeline: Pipeline) -> Conflict:
    active = active_run_id(session=session, pipeline_id=pipeline.id)
    policy = spec_of(pipeline).concurrency
    if policy == "queue":
        detail = f"Pipeline {pipeline.name} already has run {active} active and one run waiting"
    else:
        detail = f"Pipeline {pipeline.name} already has run {active} active (concurrency: skip)"
    return Conflict(detail, extra={"active_run_id": active})


def schedule_retry(session: Session, failed: Run, spec: PipelineSpec) -> Run | None:
    """A new attempt of a failed run, if attempts are left and a slot is free."""
    if failed.attempt >= spec.retries.max_attempts:
        return None
    held = held_slots(session, failed.pipeline_id)
    slot = next((slot for slot in ("active", "waiting") if slot not in held), None)
    if slot is None:
        return None
    delay = spec.retries.backoff_s * (2 ** (failed.attempt - 1))
    fire = Fire(kind=failed.trigger_kind, reason=failed.trigger_reason, actor=failed.actor)
    retry = queued_run(
        failed.pipeline_id,
        slot,
        fire,
        attempt=failed.attempt + 1,
        retry_of_id=failed.retry_of_id or failed.id,
        not_before=utcnow() + timedelta(seconds=delay),
    )
    add_run(session, retry)
    return retry
