"""Roles and the actor behind a request: who asked, with which key, allowed to do what."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """viewer < operator < admin: each role may do everything the roles below it may."""

    viewer = "viewer"
    operator = "operator"
    admin = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, required: Role) -> bool:
        """Whether this role may call a route that needs `required`."""
        return self.rank >= required.rank


@dataclass(frozen=True)
class Actor:
    """Who a change is attributed to: an API key (id and name), or a named non-key actor."""

    name: str
    role: Role
    key_id: int | None = None

    @property
    def label(self) -> str:
        """How ledgers and runs name the actor: `ci-deployer (key 4)`, or just the name."""
        return self.name if self.key_id is None else f"{self.name} (key {self.key_id})"


# Automatic changes (scheduled runs, auto-deploys) are the service's own.
SYSTEM = Actor("system", Role.admin)
# The token in MLOPS_ADMIN_TOKEN: configuration, not a row, so it has no key id.
ADMIN_TOKEN = Actor("admin token (MLOPS_ADMIN_TOKEN)", Role.admin)
# MLOPS_AUTH=disabled: every request, for local experiments only.
ANONYMOUS = Actor("anonymous (auth disabled)", Role.admin)
