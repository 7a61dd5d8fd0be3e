from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy.orm import Session

from app.api.deps import (
    AdminDep,
    Limit,
    Offset,
    OperatorDep,
    ReadSessionDep,
    ServicesDep,
    SessionDep,
    ViewerDep,
    read_in_thread,
)
from app.auth import audit
from app.auth.roles import Actor
from app.core.db import after_commit
from app.core.errors import Conflict
from app.core.time import utcnow
from app.pipelines import masking, service, views
from app.pipelines.models import Pipeline
from app.pipelines.parsing import decode_body, parse_spec
from app.pipelines.schemas import (
    Page,
    PipelineCreated,
    PipelineRead,
    PipelineStatus,
    ScheduleRead,
)
from app.registry.purge import purge_artifacts
from app.runs import service as runs
from app.spec.schema import PipelineSpec
from app.status.service import status_of
from app.triggers.schedule import next_runs

router = APIRouter(prefix="/pipelines", tags=["pipelines"])

SPEC_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/PipelineSpec"}},
            "application/yaml": {"schema": {"$ref": "#/components/schemas/PipelineSpec"}},
        },
    }
}
PAGE_SIZE = 100  # the list's default page, which the read lane also serves


async def _spec_from(request: Request, services: ServicesDep) -> PipelineSpec:
    raw = await request.body()
    document = decode_body(raw, request.headers.get("content-type", "application/json"))
    return parse_spec(document, services.settings)


def _read(pipeline: Pipeline) -> PipelineRead:
    return PipelineRead(
        name=pipeline.name,
        ref=service.ref_of(pipeline),
        archived_at=pipeline.archived_at,
        description=service.spec_of(pipeline).description,
        paused=pipeline.paused,
        spec=masking.masked(service.spec_of(pipeline)),
        created_at=pipeline.created_at,
        updated_at=pipeline.updated_at,
    )


def _created(pipeline: Pipeline) -> PipelineCreated:
    return PipelineCreated(**_read(pipeline).model_dump(), webhook_secret=pipeline.webhook_secret)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=SPEC_BODY,
    responses={409: {"description": "A pipeline with this name exists"}},
)
async def create_pipeline(
    request: Request, actor: AdminDep, services: ServicesDep, session: SessionDep
) -> PipelineCreated:
    """Create a pipeline from a JSON or YAML spec; the webhook secret is shown only here."""
    spec = await _spec_from(request, services)
    after_commit(session, services.scheduler.nudge)
    pipeline = service.create(session=session, spec=spec)
    _audit(session, actor, "pipeline.create", pipeline.name)
    return _created(pipeline)


def _audit(session: Session, actor: Actor, action: str, name: str, **detail: object) -> None:
    audit.record(
        session=session, actor=actor, action=action, target=f"pipelines/{name}", detail=detail
    )


STALE_SPEC: dict[int | str, dict[str, Any]] = {
    409: {"description": "A stored spec no longer passes validation; the detail names it"}
}


# The read routes below return their JSON already rendered (memoised per stored row, see
# pipelines.views): response_model only documents it.
@router.get("", responses=STALE_SPEC, response_model=Page[PipelineRead])
async def list_pipelines(
    viewer: ViewerDep,
    services: ServicesDep,
    limit: Limit = PAGE_SIZE,
    offset: Offset = 0,
    include_archived: Annotated[
        bool, Query(description="Also list archived (deleted) pipelines, each with its ref")
    ] = False,
) -> Response:
    """All pipelines, by name."""
    return _json(
        await read_in_thread(
            services,
            lambda session: views.page_json(
                session=session, limit=limit, offset=offset, include_archived=include_archived
            ),
        )
    )


@router.get("/{name}", responses=STALE_SPEC, response_model=PipelineRead)
async def get_pipeline(name: str, viewer: ViewerDep, services: ServicesDep) -> Response:
    """One pipeline and its spec (an archived one by its ref, `name@id`)."""
    return _json(
        await read_in_thread(services, lambda session: views.one_json(session=session, name=name))
    )


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


# Tells `mlops pipeline apply` what a PUT did, so re-applying the same spec says "unchanged".
APPLY_RESULT = "Mlops-Apply-Result"
APPLY_RESULT_HEADER = {
    APPLY_RESULT: {
        "description": "What the PUT did: created, updated or unchanged",
        "schema": {"type": "string", "enum": ["created", "updated", "unchanged"]},
    }
}


@router.put(
    "/{name}",
    openapi_extra=SPEC_BODY,
    response_model=PipelineCreated | PipelineRead,
    responses={
        200: {"description": "Replaced, or unchanged", "headers": APPLY_RESULT_HEADER},
        201: {
            "model": PipelineCreated,
            "description": "Created, with its webhook secret",
            "headers": APPLY_RESULT_HEADER,
        },
    },
)
async def put_pipeline(
    name: str,
    request: Request,
    response: Response,
    actor: AdminDep,
    services: ServicesDep,
    session: SessionDep,
) -> PipelineCreated | PipelineRead:
    """Create or replace a pipeline (idempotent: `mlops pipeline apply`)."""
    spec = await _spec_from(request, services)
    after_commit(session, services.scheduler.nudge)
    existing = service.find(session=session, name=name)
    if existing is None:
        spec_name_must_match(name, spec)
        response.status_code = status.HTTP_201_CREATED
        response.headers[APPLY_RESULT] = "created"
        pipeline = service.create(session=session, spec=spec)
        _audit(session, actor, "pipeline.create", name)
        return _created(pipeline)
    before = dict(existing.spec)
    replaced = service.replace(session=session, pipeline=existing, spec=spec)
    changed = _changed(before, replaced.spec)
    response.headers[APPLY_RESULT] = "updated" if changed else "unchanged"
    # Field names only: values may hold deploy-target headers or source credentials.
    _audit(session, actor, "pipeline.replace", name, changed=changed)
    return _read(replaced)


def _changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def spec_name_must_match(name: str, spec: PipelineSpec) -> None:
    from app.core.errors import InvalidSpec, field_error

    if spec.name != name:
        msg = f"must match the name in the URL ({name!r})"
        raise InvalidSpec(f"name: {msg}", errors=[field_error("name", msg)])


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={409: {"description": "A run is active, or the pipeline is archived already"}},
)
def delete_pipeline(
    name: str,
    actor: AdminDep,
    session: SessionDep,
    services: ServicesDep,
    purge: Annotated[
        bool, Query(description="Also delete its model artifacts (an archived one: `name@id`)")
    ] = False,
) -> None:
    """Archive a pipeline (refused while a run is active): it never runs again, its runs,
    versions, ledger and audit stay readable, and its name is free; `purge` also deletes
    its model artifacts."""
    after_commit(session, services.scheduler.nudge)
    pipeline = service.get_readable(session=session, name=name)
    if pipeline.archived_at is None:
        runs.ensure_idle(session=session, pipeline=pipeline)
        service.archive(session=session, pipeline=pipeline)
        _audit(session, actor, "pipeline.delete", name, archived_as=service.ref_of(pipeline))
    elif not purge:
        raise Conflict(
            f"Pipeline {name} is archived already; add ?purge=true to delete its artifacts"
        )
    if purge:
        purged = purge_artifacts(session=session, pipeline=pipeline, store=services.artifacts)
        after_commit(session, lambda: services.models.evict(pipeline.id))
        _audit(session, actor, "pipeline.purge", service.ref_of(pipeline), versions=purged)


@router.post("/{name}/pause")
def pause_pipeline(
    name: str, actor: OperatorDep, session: SessionDep, services: ServicesDep
) -> PipelineRead:
    """Stop the pipeline's triggers from firing."""
    pipeline = service.pause_or_resume(
        session=session, name=name, actor=actor, paused=True, nudge=services.scheduler.nudge
    )
    return _read(pipeline)


@router.post("/{name}/resume")
def resume_pipeline(
    name: str,
    actor: OperatorDep,
    session: SessionDep,
    services: ServicesDep,
    replay: Annotated[bool, Query(description="Apply the misfire policy to paused ticks")] = False,
) -> PipelineRead:
    """Let the pipeline's triggers fire again (the paused period is not replayed)."""
    pipeline = service.pause_or_resume(
        session=session,
        name=name,
        actor=actor,
        paused=False,
        nudge=services.scheduler.nudge,
        replay=replay,
    )
    return _read(pipeline)


@router.get("/{name}/schedule", responses=STALE_SPEC)
def pipeline_schedule(
    name: str,
    viewer: ViewerDep,
    session: ReadSessionDep,
    count: Annotated[int, Query(ge=1, le=100, description="How many fire times")] = 5,
) -> ScheduleRead:
    """The next fire times of the pipeline's cron and interval triggers."""
    pipeline = service.get_readable(session=session, name=name)
    spec = service.spec_of(pipeline)
    upcoming = next_runs(spec, pipeline.schedule_anchor_at, utcnow(), count)
    return ScheduleRead(next_runs=upcoming, paused=pipeline.paused)


@router.get("/{name}/status", responses=STALE_SPEC, response_model=PipelineStatus)
async def pipeline_status(name: str, viewer: ViewerDep, services: ServicesDep) -> Response:
    """Status, last run, error, production version and the active run."""
    found = await read_in_thread(services, lambda session: status_of(session=session, name=name))
    return _json(found.model_dump_json().encode())
