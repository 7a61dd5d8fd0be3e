"""One handler turns every error into RFC 9457 application/problem+json."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.errors import DomainError
from app.core.openapi import install_problem_schema
from app.core.untrusted import PATTERN_HINTS, unreadable

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"


def problem(status: int, title: str, detail: str, request: Request, **extra: Any) -> JSONResponse:
    """A problem+json response."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body["instance"] = request.url.path
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def dotted(parts: tuple[int | str, ...]) -> str:
    """A field path as `a.b.0.c`; a key that is empty or holds a dot is quoted (`a."".c`)."""
    # FastAPI prefixes 'body'/'query'/...; keep it, it tells the caller where to look.
    return ".".join(_part(p) for p in parts)


def _part(part: int | str) -> str:
    text = str(part)
    return text if text and "." not in text else json.dumps(text)


def validation_errors(errors: list[Any]) -> list[dict[str, str]]:
    """Pydantic errors as [{loc, msg}] with dotted field paths."""
    return [{"loc": dotted(tuple(e["loc"])), "msg": _message(e)} for e in errors]


def _message(error: Any) -> str:
    if error.get("type") == "string_pattern_mismatch":
        hint = PATTERN_HINTS.get(str(error.get("ctx", {}).get("pattern")))
        if hint is not None:
            return hint
    # Our validators' own words, without pydantic's "Value error, " in front.
    return str(error["msg"]).removeprefix("Value error, ")


def summary(errors: list[dict[str, str]]) -> str:
    """A one-line detail naming the first bad field."""
    if not errors:
        return "Invalid input"
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{first['loc']}: {first['msg']}{more}"


def domain_problem(exc: DomainError, request: Request) -> JSONResponse:
    """The problem+json response for a domain error, with its headers."""
    response = problem(exc.status_code, exc.title, exc.detail, request, **exc.extra)
    response.headers.update(exc.headers)
    return response


async def _domain(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return domain_problem(exc, request)


async def _request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(list(exc.errors()))
    return problem(422, "Invalid input", summary(errors), request, errors=errors)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.detail == "There was an error parsing the body" and exc.__cause__ is not None:
        return _unreadable_body(request, exc.__cause__)
    if exc.status_code == 405:
        return _method_not_allowed(request)
    detail = exc.detail if isinstance(exc.detail, str) else "Error"
    response = problem(exc.status_code, detail, detail, request)
    for key, value in (exc.headers or {}).items():
        response.headers[key] = value
    return response


def _method_not_allowed(request: Request) -> JSONResponse:
    """405 with every method the path takes in `Allow` (Starlette names only the methods of
    the first route on the path, and FastAPI makes one route per method)."""
    allowed = sorted(allowed_methods(request))
    detail = f"Method {request.method} is not allowed on {request.url.path}"
    detail += f"; allowed: {', '.join(allowed)}"
    response = problem(405, "Method Not Allowed", detail, request)
    response.headers["Allow"] = ", ".join(allowed)
    return response


def allowed_methods(request: Request) -> set[str]:
    """The methods of every route whose path matches the request's."""
    path = request.url.path
    methods: set[str] = set()
    for route in _endpoints(request.app.router.routes):
        if route.path_regex.match(path):
            methods |= route.methods or set()
    return methods


def _endpoints(routes: list[Any]) -> Iterator[Any]:
    """Routes with a path and methods, looking inside FastAPI's included routers."""
    for route in routes:
        nested = getattr(route, "effective_route_contexts", None)
        if callable(nested):
            yield from nested()
        elif getattr(route, "path_regex", None) is not None and getattr(route, "methods", None):
            yield route


def _unreadable_body(request: Request, cause: BaseException) -> JSONResponse:
    """FastAPI's "error parsing the body" (not UTF-8, nested too deeply, an integer of
    thousands of digits), saying which."""
    if isinstance(cause, RecursionError):
        reason = "is nested too deeply"
    elif isinstance(cause, UnicodeDecodeError):
        reason = f"is not UTF-8 text: {cause.reason} at byte {cause.start}"
    elif isinstance(cause, ValueError):
        reason = unreadable(cause)
    else:
        reason = f"could not be parsed: {' '.join(str(cause).split())[:200]}"
    errors = [{"loc": "body", "msg": reason}]
    # 422, as FastAPI answers a JSON syntax error and the spec routes any unreadable body.
    return problem(422, "Invalid input", f"body: {reason}", request, errors=errors)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    if _is_nul_refused(exc):
        # Inputs are checked for NUL characters where they are read; this is the net for a
        # text value that reached PostgreSQL anyway. The transaction was rolled back.
        reason = "A text value contains a NUL character (\\u0000), which cannot be stored"
        return problem(422, "Invalid input", reason, request)
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "Internal server error", "An unexpected error occurred", request)


def _is_nul_refused(exc: Exception) -> bool:
    return isinstance(exc, DataError) and "NUL (0x00)" in str(exc.orig)


def install_problem_handlers(app: FastAPI) -> None:
    """Register the handlers on the app, and document their answers in its OpenAPI schema."""
    install_problem_schema(app)
    app.add_exception_handler(DomainError, _domain)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
