"""The audit log: who changed what, when. Functions flush, never commit, so an entry commits
with the change it records, or not at all."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth.models import AuditEntry
from app.auth.roles import Actor

MASK = "***"
# Details name what changed, never secret values; this is the guard if one slips in.
_SECRET_NAMES = re.compile(r"secret|token|password|passwd|authorization|api_?key|headers", re.I)


def record(
    *,
    session: Session,
    actor: Actor,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry, e.g. action `pipeline.pause` on target `pipelines/churn`."""
    entry = AuditEntry(
        actor_key_id=actor.key_id,
        actor=actor.name,
        action=action,
        target=target,
        detail=masked(detail or {}),
    )
    session.add(entry)
    session.flush()
    return entry


def list_page(
    *, session: Session, limit: int, offset: int, action: str | None = None
) -> tuple[list[AuditEntry], int]:
    """Entries newest first, optionally of one action, one page, and the total count."""
    where = [AuditEntry.action == action] if action else []
    total = session.scalar(select(func.count()).select_from(AuditEntry).where(*where)) or 0
    rows = session.scalars(
        select(AuditEntry).where(*where).order_by(AuditEntry.id.desc()).limit(limit).offset(offset)
    )
    return list(rows), total


def masked(detail: dict[str, Any]) -> dict[str, Any]:
    """`detail` with the value of every secret-sounding field replaced by `***`."""
    return {
        key: MASK if _SECRET_NAMES.search(key) else _masked(value) for key, value in detail.items()
    }


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return masked(value)
    if isinstance(value, list):
        return [_masked(item) for item in value]
    return value
