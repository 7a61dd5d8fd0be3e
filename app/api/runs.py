from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Header, Query, status

from app.api.deps import OperatorDep, ReadSessionDep, ServicesDep, SessionDep, ViewerDep
from app.auth import audit
from app.core.db import MAX_OFFSET
from app.core.untrusted import PRINTABLE_ASCII
from app.pipelines import service as pipelines
from app.pipelines.models import Pipeline
from app.pipelines.schemas import Page
from app.runs import service
from app.runs.schemas import RunCreate, RunRead

router = APIRouter(tags=["runs"])


def _name_of(session: SessionDep, pipeline_id: int) -> str:
    pipeline = session.get(Pipeline, pipeline_id)
    return pipelines.ref_of(pipeline) if pipeline else ""


@router.post(
    "/pipelines/{name}/runs",
    status_code=status.HTTP_202_ACCEPTED,
    responses={409: {"description": "A run is already active, or the stored spec no longer loads"}},
)
def trigger_run(
    name: str,
    actor: OperatorDep,
    session: SessionDep,
    services: ServicesDep,
    body: Annotated[RunCreate | None, Body()] = None,
    idempotency_key: Annotated[
        str | None, Header(min_length=1, max_length=255, pattern=PRINTABLE_ASCII)
    ] = None,
) -> RunRead:
    """Trigger a run by hand; the same Idempotency-Key always answers with the same run."""
    pipeline = pipelines.get(session=session, name=name)
    pipelines.spec_of(pipeline)  # one whose stored spec no longer loads: 409 now, no doomed run
    reason = "manual" + (f": {body.reason}" if body and body.reason else "")
    key = f"manual:{idempotency_key}" if idempotency_key else None
    fire = service.Fire(kind="manual", reason=reason, key=key, actor=actor.label)
    run = service.fire(
        session=session, pipeline=pipeline, fire=fire, dispatch=services.executor.submit
    )
    audit.record(
        session=session,
        actor=actor,
        action="run.trigger",
        target=f"pipelines/{pipeline.name}",
        detail={"run_id": run.id, "reason": reason},
    )
    return service.to_read(run, pipeline.name)


@router.get("/pipelines/{name}/runs")
def list_runs(
    name: str,
    viewer: ViewerDep,
    session: ReadSessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> Page[RunRead]:
    """Run history, newest first (an archived pipeline's by its ref, `name@id`)."""
    pipeline = pipelines.get_readable(session=session, name=name)
    rows, total = service.list_page(session=session, pipeline=pipeline, limit=limit, offset=offset)
    items = [service.to_read(run, pipelines.ref_of(pipeline)) for run in rows]
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.get("/runs/{run_id}")
def get_run(run_id: int, viewer: ViewerDep, session: ReadSessionDep) -> RunRead:
    """One run with its steps."""
    run = service.get(session=session, run_id=run_id)
    return service.to_read(run, _name_of(session, run.pipeline_id))


@router.post("/runs/{run_id}/cancel", status_code=status.HTTP_202_ACCEPTED)
def cancel_run(
    run_id: int, actor: OperatorDep, session: SessionDep, services: ServicesDep
) -> RunRead:
    """Cancel: a queued run at once; a running run stops at its next step boundary."""
    run = service.get(session=session, run_id=run_id)
    run = service.cancel(session=session, run=run, dispatch=services.executor.submit)
    audit.record(session=session, actor=actor, action="run.cancel", target=f"runs/{run.id}")
    return service.to_read(run, _name_of(session, run.pipeline_id))
