"""Templates, the form reader and the answers every dashboard route shares."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi.templating import Jinja2Templates
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app.auth.roles import Role
from app.ui.deps import Viewer

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
# Every asset is the app's own; no inline script runs; no page may frame this one.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


def when(value: datetime | None) -> str:
    """A timestamp as the CLI shows it: UTC, `YYYY-MM-DD HH:MM:SS`."""
    return "—" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def seconds(value: float | None) -> str:
    """A duration for people: 0.4 s, 12.3 s, 4 min 05 s."""
    if value is None:
        return "—"
    if value < 60:
        return f"{value:.1f} s"
    minutes, rest = divmod(int(value), 60)
    return f"{minutes} min {rest:02d} s"


TEMPLATES.env.filters["when"] = when
TEMPLATES.env.filters["seconds"] = seconds


def root(request: Request) -> str:
    """The app's URL prefix (behind a proxy that strips one, it is put back)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def base(request: Request) -> str:
    """The dashboard's URL prefix."""
    return root(request) + "/ui"


def page(
    request: Request, name: str, viewer: Viewer | None, status: int = 200, **context: Any
) -> Response:
    """A rendered template, with what every page needs (who, their CSRF token, may they act)."""
    response = TEMPLATES.TemplateResponse(
        request,
        name,
        {
            "root": root(request),
            "base": base(request),
            "viewer": viewer,
            "csrf": viewer.csrf if viewer else "",
            "can_operate": viewer is not None and viewer.may(Role.operator),
            **context,
        },
        status_code=status,
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def error(request: Request, viewer: Viewer | None, status: int, detail: str, back: str) -> Response:
    """An error page that says what went wrong and links back."""
    return page(request, "error.html", viewer, status, detail=detail, back=back, code=status)


def see_other(url: str) -> RedirectResponse:
    """After a form post: go to `url` with a GET."""
    return RedirectResponse(url, status_code=303)


async def form_of(request: Request) -> dict[str, str]:
    """The fields of a urlencoded form (the first value of each)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {name: values[0] for name, values in parse_qs(body, keep_blank_values=True).items()}
