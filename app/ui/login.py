"""Logging in with an API key, and out."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from app.auth import service as auth
from app.auth import sessions
from app.auth.roles import ANONYMOUS, Actor
from app.core.db import unit_of_work
from app.core.errors import Unauthorized
from app.core.settings import Settings
from app.ui import session as ui_session
from app.ui.deps import UiServices, services_of, signer_of, viewer_of
from app.ui.render import base, error, form_of, page, see_other

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/login")
def login_form(request: Request) -> Response:
    """The login form: one password field, `key`, for an API key."""
    services = services_of(request)
    if services.settings.auth == "disabled":
        # As the API: no key needed. The session still gives the forms their CSRF token.
        return _logged_in(request, _open(services, ANONYMOUS))
    if viewer_of(request) is not None:
        return see_other(base(request))
    return _form(request, None, 200)


def _form(request: Request, message: str | None, status: int) -> Response:
    csrf = ui_session.new_csrf()
    response = page(request, "login.html", None, status, login_csrf=csrf, message=message)
    response.set_cookie(
        ui_session.LOGIN_COOKIE,
        signer_of(request).login_cookie(csrf),
        max_age=ui_session.LOGIN_FORM_S,
        path=ui_session.COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the key; on success open a session (a signed cookie) and go to the dashboard."""
    form = await form_of(request)
    expected = signer_of(request).read_login(request.cookies.get(ui_session.LOGIN_COOKIE))
    if expected is None or not ui_session.same(form.get("csrf"), expected):
        return error(request, None, 403, "The login form expired; log in again", "login")
    services = services_of(request)
    try:
        actor = await auth.authenticate(
            engine=services.engine,
            settings=services.settings,
            token=form.get("key", "").strip() or None,
            usage=services.key_usage,
        )
    except Unauthorized as exc:
        return await run_in_threadpool(_form, request, exc.detail, 401)
    token = await run_in_threadpool(_open, services, actor)
    return _logged_in(request, token)


def _open(services: UiServices, actor: Actor) -> str:
    who, tag = _who(actor, services.settings)
    with unit_of_work(services.factory) as session:
        opened = sessions.open_session(
            session=session,
            actor=actor,
            who=who,
            lifetime_s=services.settings.ui_session_s,
            token_tag=tag,
        )
    return opened.token


def _who(actor: Actor, settings: Settings) -> tuple[str, str]:
    if actor.key_id is not None:
        return sessions.KEY, ""
    if actor == ANONYMOUS:
        return sessions.ANONYMOUS, ""
    secret = settings.admin_token.get_secret_value() if settings.admin_token else ""
    return sessions.ADMIN_TOKEN, ui_session.token_tag(secret)


def _logged_in(request: Request, token: str) -> Response:
    signer = signer_of(request)
    response = see_other(base(request))
    response.set_cookie(
        ui_session.COOKIE,
        signer.session_cookie(token),
        max_age=max(1, round(signer.lifetime_s)),
        path=ui_session.COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(ui_session.LOGIN_COOKIE, path=ui_session.COOKIE_PATH)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session (server side too: a copy of the cookie stops working) and go back
    to the login form."""
    form = await form_of(request)
    viewer = await run_in_threadpool(viewer_of, request)
    if viewer is not None:
        if not ui_session.same(form.get("csrf"), viewer.csrf):
            return error(request, viewer, 403, "The form's CSRF token is missing or wrong", "")
        await run_in_threadpool(_end, services_of(request), viewer.token)
    response = see_other(f"{base(request)}/login")
    response.delete_cookie(
        ui_session.COOKIE, path=ui_session.COOKIE_PATH, httponly=True, samesite="strict"
    )
    return response


def _end(services: UiServices, token: str) -> None:
    with unit_of_work(services.factory) as session:
        sessions.end(session=session, token=token)
