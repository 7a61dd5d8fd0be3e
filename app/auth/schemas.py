from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.auth.roles import Role
from app.core.time import Timestamp


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$",
        description="Who or what uses the key (`ci-deployer`); shown in ledgers and the audit log",
    )
    role: Role = Field(
        description="viewer: read; operator: also act on runs and models; admin: all"
    )


class KeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    role: Role
    prefix: str = Field(description="The key's public start, to recognise it; never the key")
    created_at: Timestamp
    created_by: str
    last_used_at: Timestamp | None = Field(description="Recorded within about 10 s")
    revoked_at: Timestamp | None
    revoked_by: str | None


class KeyCreated(KeyRead):
    key: str = Field(description="The API key. Shown only in this response; store it now.")


class AuditRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: Timestamp
    actor: str = Field(description="The key's name, `system`, or the configured admin token")
    actor_key_id: int | None
    action: str = Field(description="e.g. pipeline.create, model.promote, key.revoke")
    target: str = Field(description="The resource, as its API path: pipelines/churn, runs/7")
    detail: dict[str, Any]
