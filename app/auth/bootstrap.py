"""The first admin key: made at start when no key exists, and written to a file only the
server's user can read, so the operator (and the CLI) can pick it up without it being logged.

Responsible for: the MLOPS_AUTH=disabled warning, the bootstrap key and its token file.
Replicas starting together on one database make one key: the check and the insert happen
under a lock (an advisory lock on PostgreSQL; SQLite's write lock otherwise).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.auth import service as keys
from app.auth.roles import SYSTEM, Role
from app.core.db import SessionFactory, unit_of_work
from app.core.settings import Settings

log = logging.getLogger(__name__)
ADMIN_KEY_FILE = "admin-token"
BOOTSTRAP_NAME = "bootstrap"
BOOTSTRAP_LOCK_KEY = 7_412_093_552


def token_path(settings: Settings) -> Path:
    """Where the bootstrap admin key is written (the CLI looks there too)."""
    return settings.data_dir.resolve() / ADMIN_KEY_FILE


def bootstrap(settings: Settings, factory: SessionFactory) -> None:
    """Warn when auth is off; make the first admin key when none exists and none is configured."""
    if settings.auth == "disabled":
        log.warning(
            "MLOPS_AUTH=disabled: every request is served as an admin, without an API key. "
            "Use this only for local experiments."
        )
        return
    if settings.admin_token:
        log.info("MLOPS_ADMIN_TOKEN is set: it is accepted as an admin key")
        return
    path = token_path(settings)
    with unit_of_work(factory) as session:
        _lock(session)
        if keys.any_exist(session=session):
            _mention(path)
            return
        key = _token(path)
        row = keys.store(
            session=session, key=key, name=BOOTSTRAP_NAME, role=Role.admin, created_by=SYSTEM.label
        )
    # The path, never the key: logs are read by more people than the data directory.
    log.warning("Created admin API key %s (%s); the key is in %s", row.id, row.prefix, path)


def _lock(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SELECT pg_advisory_xact_lock({BOOTSTRAP_LOCK_KEY})"))


def _mention(path: Path) -> None:
    if path.exists():
        log.info("The bootstrap admin API key is in %s", path)


def _token(path: Path) -> str:
    try:
        return _read_token(path) or _write_token(path)
    except FileExistsError:
        # Another process sharing the data directory (with a database of its own) wrote it
        # between our look and our write; its key serves both.
        return _read_token(path) or _write_token(path)


def _read_token(path: Path) -> str | None:
    """The key in a token file left by an earlier start whose key never reached this database
    (a crash before commit, or a new database): reused, never overwritten."""
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        return None
    if not keys.is_key(token):
        raise RuntimeError(
            f"{path} exists but holds no API key; remove it (a new admin key is then made "
            "and written there) or set MLOPS_ADMIN_TOKEN"
        )
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        log.warning("%s can be read by other users; restrict it: chmod 600 %s", path, path)
    return token


def _write_token(path: Path) -> str:
    """A new key, in a file created with mode 0600 (never readable by others, not even
    briefly) that must not exist yet, so nothing is overwritten."""
    key = keys.new_key()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(key + "\n")
        file.flush()
        os.fsync(file.fileno())
    return key
