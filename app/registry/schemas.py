from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

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
    artifact_purged_at: Timestamp | None = Field(
        default=None, description="When an admin purged the artifact file (the row stays)"
    )


class PromotionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    action: str
    from_version: int | None
    to_version: int
    actor: str
    reason: str
    evidence: dict[str, Any]
    # An override: the version had been rejected by a gate, and was promoted with force.
    forced: bool
    gate_reason: str | None
    created_at: Timestamp


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str | None = Field(default=None, max_length=500, pattern=STORABLE_TEXT)


class PromoteRequest(RollbackRequest):
    force: bool = Field(
        default=False,
        description="Promote a version that a gate rejected; needs a reason, kept in the ledger",
    )

    @field_validator("force")
    @classmethod
    def _force_needs_a_reason(cls, force: bool, info: ValidationInfo) -> bool:
        reason = info.data.get("reason")
        if force and not (reason and reason.strip()):
            raise ValueError("needs a reason: say why the gate is overridden (body.reason)")
        return force


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    instances: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)


class PredictResponse(BaseModel):
    predictions: list[Any]
    model_version: int
