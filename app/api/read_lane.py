"""The read lane: the hottest GETs answered without the router's per-request work.

Dashboards and `watch mlops pipeline status` poll four reads: one run, a pipeline's status,
one pipeline and the first page of pipelines. Through the router each pays for route
matching over every route (twice, in FastAPI's included routers), dependency solving, and a
key lookup and the read on two threadpool hops with two pooled connections. Here the path is
matched by four patterns, and the key lookup and the read share one kept connection, on the
event loop with SQLite and on a reader thread with PostgreSQL (app.core.readers).

The lane answers only what it is sure of: a 200 for a viewer or above, built by the very
functions the routes call. Anything else (another method, a query string, a missing or
unknown key, no such run or pipeline) goes on to the app, which answers it as always, so
every error keeps its one shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.deps import Services
from app.api.pipelines import PAGE_SIZE
from app.auth import service as auth
from app.auth.middleware import bearer_token
from app.auth.roles import Actor, Role
from app.core.db import Reader
from app.core.errors import DomainError
from app.pipelines import views as pipeline_views
from app.runs import views as run_views
from app.status.service import status_of

Read = Callable[[Reader], bytes]


def _run(match: re.Match[str]) -> Read:
    run_id = int(match["run_id"])
    return lambda session: run_views.read_json(session=session, run_id=run_id)


def _status(match: re.Match[str]) -> Read:
    name = match["name"]
    return lambda session: status_of(session=session, name=name).model_dump_json().encode()


def _pipeline(match: re.Match[str]) -> Read:
    name = match["name"]
    return lambda session: pipeline_views.one_json(session=session, name=name)


def _first_page(match: re.Match[str]) -> Read:
    return lambda session: pipeline_views.page_json(
        session=session, limit=PAGE_SIZE, offset=0, include_archived=False
    )


@dataclass(frozen=True)
class Lane:
    pattern: re.Pattern[str]
    read: Callable[[re.Match[str]], Read]


def lanes(api: str) -> tuple[Lane, ...]:
    """The reads the lane serves, under the API prefix `api`."""
    return (
        Lane(re.compile(rf"{api}/runs/(?P<run_id>[0-9]{{1,10}})"), _run),
        Lane(re.compile(rf"{api}/pipelines/(?P<name>[^/]+)/status"), _status),
        Lane(re.compile(rf"{api}/pipelines/(?P<name>[^/]+)"), _pipeline),
        Lane(re.compile(rf"{api}/pipelines"), _first_page),
    )


class ReadLane:
    """Serves the lane's reads; passes every other request, and every read it cannot answer
    with a 200, to the app."""

    def __init__(self, app: ASGIApp, *, api: str) -> None:
        self.app = app
        self.lanes = lanes(api)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane, read = self._read_for(scope)
        body = None if read is None else await self._answer(scope, read)
        if body is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = lane  # what the request metrics label it by (ops.http.RouteTemplates)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _read_for(self, scope: Scope) -> tuple[Lane | None, Read | None]:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["query_string"]:
            return None, None
        path = scope["path"]
        for lane in self.lanes:
            match = lane.pattern.fullmatch(path)
            if match is not None:
                return lane, lane.read(match)
        return None, None

    async def _answer(self, scope: Scope, read: Read) -> bytes | None:
        services: Services = scope["app"].state.services
        token = bearer_token(Headers(scope=scope).get("authorization"))
        try:
            actor = auth.without_lookup(services.settings, token)
        except DomainError:
            return None
        digest = None if actor is not None or token is None else auth.hash_key(token)

        def answer(connection: Reader) -> bytes | None:
            try:
                found = actor or auth.lookup(connection, digest or "", services.key_usage)
                return read(connection) if _may_read(found) else None
            except DomainError:
                return None

        return await services.readers.read(answer)


def _may_read(actor: Actor) -> bool:
    return actor.role.allows(Role.viewer)
