"""A pipeline's status at a glance: its newest run, production version, what is active."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.time import utcnow
from app.pipelines.models import Pipeline
from app.pipelines.schemas import PipelineStatus
from app.pipelines.service import spec_of
from app.registry import service as registry
from app.runs import service as runs
from app.runs.models import Run
from app.triggers.schedule import next_runs


def status_of(*, session: Session, pipeline: Pipeline) -> PipelineStatus:
    """Status is the newest run's status, or 'paused', or 'never_run'."""
    # Skipped fires are history, not a state the pipeline is in.
    newest = session.scalars(
        select(Run)
        .where(Run.pipeline_id == pipeline.id, Run.status != "skipped")
        .order_by(Run.id.desc())
        .limit(1)
    ).first()
    production = registry.production(session=session, pipeline_id=pipeline.id)
    if pipeline.paused:
        status = "paused"
    else:
        status = newest.status if newest else "never_run"
    return PipelineStatus(
        name=pipeline.name,
        status=status,
        last_run_at=(newest.started_at or newest.created_at) if newest else None,
        error=newest.error if newest else None,
        next_run_at=_next_run(pipeline),
        production_version=production.version if production else None,
        active_run_id=runs.active_run_id(session=session, pipeline_id=pipeline.id),
    )


def _next_run(pipeline: Pipeline) -> datetime | None:
    if pipeline.paused:
        return None
    upcoming = next_runs(spec_of(pipeline), pipeline.schedule_anchor_at, utcnow(), 1)
    return upcoming[0] if upcoming else None
