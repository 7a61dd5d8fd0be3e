from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.core.time import as_utc

MAX_OBSERVATIONS = 10_000


class ObservationIn(BaseModel):
    """One value about the production model; `observed_at` defaults to now, naive means UTC."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(min_length=1, max_length=64, examples=["accuracy"])
    # Strict: a number, not text or a boolean; NaN and Infinity would poison every mean.
    value: float = Field(strict=True, allow_inf_nan=False, examples=[0.81])
    observed_at: datetime | None = None

    @field_validator("observed_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)


class ObservationsPost(BaseModel):
    model_config = ConfigDict(extra="forbid")

    observations: list[ObservationIn] = Field(min_length=1, max_length=MAX_OBSERVATIONS)


class MetricEvaluationRead(BaseModel):
    """One metric trigger, judged on the observations that count after this post."""

    model_config = ConfigDict(from_attributes=True)

    trigger: str = Field(description="The trigger's id (8 hex characters)")
    metric: str
    aggregate: str
    value: float | None = Field(description="The aggregate; null with no observations")
    observations: int
    breached: bool
    reason: str


class ObservationsAccepted(BaseModel):
    accepted: int
    fired: list[int] = Field(description="Ids of the runs this post fired")
    evaluations: list[MetricEvaluationRead]
