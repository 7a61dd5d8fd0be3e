"""Authentication before anything reads the request.

FastAPI parses a JSON body before it runs a route's dependencies, so a route guarded by a
dependency alone would answer a malformed body with a 422 to a caller without a key. Here a
request to a protected path is authenticated first and answered 401 without a live key; the
route's dependency then checks the role against the actor found here, with no second lookup.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.auth import service as auth
from app.core.errors import Unauthorized
from app.core.problems import domain_problem

STATE_KEY = "actor"


class AuthenticateFirst:
    """401 problem+json for a protected path without a live API key, before the body is read."""

    def __init__(self, app: ASGIApp, *, protected: str, open_paths: str) -> None:
        self.app = app
        self.protected = re.compile(protected)
        self.open = re.compile(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not self._guards(path):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        services = scope["app"].state.services
        try:
            actor = await auth.authenticate(
                engine=services.engine,
                settings=services.settings,
                token=bearer_token(request.headers.get("authorization")),
                usage=services.key_usage,
            )
        except Unauthorized as exc:
            await domain_problem(exc, request)(scope, receive, send)
            return
        scope.setdefault("state", {})[STATE_KEY] = actor
        await self.app(scope, receive, send)

    def _guards(self, path: str) -> bool:
        return bool(self.protected.match(path)) and not self.open.fullmatch(path)


def bearer_token(header: str | None) -> str | None:
    """The credentials of an `Authorization: Bearer <token>` header (scheme case-insensitive)."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
