"""Deploy targets: where a promoted version is announced before production changes."""

from __future__ import annotations

from typing import Any

import httpx

from app.core import outbound
from app.core.errors import DeploymentFailed
from app.core.redact import redact_url
from app.spec.schema import BuiltinTarget, WebhookTarget


def deploy(
    target: BuiltinTarget | WebhookTarget, payload: dict[str, Any], allow: str | None = None
) -> str:
    """Run the deploy target; DeploymentFailed (production untouched) if it does not accept.

    `allow`: the operator's MLOPS_HTTP_URL_ALLOW, which a webhook's URL must match."""
    if isinstance(target, BuiltinTarget):
        return "served by the built-in /predict endpoint"
    return _post_webhook(target, payload, allow)


def _post_webhook(target: WebhookTarget, payload: dict[str, Any], allow: str | None) -> str:
    # Shown in run errors, the ledger and logs: never with a password or token in it.
    shown = redact_url(target.url)
    if not outbound.allowed(target.url, allow):
        raise DeploymentFailed(f"Deployment failed: {outbound.refusal(target.url)}")
    try:
        response = httpx.post(
            target.url, json=payload, headers=target.headers, timeout=target.timeout_s
        )
    except httpx.TimeoutException as exc:
        raise DeploymentFailed(
            f"Deployment failed: no answer within {target.timeout_s:g} s from {shown}"
        ) from exc
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        reason = str(exc).replace(target.url, shown) or type(exc).__name__
        raise DeploymentFailed(f"Deployment failed: could not reach {shown}: {reason}") from exc
    if not response.is_success:
        raise DeploymentFailed(
            f"Deployment failed: {response.status_code} {response.reason_phrase} from {shown}"
        )
    return f"accepted by {shown} ({response.status_code})"
