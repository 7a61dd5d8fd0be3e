from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, Field

from app.core.time import Timestamp
from app.spec.schema import PipelineSpec

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class PipelineRead(BaseModel):
    name: str
    ref: str = Field(description="How to address it: the name while live, `name@id` once archived")
    archived_at: Timestamp | None = Field(
        description="When it was deleted (archived): it never runs, its history stays"
    )
    description: str
    paused: bool
    spec: PipelineSpec
    created_at: Timestamp
    updated_at: Timestamp


class PipelineCreated(PipelineRead):
    webhook_secret: str = Field(
        description="Signs the new-data webhook. Shown only in this response; store it now."
    )


class PipelineStatus(BaseModel):
    name: str
    status: str = Field(description="A run status, or 'paused', or 'never_run'")
    last_run_at: Timestamp | None
    error: str | None
    next_run_at: Timestamp | None
    production_version: int | None
    active_run_id: int | None


class ScheduleRead(BaseModel):
    next_runs: list[Timestamp] = Field(description="Next fire times of the time triggers, UTC")
    paused: bool = Field(description="While paused, none of these fire")
