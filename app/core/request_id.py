"""`X-Request-ID`: taken from the request when it is safe to log, else made; set for the
request's log lines and echoed on its response, whatever answered (a route, the 401 of the
authentication middleware, or the 500 of the server-error handler)."""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core import logs

HEADER = "X-Request-ID"
# Bounded and plain: a caller's id goes into log lines and headers as it is.
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+=/-]{0,127}")


def accepted(value: str | None) -> str | None:
    """The caller's request id if it is 1-128 safe characters, else None."""
    if value is None or not SAFE_ID.fullmatch(value):
        return None
    return value


class RequestIdMiddleware:
    """Bind the request id for the request's logs and add it to the response headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accepted(Headers(scope=scope).get(HEADER)) or uuid.uuid4().hex

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        with logs.bound(request_id=request_id):
            await self.app(scope, receive, send_with_id)
