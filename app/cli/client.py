"""The CLI's HTTP client, and how failures become exit codes (1: server said no, 2: no server)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import httpx
import typer

DEFAULT_URL = "http://127.0.0.1:8000"
API_PREFIX = "/api/v1"

# Also accepted after the subcommand (`mlops pipeline list --url …`), where it wins over the
# global option; MLOPS_URL is read by the global option only.
UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Base URL of the mlops server (overrides the global --url)"),
]


@dataclass(frozen=True)
class Globals:
    """The options given before the subcommand: `mlops --url U --token T pipeline list`."""

    url: str | None = None
    token: str | None = None


# One command per process: the root callback sets these before any subcommand runs.
_globals = Globals()


def set_globals(options: Globals) -> None:
    """Record the global options (the `mlops` callback calls this)."""
    global _globals
    _globals = options


def globals_() -> Globals:
    """The global options of the running command."""
    return _globals


class ApiError(Exception):
    """The server answered with an error (a problem+json body, or at least a status)."""

    def __init__(self, status: int, detail: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors


class Unreachable(Exception):
    """No answer from the server: refused, unresolvable, timed out."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the mlops server at {url} ({reason})")
        self.url = url


def segment(value: str) -> str:
    """`value` as one URL path segment, so a stray `/` or `?` cannot change the route."""
    return quote(value, safe="")


def token_file() -> Path:
    """Where `mlops serve` writes its bootstrap admin key (the same default data dir)."""
    return Path(os.environ.get("MLOPS_DATA_DIR") or ".mlops") / "admin-token"


def read_token() -> str | None:
    """--token or MLOPS_TOKEN, else the admin token file `mlops serve` writes in its data dir."""
    token = (globals_().token or os.environ.get("MLOPS_TOKEN", "")).strip()
    if token:
        return token
    path = token_file()
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


class Client:
    """A thin httpx wrapper: base URL, bearer token, timeout, typed errors."""

    def __init__(self, url: str, *, token: str | None = None, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.url + API_PREFIX, headers=headers, timeout=timeout_s
        )

    def close(self) -> None:
        self._http.close()

    def get(self, path: str, *, params: dict[str, Any] | None = None) -> Any:
        return self.json(self.request("GET", path, params=params))

    def post(self, path: str, *, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        return self.json(self.request("POST", path, json=body, headers=headers))

    def delete(self, path: str, *, params: dict[str, Any] | None = None) -> None:
        self.request("DELETE", path, params=params)

    def json(self, response: httpx.Response) -> Any:
        """The body as JSON; anything else means the URL is not an mlops server."""
        try:
            return response.json()
        except ValueError as exc:
            raise Unreachable(self.url, "the answer is not JSON; is this an mlops server?") from exc

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request; raises ApiError on a 4xx/5xx and Unreachable on no answer."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(self.url, _reason(exc)) from exc
        if response.is_error:
            raise _api_error(response)
        return response


def _reason(exc: httpx.TransportError) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _api_error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        errors = body.get("errors")
        return ApiError(
            response.status_code, body["detail"], errors if isinstance(errors, list) else []
        )
    return ApiError(response.status_code, f"{response.status_code} {response.reason_phrase}", [])


def fail(message: str, *, code: int, more: Iterable[str] = ()) -> NoReturn:
    """Print `Error: message` (and any further lines) on stderr and exit with `code`."""
    typer.echo(f"Error: {message}", err=True)
    for line in more:
        typer.echo(f"  {line}", err=True)
    raise typer.Exit(code)


@contextmanager
def connect(url: str | None) -> Iterator[Client]:
    """A client for one command; server errors exit 1, an unreachable server exits 2."""
    client = Client(url or globals_().url or DEFAULT_URL, token=read_token())
    try:
        yield client
    except ApiError as exc:
        # The detail names the first bad field; list the others under it.
        more = [f"{e.get('loc')}: {e.get('msg')}" for e in exc.errors[1:] if isinstance(e, dict)]
        if exc.status == 401:
            more.append(f"The CLI sends --token or MLOPS_TOKEN, else the key in {token_file()}")
        fail(exc.detail, code=1, more=more)
    except Unreachable as exc:
        fail(str(exc), code=2)
    finally:
        client.close()
