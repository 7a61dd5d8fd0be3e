"""Stable identities for a pipeline's triggers and the fire keys built from them."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from app.core.time import as_utc
from app.spec.schema import PipelineSpec, Trigger


def trigger_id(trigger: Trigger) -> str:
    """8 hex characters identifying a trigger by its settings, not its place in the list.

    Editing a trigger's settings gives it a new identity (a new schedule starts afresh);
    reordering the list does not.
    """
    canonical = json.dumps(trigger.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def schedule_key(trigger: Trigger, scheduled_for: datetime) -> str:
    """The fire key of one tick of a time trigger (cron or interval)."""
    tick = as_utc(scheduled_for).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{trigger.kind}:{trigger_id(trigger)}:{tick}"


def event_key(trigger: Trigger, event_id: int | str) -> str:
    """The fire key of an event-driven fire (the observation or batch that crossed the line)."""
    return f"{trigger.kind}:{trigger_id(trigger)}:{event_id}"


def trigger_id_of_key(key: str) -> str | None:
    """The trigger id inside a fire key built by schedule_key or event_key."""
    parts = key.split(":", 2)
    return parts[1] if len(parts) == 3 else None


def triggers_of(spec: PipelineSpec, kind: str) -> list[Trigger]:
    """The spec's triggers of one kind."""
    return [trigger for trigger in spec.triggers if trigger.kind == kind]
