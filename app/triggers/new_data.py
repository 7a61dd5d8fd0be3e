"""The new_data trigger: retrain once enough rows have been posted since the last run began.

Rows count from the start of the pipeline's newest run that was not skipped (its creation, if
it has not started), or from the first batch if it never ran; rows posted while a run trains
count towards the next one. Each fire is keyed by the batch that crossed the line, so
re-checking the same batch never fires twice.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.datasources.models import DataBatch
from app.pipelines.models import Pipeline
from app.pipelines.service import spec_of
from app.runs import transitions as t
from app.runs.models import Run
from app.runs.service import Dispatch, Fire
from app.spec.identity import event_key, triggers_of
from app.spec.schema import NewDataTrigger
from app.triggers.firing import fire_automatic


def check_after_ingest(session: Session, pipeline: Pipeline, dispatch: Dispatch) -> list[int]:
    """Fire each new_data trigger whose min_rows is reached; the ids of runs that will run."""
    triggers = triggers_of(spec_of(pipeline), "new_data")
    if not triggers:
        return []
    rows = rows_since_last_run(session, pipeline.id)
    batch_id = _newest_batch_id(session, pipeline.id)
    fired: list[int] = []
    for trigger in triggers:
        assert isinstance(trigger, NewDataTrigger)
        if rows < trigger.min_rows:
            continue
        fire = Fire(
            kind="new_data",
            reason=f"new data: {rows} rows >= {trigger.min_rows}",
            key=event_key(trigger, batch_id),
            actor="webhook",
        )
        run = fire_automatic(session, pipeline, fire, dispatch=dispatch)
        # A skipped fire is recorded (with why) but runs nothing: not reported as fired.
        if run is not None and run.status != t.SKIPPED:
            fired.append(run.id)
    return fired


def rows_since_last_run(session: Session, pipeline_id: int) -> int:
    """Rows posted after the newest non-skipped run started (all rows if it never ran)."""
    statement = select(func.coalesce(func.sum(DataBatch.row_count), 0)).where(
        DataBatch.pipeline_id == pipeline_id
    )
    if (since := _last_run_start(session, pipeline_id)) is not None:
        statement = statement.where(DataBatch.received_at > since)
    return int(session.scalar(statement) or 0)


def _last_run_start(session: Session, pipeline_id: int) -> datetime | None:
    last = session.execute(
        select(Run.started_at, Run.created_at)
        .where(Run.pipeline_id == pipeline_id, Run.status != t.SKIPPED)
        .order_by(Run.id.desc())
        .limit(1)
    ).first()
    if last is None:
        return None
    started: datetime | None = last.started_at
    created: datetime = last.created_at
    return started or created


def _newest_batch_id(session: Session, pipeline_id: int) -> int:
    newest = session.scalar(
        select(func.max(DataBatch.id)).where(DataBatch.pipeline_id == pipeline_id)
    )
    return newest or 0
