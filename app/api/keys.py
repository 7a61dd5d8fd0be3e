from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from app.api.deps import AdminDep, Limit, Offset, ReadSessionDep, SessionDep
from app.auth import audit, service
from app.auth.schemas import AuditRead, KeyCreate, KeyCreated, KeyRead
from app.core.db import MAX_ID
from app.core.untrusted import IDENTIFIER
from app.pipelines.schemas import Page

router = APIRouter(tags=["security"])
KeyId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.post("/keys", status_code=status.HTTP_201_CREATED)
def create_key(body: KeyCreate, actor: AdminDep, session: SessionDep) -> KeyCreated:
    """Create an API key; the key itself is shown only in this response."""
    row, key = service.create(session=session, name=body.name, role=body.role, by=actor)
    detail = {"name": row.name, "role": row.role, "prefix": row.prefix}
    audit.record(
        session=session, actor=actor, action="key.create", target=f"keys/{row.id}", detail=detail
    )
    return KeyCreated(**KeyRead.model_validate(row).model_dump(), key=key)


@router.get("/keys")
def list_keys(
    actor: AdminDep, session: ReadSessionDep, limit: Limit = 100, offset: Offset = 0
) -> Page[KeyRead]:
    """API keys, newest first, revoked ones included: prefixes, never the keys or hashes."""
    rows, total = service.list_page(session=session, limit=limit, offset=offset)
    items = [KeyRead.model_validate(row) for row in rows]
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.delete(
    "/keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={409: {"description": "The last active admin key"}},
)
def revoke_key(key_id: KeyId, actor: AdminDep, session: SessionDep) -> None:
    """Revoke an API key: refused from its next request on (revoking twice is a no-op)."""
    row = service.get(session=session, key_id=key_id)
    if service.revoke(session=session, row=row, by=actor):
        detail = {"name": row.name, "role": row.role, "prefix": row.prefix}
        audit.record(
            session=session,
            actor=actor,
            action="key.revoke",
            target=f"keys/{row.id}",
            detail=detail,
        )


@router.get("/audit")
def list_audit(
    actor: AdminDep,
    session: ReadSessionDep,
    limit: Limit = 100,
    offset: Offset = 0,
    action: Annotated[
        str | None, Query(max_length=64, pattern=IDENTIFIER, description="Only this action")
    ] = None,
) -> Page[AuditRead]:
    """The audit log, newest first: who changed what, when."""
    rows, total = audit.list_page(session=session, limit=limit, offset=offset, action=action)
    items = [AuditRead.model_validate(row) for row in rows]
    return Page(items=items, total=total, limit=limit, offset=offset)
