"""A pipeline's status at a glance: its newest run, production version, what is active."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.pipelines.models import Pipeline
from app.pipelines.schemas import PipelineStatus
from app.registry import service as registry
from app.runs import service as runs
from app.runs.models import Run


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
        next_run_at=None,
        production_version=production.version if production else None,
        active_run_id=runs.active_run_id(session=session, pipeline_id=pipeline.id),
    )
