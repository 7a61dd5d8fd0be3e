from __future__ import annotations

from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, Field

from app.pipelines.spec import PipelineSpec

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class PipelineRead(BaseModel):
    name: str
    description: str
    paused: bool
    spec: PipelineSpec
    created_at: datetime
    updated_at: datetime


class PipelineCreated(PipelineRead):
    webhook_secret: str = Field(
        description="Signs the new-data webhook. Shown only in this response; store it now."
    )


class PipelineStatus(BaseModel):
    name: str
    status: str = Field(description="A run status, or 'paused', or 'never_run'")
    last_run_at: datetime | None
    error: str | None
    next_run_at: datetime | None
    production_version: int | None
    active_run_id: int | None
