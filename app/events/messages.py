"""What a subscriber receives: the Standard Webhooks body, or Slack's `{"text": …}`."""

from __future__ import annotations

import json
from typing import Any

from app.events.models import Event


def body(event: Event, *, fmt: str, public_url: str) -> bytes:
    """The request body for one event in the subscription's format (stable across retries)."""
    data = {**event.data, "links": links(event.data, public_url)}
    if fmt == "slack":
        return json.dumps({"text": slack_text(event.type, data)}).encode()
    document = {"type": event.type, "timestamp": event.created_at.isoformat(), "data": data}
    return json.dumps(document, separators=(",", ":")).encode()


def links(data: dict[str, Any], public_url: str) -> dict[str, str]:
    """API and dashboard URLs of what the event names, built from MLOPS_PUBLIC_URL."""
    base = public_url.rstrip("/")
    pipeline = data["pipeline"]
    found = {
        "pipeline": f"{base}/api/v1/pipelines/{pipeline}",
        "dashboard": f"{base}/ui/pipelines/{pipeline}",
    }
    if (run := data.get("run")) is not None:
        found["run"] = f"{base}/api/v1/runs/{run}"
        found["run_dashboard"] = f"{base}/ui/runs/{run}"
    if (version := data.get("version")) is not None:
        found["version"] = f"{base}/api/v1/pipelines/{pipeline}/models/{version}"
    return found


def slack_text(event_type: str, data: dict[str, Any]) -> str:
    """One line an on-call person can act on, with a link to the run or the pipeline."""
    parts = [f"pipeline {data['pipeline']}"]
    if data.get("run") is not None:
        parts.append(f"run {data['run']}")
    if data.get("version") is not None:
        parts.append(f"version {data['version']}")
    text = f"[mlops] {event_type}: {', '.join(parts)}"
    if data.get("reason"):
        text += f": {data['reason']}"
    link = data["links"].get("run_dashboard") or data["links"]["dashboard"]
    return f"{text} <{link}|open>"
