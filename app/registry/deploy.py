"""Deploy targets: where a promoted version is announced before production changes."""

from __future__ import annotations

from typing import Any

import httpx

from app.core.errors import DeploymentFailed
from app.pipelines.spec import BuiltinTarget, WebhookTarget


def deploy(target: BuiltinTarget | WebhookTarget, payload: dict[str, Any]) -> str:
    """Run the deploy target; DeploymentFailed (production untouched) if it does not accept."""
    if isinstance(target, BuiltinTarget):
        return "served by the built-in /predict endpoint"
    return _post_webhook(target, payload)


def _post_webhook(target: WebhookTarget, payload: dict[str, Any]) -> str:
    try:
        response = httpx.post(
            target.url, json=payload, headers=target.headers, timeout=target.timeout_s
        )
    except httpx.TimeoutException as exc:
        raise DeploymentFailed(
            f"Deployment failed: no answer within {target.timeout_s:g} s from {target.url}"
        ) from exc
    except httpx.HTTPError as exc:
        raise DeploymentFailed(
            f"Deployment failed: could not reach {target.url}: {exc or type(exc).__name__}"
        ) from exc
    if not response.is_success:
        raise DeploymentFailed(
            f"Deployment failed: {response.status_code} {response.reason_phrase} from {target.url}"
        )
    return f"accepted by {target.url} ({response.status_code})"
