"""When a breached monitor (metric or drift trigger) may fire a retrain.

Not while the pipeline is paused, not while a run holds a concurrency slot (the retrain in
flight is the answer to the breach), and not within the trigger's cooldown after its last
fire. Without these, every observation or batch that arrives while a metric stays low would
fire, or record, another run.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.time import as_utc, utcnow
from app.pipelines.models import Pipeline
from app.runs import service as runs
from app.runs import transitions as t
from app.runs.models import Run
from app.spec.identity import trigger_id
from app.spec.schema import DriftTrigger, MetricTrigger


def refusal(
    session: Session, pipeline: Pipeline, trigger: MetricTrigger | DriftTrigger
) -> str | None:
    """Why this trigger must not fire now, or None when it may."""
    if pipeline.paused:
        return "pipeline is paused"
    if runs.held_slots(session, pipeline.id):
        active = runs.active_run_id(session=session, pipeline_id=pipeline.id)
        return f"run {active} is still active"
    if trigger.cooldown_s <= 0:
        return None
    last = last_fire(session, pipeline, trigger)
    if last is None:
        return None
    age = utcnow() - as_utc(last.created_at)
    if age >= timedelta(seconds=trigger.cooldown_s):
        return None
    return (
        f"cooldown: run {last.id} fired {age.total_seconds():.0f} s ago "
        f"(cooldown_s {trigger.cooldown_s:g})"
    )


class LastFire(NamedTuple):
    id: int
    created_at: datetime


def last_fire(
    session: Session, pipeline: Pipeline, trigger: MetricTrigger | DriftTrigger
) -> LastFire | None:
    """The newest run this trigger fired; fires recorded as skipped never ran, so don't count."""
    prefix = f"{trigger.kind}:{trigger_id(trigger)}:"
    # Two columns, not the run: loading a Run also loads its steps.
    row = session.execute(
        select(Run.id, Run.created_at)
        .where(
            Run.pipeline_id == pipeline.id,
            Run.fire_key.startswith(prefix, autoescape=True),
            Run.status != t.SKIPPED,
        )
        .order_by(Run.id.desc())
        .limit(1)
    ).first()
    return None if row is None else LastFire(*row)
