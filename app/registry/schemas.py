from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.core.time import Timestamp
from app.core.untrusted import STORABLE_TEXT


class ModelVersionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    stage: str
    sha256: str
    estimator: str
    metrics: dict[str, Any]
    params: dict[str, Any]
    data_fingerprint: dict[str, Any]
    features: list[Any]
    run_id: int | None
    created_at: Timestamp
    promoted_at: Timestamp | None


class PromotionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    action: str
    from_version: int | None
    to_version: int
    actor: str
    reason: str
    evidence: dict[str, Any]
    created_at: Timestamp


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str | None = Field(default=None, max_length=500, pattern=STORABLE_TEXT)


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    instances: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)


class PredictResponse(BaseModel):
    predictions: list[Any]
    model_version: int
