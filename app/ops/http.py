"""HTTP request counts and latency by route template, recorded by a pure ASGI middleware."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.registry import CollectorRegistry
from starlette.routing import Mount, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Requests the app has no route for: one label, however many paths are probed.
UNMATCHED = "<unmatched>"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RequestMetrics:
    """The two HTTP series, labelled by method, route template and (for counts) status."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "mlops_http_requests",
            "HTTP requests by method, route template and status code",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "mlops_http_request_duration_seconds",
            "HTTP request latency (to the end of the response) by method and route template",
            ["method", "route"],
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        # Label children by key: labels() takes a lock and builds a tuple on every call.
        self._counts: dict[tuple[str, str, str], Any] = {}
        self._latencies: dict[tuple[str, str], Any] = {}

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request and observe its latency."""
        key = (method, route)
        latency = self._latencies.get(key)
        if latency is None:
            latency = self._latencies[key] = self.latency.labels(method, route)
        latency.observe(seconds)
        count_key = (method, route, str(status))
        count = self._counts.get(count_key)
        if count is None:
            count = self._counts[count_key] = self.requests.labels(*count_key)
        count.inc()


class RouteTemplates:
    """The path template of a request's route (`/api/v1/runs/{run_id}`), from the app's
    full templates; remembered per route object, so a routed request costs a dict lookup."""

    def __init__(self, templates: Callable[[], Iterable[str]]) -> None:
        self._templates = templates
        self._patterns: list[tuple[re.Pattern[str], str]] | None = None
        # By id: routes are not hashable, and live as long as the app.
        self._by_route: dict[int, str] = {}

    def of(self, scope: Scope) -> str:
        """The template, or UNMATCHED when no route serves this path."""
        route = scope.get("route")
        if route is None:
            # Answered before routing (a 401 from authentication, a 413) or by no route.
            return self._match(scope["path"]) or UNMATCHED
        found = self._by_route.get(id(route))
        if found is None:
            found = self._match(scope["path"]) or _fallback(route)
            self._by_route[id(route)] = found
        return found

    def _match(self, path: str) -> str | None:
        if self._patterns is None:
            # Built at the first request: by then every router is included.
            templates = sorted(set(self._templates()))
            self._patterns = [(compile_path(t)[0], t) for t in templates]
        return next((t for pattern, t in self._patterns if pattern.match(path)), None)


def _fallback(route: object) -> str:
    path = getattr(route, "path", None)
    if isinstance(route, Mount) and isinstance(path, str):
        return f"{path}/{{path}}"
    return UNMATCHED


class RecordRequests:
    """Outermost middleware: times each HTTP request and labels it by its route's path
    template, never by the raw path (whose ids and names would make a series each)."""

    def __init__(self, app: ASGIApp, *, metrics: RequestMetrics, routes: RouteTemplates) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app fails before it starts a response

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.record(scope["method"], self.routes.of(scope), status, elapsed)
