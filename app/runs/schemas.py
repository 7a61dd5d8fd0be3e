from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.core.time import Timestamp
from app.core.untrusted import STORABLE_TEXT


class TriggerRead(BaseModel):
    kind: str
    reason: str


class StepRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    status: str
    started_at: Timestamp | None
    finished_at: Timestamp | None
    detail: str | None


class RunRead(BaseModel):
    id: int
    pipeline: str
    status: str
    trigger: TriggerRead
    attempt: int
    retry_of: int | None
    actor: str
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    error: str | None
    steps: list[StepRead]
    metrics: dict[str, Any]
    model_version: int | None
    # `mlops worker --name` that executed it, or `<hostname>:<pid>` of `mlops serve`.
    worker: str | None


class RunCreate(BaseModel):
    """Optional body of a manual trigger."""

    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str | None = Field(
        default=None, max_length=300, pattern=STORABLE_TEXT, description="Why, in a few words"
    )
