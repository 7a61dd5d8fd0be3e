"""Request body size limits, enforced before any route sees the body.

Every body is read here in full (routes read it whole anyway) and refused with a 413 as soon
as it passes its limit, whether or not it declared a Content-Length; a route runs only with a
body under the limit, so a refused request changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.problems import problem


@dataclass(frozen=True)
class Limit:
    max_bytes: int
    setting: str


LimitFor = Callable[[str], Limit]


def limit_by_path(
    default: Callable[[], Limit], special: dict[str, Callable[[], Limit]]
) -> LimitFor:
    """The limit for a path: the first `special` pattern that matches it in full, else default.

    Limits are callables so that they are read on each request (settings can change in tests).
    """
    compiled = [(re.compile(pattern), limit) for pattern, limit in special.items()]

    def limit_for(path: str) -> Limit:
        return next((limit() for regex, limit in compiled if regex.fullmatch(path)), default())

    return limit_for


class BodyLimitMiddleware:
    """Reads each request body up to its limit, then hands it to the app; 413 past it."""

    def __init__(self, app: ASGIApp, limit_for: LimitFor) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        if _declared_length(scope) > limit.max_bytes:
            await _too_large(scope, send, limit)
            return
        body = await _read_body(receive, limit.max_bytes)
        if body is None:
            await _too_large(scope, send, limit)
            return
        await self.app(scope, _replay(body, receive), send)


def _declared_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


async def _read_body(receive: Receive, max_bytes: int) -> bytes | None:
    """The whole body, or None once it passes `max_bytes` (the rest is left unread)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)  # the client went away; the app will see it
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # e.g. http.disconnect, for streaming responses

    return replay


async def _too_large(scope: Scope, send: Send, limit: Limit) -> None:
    detail = (
        f"The request body is larger than the limit of {limit.max_bytes} bytes ({limit.setting})"
    )
    response = problem(413, "Payload too large", detail, Request(scope))
    # The unread rest of the body is not waited for: the connection closes after this.
    response.headers["connection"] = "close"
    await response(scope, _nothing, send)


async def _nothing() -> Message:
    return {"type": "http.disconnect"}
