"""A run as GET /runs/{id} shows it, read in one statement and rendered straight to JSON."""

from __future__ import annotations

from sqlalchemy import bindparam, select

from app.core.db import MAX_ID, Reader
from app.core.errors import NotFound
from app.pipelines.models import Pipeline
from app.runs.models import Run, RunStep
from app.runs.schemas import StepRead
from app.runs.service import run_read

RUN_COLUMNS = (
    Run.id,
    Pipeline.name.label("pipeline"),
    Pipeline.archived_at.label("pipeline_archived_at"),
    Run.pipeline_id,
    Run.status,
    Run.trigger_kind,
    Run.trigger_reason,
    Run.attempt,
    Run.retry_of_id,
    Run.actor,
    Run.created_at,
    Run.started_at,
    Run.finished_at,
    Run.error,
    Run.metrics,
    Run.model_version,
    Run.worker,
)
STEP_COLUMNS = (
    RunStep.name.label("step_name"),
    RunStep.status.label("step_status"),
    RunStep.started_at.label("step_started_at"),
    RunStep.finished_at.label("step_finished_at"),
    RunStep.detail.label("step_detail"),
)


# Built once: constructing it costs more than running it.
ONE = (
    select(*RUN_COLUMNS, *STEP_COLUMNS)
    .join(Pipeline, Pipeline.id == Run.pipeline_id)
    .outerjoin(RunStep, RunStep.run_id == Run.id)
    .where(Run.id == bindparam("run_id"))
    .order_by(RunStep.position)
)


def read_json(*, session: Reader, run_id: int) -> bytes:
    """The RunRead JSON of one run with its steps; NotFound if there is no such run."""
    rows = session.execute(ONE, {"run_id": run_id}).all() if 1 <= run_id <= MAX_ID else []
    if not rows:
        raise NotFound(f"Run {run_id} does not exist")
    run = rows[0]
    steps = [
        StepRead(
            name=row.step_name,
            status=row.step_status,
            started_at=row.step_started_at,
            finished_at=row.step_finished_at,
            detail=row.step_detail,
        )
        for row in rows
        if row.step_name is not None
    ]
    return (
        run_read(
            run,
            # An archived pipeline's runs name it by its ref, `name@id` (pipelines.ref_of).
            run.pipeline
            if run.pipeline_archived_at is None
            else f"{run.pipeline}@{run.pipeline_id}",
            steps,
        )
        .model_dump_json()
        .encode()
    )
