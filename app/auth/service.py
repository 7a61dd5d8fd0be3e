"""API keys: make, store (as a hash), list, revoke, and authenticate. Functions flush, never
commit: the caller owns the transaction."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

import anyio
from sqlalchemy import Engine, bindparam, func, select
from sqlalchemy.orm import Session

from app.auth.models import ApiKey
from app.auth.roles import ADMIN_TOKEN, ANONYMOUS, Actor, Role
from app.auth.usage import KeyUsage
from app.core.db import Reader, read_connection
from app.core.errors import Conflict, NotFound, Unauthorized
from app.core.settings import Settings
from app.core.time import utcnow

KEY_START = "mlops_"
# `mlops_` + 12 hex chars of public id (told apart in logs and leaks) + `_` + 256 random bits.
KEY_PATTERN = re.compile(r"mlops_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")
PREFIX_LENGTH = len(KEY_START) + 12


def new_key() -> str:
    """A fresh API key: a public id and 32 random bytes."""
    return f"{KEY_START}{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def is_key(text: str) -> bool:
    """Whether `text` has the shape of an API key this service makes."""
    return KEY_PATTERN.fullmatch(text) is not None


def hash_key(key: str) -> str:
    """The stored form of a key. A key carries 256 random bits, so plain sha256 suffices:
    there is nothing to brute-force that a slow hash would protect."""
    return hashlib.sha256(key.encode()).hexdigest()


def store(*, session: Session, key: str, name: str, role: Role, created_by: str) -> ApiKey:
    """Keep `key` (as its hash) under `name` with `role`."""
    row = ApiKey(
        name=name,
        role=role.value,
        prefix=key[:PREFIX_LENGTH],
        key_hash=hash_key(key),
        created_by=created_by,
    )
    session.add(row)
    session.flush()
    return row


def create(*, session: Session, name: str, role: Role, by: Actor) -> tuple[ApiKey, str]:
    """A new key; the plain key is returned only here."""
    key = new_key()
    return store(session=session, key=key, name=name, role=role, created_by=by.label), key


def any_exist(*, session: Session) -> bool:
    """Whether any key was ever made (revoked ones count)."""
    return session.scalars(select(ApiKey.id).limit(1)).first() is not None


def list_page(*, session: Session, limit: int, offset: int) -> tuple[list[ApiKey], int]:
    """Keys, newest first, one page, and the total count."""
    total = session.scalar(select(func.count()).select_from(ApiKey)) or 0
    rows = session.scalars(select(ApiKey).order_by(ApiKey.id.desc()).limit(limit).offset(offset))
    return list(rows), total


def get(*, session: Session, key_id: int) -> ApiKey:
    """The key with this id, or NotFound."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"API key {key_id} does not exist")
    return row


def revoke(*, session: Session, row: ApiKey, by: Actor) -> bool:
    """Revoke a key (effective on its next request); False if it already was."""
    if row.revoked_at is not None:
        return False
    if row.role == Role.admin and _active_admins(session) == [row.id]:
        raise Conflict(
            f"API key {row.id} is the last active admin key; create another admin key first"
        )
    row.revoked_at = utcnow()
    row.revoked_by = by.label
    session.flush()
    return True


def actor_of_key(*, session: Session, key_id: int) -> Actor:
    """The actor of live key `key_id` (the dashboard's session names its key by id);
    Unauthorized once the key is revoked or gone."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise Unauthorized(f"API key {key_id} does not exist", invalid=True)
    if row.revoked_at is not None:
        raise Unauthorized(f"API key {row.id} ({row.name}) was revoked", invalid=True)
    return Actor(row.name, Role(row.role), row.id)


def _active_admins(session: Session) -> list[int]:
    # Locked, so two admins revoking each other at once cannot both succeed.
    query = select(ApiKey.id).where(ApiKey.role == Role.admin, ApiKey.revoked_at.is_(None))
    return list(session.scalars(query.with_for_update()))


async def authenticate(
    *, engine: Engine, settings: Settings, token: str | None, usage: KeyUsage
) -> Actor:
    """The actor a bearer token stands for; Unauthorized if none or not a live key."""
    actor = without_lookup(settings, token)
    if actor is not None:
        return actor
    assert token is not None
    # Only a stored key's lookup reads the database: that part runs in a worker thread.
    return await anyio.to_thread.run_sync(_lookup, engine, hash_key(token), usage)


def without_lookup(settings: Settings, token: str | None) -> Actor | None:
    """The verdict that needs no database: the actor, Unauthorized, or None (look the key up)."""
    if settings.auth == "disabled":
        return ANONYMOUS
    if not token:
        raise Unauthorized("This route needs an API key: send Authorization: Bearer <key>")
    if settings.admin_token and _same(token, settings.admin_token.get_secret_value()):
        return ADMIN_TOKEN
    if not is_key(token):
        raise Unauthorized("Invalid API key", invalid=True)
    return None


def _lookup(engine: Engine, digest: str, usage: KeyUsage) -> Actor:
    with read_connection(engine) as connection:
        return lookup(connection, digest, usage)


# Built once: constructing it costs more than running it.
_BY_HASH = select(ApiKey.id, ApiKey.name, ApiKey.role, ApiKey.key_hash, ApiKey.revoked_at).where(
    ApiKey.key_hash == bindparam("digest")
)


def lookup(db: Reader, digest: str, usage: KeyUsage) -> Actor:
    """The actor of the live key whose hash is `digest`, read on `db`; Unauthorized if none."""
    # No cache: a revoked key is refused on its very next request.
    row = db.execute(_BY_HASH, {"digest": digest}).one_or_none()
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        raise Unauthorized("Invalid API key", invalid=True)
    if row.revoked_at is not None:
        raise Unauthorized(f"API key {row.id} ({row.name}) was revoked", invalid=True)
    usage.touch(row.id)
    return Actor(row.name, Role(row.role), row.id)


def _same(token: str, expected: str) -> bool:
    # Compared as digests: equal lengths, so the comparison time says nothing about either.
    return hmac.compare_digest(hash_key(token), hash_key(expected))
