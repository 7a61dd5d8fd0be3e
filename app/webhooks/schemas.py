from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.core.time import Timestamp

MAX_GRACE_S = 7 * 24 * 3600


class WebhookHeaders(BaseModel):
    """The headers the new-data webhook reads (names are case-insensitive)."""

    content_type: str | None = None
    x_mlops_signature: str | None = Field(
        default=None, description="t=<unix seconds>,v1=<hex HMAC-SHA256 of f'{t}.' + body>"
    )
    x_hub_signature_256: str | None = Field(
        default=None, description="GitHub's form: sha256=<hex HMAC-SHA256 of body>"
    )
    webhook_id: str | None = Field(
        default=None, max_length=200, description="Standard Webhooks: the message id (signed)"
    )
    webhook_timestamp: str | None = Field(
        default=None, description="Standard Webhooks: unix seconds (signed)"
    )
    webhook_signature: str | None = Field(
        default=None,
        description="Standard Webhooks: v1,<base64 HMAC-SHA256 of f'{id}.{timestamp}.' + body>",
    )
    idempotency_key: str | None = Field(default=None, max_length=255)
    x_github_delivery: str | None = Field(default=None, max_length=255)
    x_mlops_delivery: str | None = Field(default=None, max_length=255)

    def delivery_key(self) -> tuple[str, str] | None:
        """(header name, key) of the first delivery-key header present."""
        for header, key in (
            ("Idempotency-Key", self.idempotency_key),
            ("X-GitHub-Delivery", self.x_github_delivery),
            ("X-Mlops-Delivery", self.x_mlops_delivery),
        ):
            if key:
                return header, key
        return None


class DataAccepted(BaseModel):
    batch_id: int
    rows: int
    columns: list[str]
    fired: list[int] = Field(description="Ids of the runs this batch fired (new_data, drift)")


class SecretRotate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    grace_s: float = Field(
        default=3600,
        ge=0,
        le=MAX_GRACE_S,
        description="How long the old secret keeps working (0 to 7 days)",
    )


class SecretRotated(BaseModel):
    webhook_secret: str = Field(description="Shown only in this response; store it now.")
    previous_valid_until: Timestamp
