"""The read lane's answers, kept while the database has committed nothing since.

Each answer is kept with the database version read at the start of its request
(`Readers.version`) and is served again only while the version read at the start of a later
request is still the same: no connection, process or replica has committed anything in
between, so reading afresh would give the very same rows. A version never comes back once
the database has moved on, so an answer whose read saw a commit made after its version was
taken is kept under a version no later request will find: it is never served.

One part of an answer depends on the clock as well: a status's next fire time. Such an
answer is kept only until that time, after which the status is read afresh.

The same goes for the API keys the lane looks up: a key revoked through any replica is a
commit, so it is refused on its very next request.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

V = TypeVar("V")
MAX_ENTRIES = 4096
MAX_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Answer:
    """A read's body, right whatever the clock says, or only from `since` until `until`."""

    body: bytes
    since: datetime | None = None
    until: datetime | None = None

    def holds_at(self, now: datetime) -> bool:
        """Whether the clock leaves the body right at `now`."""
        return self.since is None or (
            self.since <= now and (self.until is None or now < self.until)
        )


@dataclass(frozen=True)
class _Kept(Generic[V]):
    version: Hashable
    value: V


class Kept(Generic[V]):
    """Values by key, each served only at the database version it was read at; bounded by
    count and by the sizes its callers give."""

    def __init__(self, *, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: dict[Hashable, _Kept[V]] = {}
        self._latest: Hashable = None
        self._bytes = 0

    def get(self, key: Hashable, version: Hashable) -> V | None:
        """The value kept for `key` if it was read at `version`."""
        kept = self._entries.get(key)
        return kept.value if kept is not None and kept.version == version else None

    def put(self, key: Hashable, version: Hashable, value: V, size: int = 0) -> None:
        """Keep `value`, read at `version`; whatever was read at another version goes."""
        full = len(self._entries) >= self.max_entries or self._bytes + size > self.max_bytes
        if version != self._latest or full:
            self._entries = {}
            self._latest = version
            self._bytes = 0
        self._entries[key] = _Kept(version, value)
        self._bytes += size
