from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.core.time import as_utc
from app.spec.schema import METRIC_NAME

MAX_OBSERVATIONS = 10_000


class ObservationIn(BaseModel):
    """One value about the production model; `observed_at` defaults to now, naive means UTC."""

    model_config = ConfigDict(extra="forbid", strict=True)

    metric: str = Field(pattern=METRIC_NAME, examples=["accuracy"])
    # Strict: a number, not text or a boolean; NaN and Infinity would poison every mean.
    value: float = Field(strict=True, allow_inf_nan=False, examples=[0.81])
    # Not strict: FastAPI hands over decoded JSON, where a timestamp is text.
    observed_at: datetime | None = Field(default=None, strict=False)

    @field_validator("observed_at", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        # Lax parsing would also take a number as Unix time; the schema says ISO 8601 text.
        if value is not None and not isinstance(value, str | datetime):
            raise ValueError("must be an ISO 8601 timestamp")
        return value

    @field_validator("observed_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)


class ObservationsPost(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

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
