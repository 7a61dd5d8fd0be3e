"""When each API key was last used, written in batches by a housekeeping job.

Authenticating only reads: a request never writes for bookkeeping (on SQLite a write would
make every GET queue for the single write lock). Uses are kept in memory and flushed every
FLUSH_S seconds, so `last_used_at` is at most that stale.
"""

from __future__ import annotations

import threading
from datetime import datetime

from sqlalchemy import or_, update

from app.auth.models import ApiKey
from app.core.db import SessionFactory, unit_of_work
from app.core.time import utcnow

FLUSH_S = 10.0


class KeyUsage:
    def __init__(self, factory: SessionFactory) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._seen: dict[int, datetime] = {}

    def touch(self, key_id: int) -> None:
        """Note that the key was used now."""
        with self._lock:
            self._seen[key_id] = utcnow()

    def flush(self) -> None:
        """Write the noted uses; one UPDATE per key used since the last flush."""
        with self._lock:
            seen, self._seen = self._seen, {}
        if not seen:
            return
        with unit_of_work(self._factory) as session:
            for key_id, at in seen.items():
                session.execute(
                    update(ApiKey)
                    .where(
                        ApiKey.id == key_id,
                        or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < at),
                    )
                    .values(last_used_at=at)
                )
