"""Fetching a file source over http(s): streamed, bounded in time and size."""

from __future__ import annotations

import time

import httpx

from app.core import outbound, retry
from app.core.errors import SourceError
from app.core.retry import TRANSIENT_STATUS, RetryPolicy, Transient
from app.datasources.messages import first_line, redact_url


def fetch(
    url: str,
    *,
    timeout_s: float,
    max_bytes: int,
    allow: str | None = None,
    policy: RetryPolicy | None = None,
    attempts: list[str] | None = None,
) -> bytes:
    """The body of `url`, or a SourceError that says plainly why it could not be had.

    `allow`: the operator's MLOPS_HTTP_URL_ALLOW; the URL and every redirect must match it.
    A 5xx, 429, timeout or reset is tried again (`policy`); if that took more than one try,
    `attempts` receives one line saying how each went."""
    shown = redact_url(url)
    if not outbound.allowed(url, allow):
        raise SourceError(f"Data source not allowed: {outbound.refusal(url)}")
    log: list[str] = []
    body = retry.call(
        lambda: _fetch_once(url, shown, timeout_s, max_bytes, allow),
        policy=policy or RetryPolicy(),
        log=log,
    )
    if log and attempts is not None:
        attempts.append(retry.summary(log, "fetched"))
    return body


def _fetch_once(url: str, shown: str, timeout_s: float, max_bytes: int, allow: str | None) -> bytes:
    hops = 0

    def check_redirect(request: httpx.Request) -> None:
        nonlocal hops
        hops, hop = hops + 1, str(request.url)
        if hops > 1 and not outbound.allowed(hop, allow):
            raise SourceError(
                f"Data source not allowed: {shown} redirects to {redact_url(hop)}, which does "
                f"not match {outbound.SETTING}"
            )

    hooks = {"request": [check_redirect]}
    try:
        with (
            httpx.Client(timeout=timeout_s, follow_redirects=True, event_hooks=hooks) as client,
            client.stream("GET", url) as response,
        ):
            _check_status(response, shown)
            return _read_capped(response, shown, max_bytes, deadline=time.monotonic() + timeout_s)
    except httpx.TimeoutException as exc:
        failed = SourceError(f"Data source timed out after {timeout_s:g}s: {shown}")
        raise Transient(f"timed out after {timeout_s:g}s", failed) from exc
    except httpx.TransportError as exc:
        reason = first_line(exc)
        failed = SourceError(f"Could not fetch data source {shown}: {reason}")
        raise Transient(f"could not connect: {reason}", failed) from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise SourceError(f"Could not fetch data source {shown}: {first_line(exc)}") from exc


def _check_status(response: httpx.Response, shown: str) -> None:
    if response.status_code == httpx.codes.NOT_FOUND:
        raise SourceError(f"Data source not found: {shown}")
    if not response.is_success:
        status = f"{response.status_code} {response.reason_phrase}"
        failed = SourceError(f"Data source unavailable: {status} from {shown}")
        if response.status_code >= 500 or response.status_code in TRANSIENT_STATUS:
            raise Transient(status, failed)
        raise failed


def _read_capped(response: httpx.Response, shown: str, max_bytes: int, *, deadline: float) -> bytes:
    too_large = SourceError(
        f"Data source too large: {shown} is over the limit of {max_bytes} bytes "
        "(MLOPS_HTTP_SOURCE_MAX_BYTES)"
    )
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    # Counted after decoding, so a small compressed body cannot inflate past the cap.
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        # httpx's timeout bounds each read; a server that trickles bytes is bounded here.
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("total download time exceeded")
        chunks.append(chunk)
    return b"".join(chunks)
