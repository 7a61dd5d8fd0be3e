from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from app.core.time import Timestamp
from app.core.untrusted import ANY_HTTP_URL
from app.spec.schema import SLUG

EventName = Literal[
    "run.completed",
    "run.failed",
    "run.rejected",
    "run.awaiting_approval",
    "model.promoted",
    "model.rolled_back",
    "trigger.fired",
    "drift.detected",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventName)
EventType = Literal[EventName, "*"]
Format = Literal["standard", "slack"]
SLUG_PATTERN = f"^{SLUG.pattern}$"  # a pipeline name, as the spec defines it


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=2048,
        # No white space, and no NUL (which no database column can hold).
        pattern=ANY_HTTP_URL,
        description="http(s) URL that receives the events (must match MLOPS_HTTP_URL_ALLOW)",
    )
    events: list[EventType] = Field(
        min_length=1, max_length=len(EVENT_TYPES) + 1, description='Event types, or ["*"]'
    )
    pipelines: list[Annotated[str, Field(pattern=SLUG_PATTERN)]] | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="Only events of these pipelines (names); omit for all",
    )
    format: Format = Field(
        default="standard",
        description="standard: Standard Webhooks JSON; slack: {'text': …} for an incoming webhook",
    )


class SubscriptionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    url: str
    events: list[str]
    pipelines: list[str] | None
    format: str
    enabled: bool
    disabled_reason: str | None = Field(description="Why delivery stopped (a 410 from the URL)")
    created_at: Timestamp
    created_by: str


class SubscriptionCreated(SubscriptionRead):
    secret: str = Field(
        description="whsec_<base64>: the base64 part is the HMAC key. Shown only here; store it."
    )


class SecretRotated(BaseModel):
    secret: str = Field(description="The new secret, shown only here; the old one stops now.")


class DeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    event_id: int
    message_id: str = Field(description="The webhook-id header: the same on every attempt")
    type: str
    pipeline: str
    status: str = Field(description="pending, delivered or failed")
    attempts: int
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: Timestamp | None
    next_attempt_at: Timestamp | None = Field(description="When a pending delivery is tried next")
    delivered_at: Timestamp | None
    created_at: Timestamp
