"""Who is looking at a dashboard page, and whether they may do what a form asks.

Roles are the API's: the same Role.allows decides, and a page shows an action only to those
the server would let do it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.requests import Request

from app.auth import service as auth
from app.auth import sessions
from app.auth.models import DashboardSession
from app.auth.roles import ADMIN_TOKEN, ANONYMOUS, Actor, Role
from app.auth.usage import KeyUsage
from app.core.db import SessionFactory, read_only_unit
from app.core.errors import DomainError, Forbidden, Unauthorized
from app.core.settings import Settings
from app.ui import session as ui_session
from app.ui.session import Signer


class Executor(Protocol):
    def submit(self, run_id: int) -> None: ...


class Scheduler(Protocol):
    def nudge(self) -> None: ...


class UiServices(Protocol):
    """What the dashboard uses of the app's services (app.api.deps.Services provides it)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def engine(self) -> Engine: ...
    @property
    def key_usage(self) -> KeyUsage: ...
    @property
    def factory(self) -> SessionFactory: ...
    @property
    def executor(self) -> Executor: ...
    @property
    def scheduler(self) -> Scheduler: ...


class CsrfRefused(DomainError):
    status_code = 403
    title = "Forbidden"


@dataclass(frozen=True)
class Viewer:
    """The person behind a dashboard request: their actor, session token and CSRF token."""

    actor: Actor
    token: str
    csrf: str
    who: str

    def may(self, role: Role) -> bool:
        """Whether this person may do what needs `role` (pages show actions by this)."""
        return self.actor.role.allows(role)


def services_of(request: Request) -> UiServices:
    """The app's services."""
    services: UiServices = request.app.state.services
    return services


def signer_of(request: Request) -> Signer:
    """The app's session signer."""
    signer: Signer = request.app.state.ui_signer
    return signer


def viewer_of(request: Request) -> Viewer | None:
    """The logged-in person, or None (no session, expired, ended, forged, key revoked)."""
    signer = signer_of(request)
    token = signer.read_session(request.cookies.get(ui_session.COOKIE))
    if token is None:
        return None
    services = services_of(request)
    try:
        with read_only_unit(services.factory) as db:
            row = sessions.find_live(session=db, token=token)
            if row is None:
                return None
            actor, who = _actor_of(row, services.settings, db), row.who
    except Unauthorized:
        return None
    return Viewer(actor, token, signer.csrf(token), who)


def _actor_of(row: DashboardSession, settings: Settings, db: Session) -> Actor:
    if settings.auth == "disabled":
        return ANONYMOUS
    if row.who == sessions.ADMIN_TOKEN:
        token = settings.admin_token
        if token is None or ui_session.token_tag(token.get_secret_value()) != row.token_tag:
            raise Unauthorized("The admin token this session was opened with has changed")
        return ADMIN_TOKEN
    if row.who == sessions.KEY and row.key_id is not None:
        return auth.actor_of_key(session=db, key_id=row.key_id)
    raise Unauthorized("This session was opened while authentication was disabled")


def authorize_post(viewer: Viewer | None, csrf: str | None, role: Role) -> Viewer:
    """The viewer, if logged in, the form carries their CSRF token, and their role suffices."""
    if viewer is None:
        raise Unauthorized("Your session has ended; log in again")
    if not ui_session.same(csrf, viewer.csrf):
        raise CsrfRefused("The form's CSRF token is missing or wrong; reload the page and retry")
    if not viewer.may(role):
        actor = viewer.actor
        raise Forbidden(f"This needs the {role} role; {actor.label} has {actor.role}")
    return viewer
