"""Dashboard sessions: open one for an actor, find a live one by its token, end one.
Functions flush, never commit."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.auth.models import DashboardSession
from app.auth.roles import Actor
from app.core.time import utcnow

KEY = "key"
ADMIN_TOKEN = "admin-token"  # noqa: S105 (names who logged in; not a secret)
ANONYMOUS = "anonymous"
# Ended and expired rows are kept this long (to tell "expired" from "never existed"), then
# removed when someone next logs in.
KEEP_ENDED = timedelta(days=1)


@dataclass(frozen=True)
class Opened:
    token: str
    row: DashboardSession


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(
    *, session: Session, actor: Actor, who: str, lifetime_s: float, token_tag: str = ""
) -> Opened:
    """A new session for `actor`, live for `lifetime_s`; its token is returned only here."""
    now = utcnow()
    session.execute(delete(DashboardSession).where(DashboardSession.expires_at < now - KEEP_ENDED))
    token = secrets.token_urlsafe(32)
    row = DashboardSession(
        token_hash=_digest(token),
        who=who,
        key_id=actor.key_id,
        token_tag=token_tag,
        created_at=now,
        expires_at=now + timedelta(seconds=lifetime_s),
    )
    session.add(row)
    session.flush()
    return Opened(token, row)


def find_live(*, session: Session, token: str) -> DashboardSession | None:
    """The session `token` names, unless it ended or expired."""
    row = session.scalars(
        select(DashboardSession).where(DashboardSession.token_hash == _digest(token))
    ).one_or_none()
    if row is None or row.ended_at is not None or row.expires_at <= utcnow():
        return None
    return row


def end(*, session: Session, token: str) -> None:
    """End the session `token` names (logout); a copy of its cookie no longer works."""
    row = find_live(session=session, token=token)
    if row is not None:
        row.ended_at = utcnow()
        session.flush()
