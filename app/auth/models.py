from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.core.time import utcnow


class ApiKey(Base):
    """An API key: only its sha256 is kept; the key itself is shown once, at creation."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    # The key's public start (`mlops_3f9a1c2b7d4e`), so a leaked key can be told apart.
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    # Looked up on every request: the unique constraint's index makes that one index probe.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(128))


class AuditEntry(Base):
    """Append-only: who did what to which resource, and when. Never holds a secret."""

    __tablename__ = "audit_log"
    # Ids are never reused, also on SQLite (AUTOINCREMENT): an id names one entry for ever.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    # No foreign key: entries outlive what they name, and keys are only ever revoked.
    actor_key_id: Mapped[int | None]
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(255))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class DashboardSession(Base):
    """A login to the web dashboard: its cookie names it by a random token (kept as a hash);
    it ends at `expires_at`, at logout, or when its key is revoked."""

    __tablename__ = "dashboard_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Who logged in: an API key (no foreign key, as in the audit log), the admin token
    # (`token_tag`: a digest of the token it was opened with), or anyone (auth disabled).
    who: Mapped[str] = mapped_column(String(16))
    key_id: Mapped[int | None]
    token_tag: Mapped[str] = mapped_column(String(16), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    ended_at: Mapped[datetime | None]
