from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Header, Response, status

from app.api.deps import (
    Limit,
    Offset,
    OperatorDep,
    ReadSessionDep,
    ServicesDep,
    SessionDep,
    ViewerDep,
    read_in_thread,
)
from app.core.untrusted import PRINTABLE_ASCII
from app.pipelines import service as pipelines
from app.pipelines.models import Pipeline
from app.pipelines.schemas import Page
from app.runs import service, views
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
    run = service.trigger_manual(
        session=session,
        pipeline=pipeline,
        actor=actor,
        reason=body.reason if body else None,
        idempotency_key=idempotency_key,
        dispatch=services.executor.submit,
    )
    return service.to_read(run, pipeline.name)


@router.get("/pipelines/{name}/runs")
def list_runs(
    name: str,
    viewer: ViewerDep,
    session: ReadSessionDep,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[RunRead]:
    """Run history, newest first (an archived pipeline's by its ref, `name@id`)."""
    pipeline = pipelines.get_readable(session=session, name=name)
    rows, total = service.list_page(session=session, pipeline=pipeline, limit=limit, offset=offset)
    items = [service.to_read(run, pipelines.ref_of(pipeline)) for run in rows]
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.get("/runs/{run_id}", response_model=RunRead)
async def get_run(run_id: int, viewer: ViewerDep, services: ServicesDep) -> Response:
    """One run with its steps."""
    # Rendered straight to JSON: response_model only documents it.
    body = await read_in_thread(
        services, lambda session: views.read_json(session=session, run_id=run_id)
    )
    return Response(body, media_type="application/json")


@router.post("/runs/{run_id}/cancel", status_code=status.HTTP_202_ACCEPTED)
def cancel_run(
    run_id: int, actor: OperatorDep, session: SessionDep, services: ServicesDep
) -> RunRead:
    """Cancel: a queued run at once; a running run stops at its next step boundary."""
    run = service.cancel_by(
        session=session, run_id=run_id, actor=actor, dispatch=services.executor.submit
    )
    return service.to_read(run, _name_of(session, run.pipeline_id))
