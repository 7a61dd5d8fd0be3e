"""Every run status change goes through here, against an explicit FROM -> TO table."""

from __future__ import annotations

from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.errors import Conflict
from app.core.time import utcnow
from app.events import service as events
from app.pipelines.models import Pipeline
from app.runs.models import Run

QUEUED: Final = "queued"
RUNNING: Final = "running"
COMPLETED: Final = "completed"
FAILED: Final = "failed"
REJECTED: Final = "rejected"
AWAITING_APPROVAL: Final = "awaiting_approval"
CANCELLED: Final = "cancelled"
# A fire that was recorded but not run (misfire policy, concurrency, budget); never executes.
SKIPPED: Final = "skipped"

ALLOWED: Final[dict[str, frozenset[str]]] = {
    QUEUED: frozenset({RUNNING, CANCELLED, FAILED}),
    RUNNING: frozenset({COMPLETED, FAILED, REJECTED, AWAITING_APPROVAL, CANCELLED}),
    # Approving promotes the version the run made; or the wait is called off.
    AWAITING_APPROVAL: frozenset({COMPLETED, CANCELLED}),
    COMPLETED: frozenset(),
    FAILED: frozenset(),
    REJECTED: frozenset(),
    CANCELLED: frozenset(),
    SKIPPED: frozenset(),
}
ACTIVE: Final = frozenset({QUEUED, RUNNING})
TERMINAL: Final = frozenset(s for s, targets in ALLOWED.items() if not targets)
# Statuses after which the run holds no concurrency slot.
SETTLED: Final = TERMINAL | {AWAITING_APPROVAL}


# Statuses a subscriber hears about, as `run.<status>` events.
ANNOUNCED: Final = frozenset({COMPLETED, FAILED, REJECTED, AWAITING_APPROVAL})


class IllegalTransition(Conflict):
    """The run is not in a status that allows this change."""


def transition(session: Session, run: Run, to: str, *, error: str | None = None) -> int | None:
    """Move `run` to status `to`; returns a waiting run id that now holds the active slot."""
    if to not in ALLOWED[run.status]:
        raise IllegalTransition(f"Run {run.id} is {run.status}; it cannot become {to}")
    now = utcnow()
    run.status = to
    if to == RUNNING:
        run.started_at = now
    if error is not None:
        run.error = error
    if to in ANNOUNCED:
        _announce(session, run)
    if to in SETTLED:
        run.finished_at = run.finished_at or now
        return _release_slot(session, run)
    session.flush()
    return None


def _announce(session: Session, run: Run) -> None:
    # In the transition's own transaction: the event commits with the status, or neither.
    pipeline = session.get_one(Pipeline, run.pipeline_id)
    data = {
        "run": run.id,
        "status": run.status,
        "version": run.model_version,
        "reason": run.error or run.trigger_reason,
        "trigger": {"kind": run.trigger_kind, "reason": run.trigger_reason},
    }
    events.emit(session, f"run.{run.status}", pipeline=pipeline.name, data=data)


def _release_slot(session: Session, run: Run) -> int | None:
    held = run.slot
    run.slot = None
    session.flush()
    if held != "active":
        return None
    waiting = session.scalars(
        select(Run).where(Run.pipeline_id == run.pipeline_id, Run.slot == "waiting")
    ).one_or_none()
    if waiting is None:
        return None
    waiting.slot = "active"
    session.flush()
    return waiting.id
