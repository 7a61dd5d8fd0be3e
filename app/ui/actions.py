"""The dashboard's operator actions. Each one is a form post with the session's CSRF token,
checked against the role the same action needs in the API, and done by the same domain
function the API router calls (audit records included)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from app.auth.roles import Actor, Role
from app.core.db import unit_of_work
from app.core.errors import DomainError, InvalidInput, field_error
from app.pipelines import service as pipelines
from app.registry import promotion
from app.registry.schemas import PromoteRequest
from app.runs import service as runs
from app.runs.schemas import RunCreate
from app.ui.deps import UiServices, authorize_post, services_of, viewer_of
from app.ui.render import base, error, form_of, see_other

router = APIRouter(prefix="/ui", include_in_schema=False)
# An action: given the services, who asks and the form, do it and say where to go next (a
# path under /ui).
Form = dict[str, str]
Action = Callable[[UiServices, Actor, Form], str]


async def _perform(request: Request, back: str, action: Action) -> Response:
    """Check session, CSRF token and role (operator), then act; errors become a page."""
    form = await form_of(request)
    viewer = await run_in_threadpool(viewer_of, request)
    try:
        allowed = authorize_post(viewer, form.get("csrf"), Role.operator)
        target = await run_in_threadpool(action, services_of(request), allowed.actor, form)
    except DomainError as exc:
        return error(request, viewer, exc.status_code, exc.detail, back)
    except ValidationError as exc:
        first = exc.errors()[0]
        detail = f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
        return error(request, viewer, 422, detail, back)
    return see_other(f"{base(request)}/{target}")


@router.post("/pipelines/{name}/run")
async def run_now(request: Request, name: str) -> Response:
    """ "Run now": a manual run, as POST /api/v1/pipelines/{name}/runs."""

    def action(services: UiServices, actor: Actor, form: Form) -> str:
        body = RunCreate(reason=form.get("reason") or None)
        with unit_of_work(services.factory) as session:
            pipeline = pipelines.get(session=session, name=name)
            made = runs.trigger_manual(
                session=session,
                pipeline=pipeline,
                actor=actor,
                reason=body.reason,
                idempotency_key=None,
                dispatch=services.executor.submit,
            )
            return f"runs/{made.id}"

    return await _perform(request, f"pipelines/{name}", action)


@router.post("/runs/{run_id}/cancel")
async def cancel(request: Request, run_id: int) -> Response:
    """Cancel a run, as POST /api/v1/runs/{id}/cancel."""

    def action(services: UiServices, actor: Actor, form: Form) -> str:
        with unit_of_work(services.factory) as session:
            runs.cancel_by(
                session=session, run_id=run_id, actor=actor, dispatch=services.executor.submit
            )
        return f"runs/{run_id}"

    return await _perform(request, f"runs/{run_id}", action)


@router.post("/pipelines/{name}/pause")
async def pause(request: Request, name: str) -> Response:
    """Pause the pipeline's triggers, as POST /api/v1/pipelines/{name}/pause."""
    return await _perform(request, f"pipelines/{name}", _pause_or_resume(name, paused=True))


@router.post("/pipelines/{name}/resume")
async def resume(request: Request, name: str) -> Response:
    """Resume the pipeline's triggers, as POST /api/v1/pipelines/{name}/resume."""
    return await _perform(request, f"pipelines/{name}", _pause_or_resume(name, paused=False))


def _pause_or_resume(name: str, *, paused: bool) -> Action:
    def action(services: UiServices, actor: Actor, form: Form) -> str:
        with unit_of_work(services.factory) as session:
            pipelines.pause_or_resume(
                session=session,
                name=name,
                actor=actor,
                paused=paused,
                nudge=services.scheduler.nudge,
            )
        return f"pipelines/{name}"

    return action


@router.post("/pipelines/{name}/promote")
async def promote(request: Request, name: str) -> Response:
    """Promote a version with a reason, as POST …/models/{version}/promote."""

    def action(services: UiServices, actor: Actor, form: Form) -> str:
        version = _version(form.get("version", ""))
        reason = PromoteRequest(reason=form.get("reason") or None).reason
        said = reason or f"manual promotion of version {version}"
        asked = promotion.manual_request(settings=services.settings, actor=actor, reason=said)
        promotion.promote(services.factory, name=name, version=version, request=asked)
        return f"pipelines/{name}"

    return await _perform(request, f"pipelines/{name}", action)


@router.post("/pipelines/{name}/rollback")
async def rollback(request: Request, name: str) -> Response:
    """Roll production back with a reason, as POST /api/v1/pipelines/{name}/rollback."""

    def action(services: UiServices, actor: Actor, form: Form) -> str:
        reason = PromoteRequest(reason=form.get("reason") or None).reason
        said = reason or "manual rollback"
        asked = promotion.manual_request(settings=services.settings, actor=actor, reason=said)
        promotion.rollback(services.factory, name=name, request=asked)
        return f"pipelines/{name}"

    return await _perform(request, f"pipelines/{name}", action)


def _version(text: str) -> int:
    if not text.isdigit():
        msg = f"must be a version number, not {text[:20]!r}"
        raise InvalidInput(f"version: {msg}", errors=[field_error("version", msg)])
    return int(text)
