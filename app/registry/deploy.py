"""Deploy targets: where a promoted version is announced before production changes.

A webhook target is tried again through a blip (5xx, 429, timeout, reset connection), with
backoff (app.core.retry); a 4xx is an answer, not a blip, and fails at once.
"""

from __future__ import annotations

from typing import Any

import httpx

from app.core import outbound, retry
from app.core.errors import DeploymentFailed
from app.core.redact import redact_url
from app.core.retry import TRANSIENT_STATUS, RetryPolicy, Transient
from app.spec.schema import BuiltinTarget, WebhookTarget


def deploy(
    target: BuiltinTarget | WebhookTarget,
    payload: dict[str, Any],
    allow: str | None = None,
    policy: RetryPolicy | None = None,
) -> str:
    """Run the deploy target; DeploymentFailed (production untouched) if it does not accept.

    `allow`: the operator's MLOPS_HTTP_URL_ALLOW, which a webhook's URL must match."""
    if isinstance(target, BuiltinTarget):
        return "served by the built-in /predict endpoint"
    if not outbound.allowed(target.url, allow):
        raise DeploymentFailed(f"Deployment failed: {outbound.refusal(target.url)}")
    shown = redact_url(target.url)
    log: list[str] = []
    status = retry.call(
        lambda: _post_once(target, payload, shown), policy=policy or RetryPolicy(), log=log
    )
    if not log:
        return f"accepted by {shown} ({status})"
    return f"accepted by {shown} ({status}) {retry.summary(log, str(status))}"


def is_transient_status(status: int) -> bool:
    """5xx, and the few 4xx that mean "not now" rather than "no"."""
    return status >= 500 or status in TRANSIENT_STATUS


def _post_once(target: WebhookTarget, payload: dict[str, Any], shown: str) -> int:
    # Shown in run errors, the ledger and logs: never with a password or token in it.
    try:
        response = httpx.post(
            target.url, json=payload, headers=target.headers, timeout=target.timeout_s
        )
    except httpx.TimeoutException as exc:
        why = f"no answer within {target.timeout_s:g} s"
        raise Transient(why, DeploymentFailed(f"Deployment failed: {why} from {shown}")) from exc
    except httpx.TransportError as exc:
        reason = str(exc).replace(target.url, shown) or type(exc).__name__
        failed = DeploymentFailed(f"Deployment failed: could not reach {shown}: {reason}")
        raise Transient(f"could not connect: {reason}", failed) from exc
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        reason = str(exc).replace(target.url, shown) or type(exc).__name__
        raise DeploymentFailed(f"Deployment failed: could not reach {shown}: {reason}") from exc
    if response.is_success:
        return response.status_code
    answer = f"{response.status_code} {response.reason_phrase}"
    failed = DeploymentFailed(f"Deployment failed: {answer} from {shown}")
    if is_transient_status(response.status_code):
        raise Transient(answer, failed)
    raise failed
