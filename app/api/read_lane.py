"""The read lane: the hottest GETs answered before any other middleware and the router.

Dashboards and `watch mlops pipeline status` poll four reads: one run, a pipeline's status,
one pipeline and the first page of pipelines. Through the app each pays for every middleware,
route matching over every route, dependency solving, and a key lookup and the read on two
threadpool hops with two pooled connections. Here the path is matched by four patterns, and
the key lookup and the read share one kept connection, on the event loop with SQLite and on a
reader thread with PostgreSQL (app.core.readers). Answers and key lookups are kept while the
database has committed nothing since they were read (app.api.read_cache), so a repeated read
costs one statement that asks the database for its version.

The lane answers only what it is sure of: a 200 for a viewer or above, built by the very
functions the routes call. Anything else (another method, a query string, a missing or
unknown key, no such run or pipeline, a database error) goes on to the app, which answers it
as always, so every error keeps its one shape. Its own answers carry the request id and are
counted in the request metrics, as the app's middlewares would.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.deps import Services
from app.api.pipelines import PAGE_SIZE
from app.api.read_cache import Answer, Kept
from app.auth import service as auth
from app.auth.middleware import bearer_token
from app.auth.roles import Actor, Role
from app.core import logs
from app.core.db import Reader
from app.core.errors import DomainError
from app.core.request_id import HEADER, accepted
from app.core.time import utcnow
from app.pipelines import views as pipeline_views
from app.runs import views as run_views
from app.status.service import status_of

Read = Callable[[Reader], Answer]
REQUEST_ID = HEADER.lower().encode()


def _run(match: re.Match[str]) -> Read:
    run_id = int(match["run_id"])
    return lambda session: Answer(run_views.read_json(session=session, run_id=run_id))


def _status(match: re.Match[str]) -> Read:
    name = match["name"]

    def read(session: Reader) -> Answer:
        now = utcnow()
        status = status_of(session=session, name=name, now=now)
        # The next fire time is the clock's part: the answer holds from now until then.
        return Answer(status.model_dump_json().encode(), since=now, until=status.next_run_at)

    return read


def _pipeline(match: re.Match[str]) -> Read:
    name = match["name"]
    return lambda session: Answer(pipeline_views.one_json(session=session, name=name))


def _first_page(match: re.Match[str]) -> Read:
    return lambda session: Answer(
        pipeline_views.page_json(session=session, limit=PAGE_SIZE, offset=0, include_archived=False)
    )


@dataclass(frozen=True)
class Lane:
    pattern: re.Pattern[str]
    template: str  # the route's path template, as the request metrics label the app's routes
    read: Callable[[re.Match[str]], Read]


def lanes(api: str) -> tuple[Lane, ...]:
    """The reads the lane serves, under the API prefix `api`."""
    return (
        Lane(re.compile(rf"{api}/runs/(?P<run_id>[0-9]{{1,10}})"), f"{api}/runs/{{run_id}}", _run),
        Lane(
            re.compile(rf"{api}/pipelines/(?P<name>[^/]+)/status"),
            f"{api}/pipelines/{{name}}/status",
            _status,
        ),
        Lane(
            re.compile(rf"{api}/pipelines/(?P<name>[^/]+)"), f"{api}/pipelines/{{name}}", _pipeline
        ),
        Lane(re.compile(rf"{api}/pipelines"), f"{api}/pipelines", _first_page),
    )


class ReadLane:
    """Serves the lane's reads; passes every other request, and every read it cannot answer
    with a 200, to the app."""

    def __init__(self, app: ASGIApp, *, api: str) -> None:
        self.app = app
        self.lanes = lanes(api)
        self.answers: Kept[Answer] = Kept()
        self.actors: Kept[Actor] = Kept()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        found = self._read_for(scope)
        if found is not None:
            lane, read = found
            headers = Headers(scope=scope)
            body = await self._answer(scope, headers, read)
            if body is not None:
                request_id = accepted(headers.get(HEADER)) or uuid.uuid4().hex
                with logs.bound(request_id=request_id):  # for the server's access line
                    await _send_json(send, body, request_id)
                services: Services = scope["app"].state.services
                elapsed = time.perf_counter() - started
                services.requests.record("GET", lane.template, 200, elapsed)
                return
        await self.app(scope, receive, send)

    def _read_for(self, scope: Scope) -> tuple[Lane, Read] | None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["query_string"]:
            return None
        path = scope["path"]
        for lane in self.lanes:
            match = lane.pattern.fullmatch(path)
            if match is not None:
                return lane, lane.read(match)
        return None

    async def _answer(self, scope: Scope, headers: Headers, read: Read) -> bytes | None:
        services: Services = scope["app"].state.services
        token = bearer_token(headers.get("authorization"))
        try:
            actor = auth.without_lookup(services.settings, token)
        except DomainError:
            return None
        digest = "" if actor is not None or token is None else auth.hash_key(token)
        path: str = scope["path"]
        try:
            version = await services.readers.version()
            actor = actor or self._kept_actor(digest, version, services)
            kept = self.answers.get(path, version)
            if actor is not None and kept is not None and kept.holds_at(utcnow()):
                return kept.body if _may_read(actor) else None

            def fresh(connection: Connection) -> bytes | None:
                found = actor or self._looked_up(connection, version, digest, services)
                if found is None or not _may_read(found):
                    return None
                try:
                    answer = read(connection)
                except DomainError:
                    return None
                self.answers.put(path, version, answer, len(answer.body))
                return answer.body

            return await services.readers.read(fresh)
        except SQLAlchemyError:
            return None  # the app reads again, and answers or reports the error as always

    def _kept_actor(self, digest: str, version: Hashable, services: Services) -> Actor | None:
        """The key's actor as looked up at `version`, if it was."""
        actor = self.actors.get(digest, version)
        if actor is not None and actor.key_id is not None:
            services.key_usage.touch(actor.key_id)
        return actor

    def _looked_up(
        self, connection: Connection, version: Hashable, digest: str, services: Services
    ) -> Actor | None:
        """The key's actor, looked up now and kept under `version`; None for no live key."""
        try:
            actor = auth.lookup(connection, digest, services.key_usage)
        except DomainError:
            return None
        self.actors.put(digest, version, actor)
        return actor


async def _send_json(send: Send, body: bytes, request_id: str) -> None:
    headers = [
        (b"content-length", str(len(body)).encode()),
        (b"content-type", b"application/json"),
        (REQUEST_ID, request_id.encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _may_read(actor: Actor) -> bool:
    return actor.role.allows(Role.viewer)
