from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TriggerRead(BaseModel):
    kind: str
    reason: str


class StepRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    detail: str | None


class RunRead(BaseModel):
    id: int
    pipeline: str
    status: str
    trigger: TriggerRead
    attempt: int
    retry_of: int | None
    actor: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    steps: list[StepRead]
    metrics: dict[str, Any]
    model_version: int | None


class RunCreate(BaseModel):
    """Optional body of a manual trigger."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=300, description="Why, in a few words")
