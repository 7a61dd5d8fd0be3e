"""One settings object, read from the environment (prefix MLOPS_)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore")

    data_dir: Path = Path(".mlops")
    database_url: str | None = None
    artifact_dir: Path | None = None
    source_dirs: Annotated[list[Path], NoDecode] = Field(default_factory=lambda: [Path.cwd()])
    executor: Literal["thread", "celery"] = "thread"
    workers: int = Field(default=4, ge=1, le=256)
    auth: Literal["enabled", "disabled"] = "enabled"
    admin_token: str | None = None
    allowed_estimators: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["sklearn."])
    http_source_timeout_s: float = 30.0
    http_source_max_bytes: int = 512 * 1024 * 1024
    lease_s: float = Field(default=60.0, gt=0)
    reconcile_s: float = Field(default=2.0, gt=0)
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    heartbeat_s: float = Field(default=10.0, gt=0)
    public_url: str = "http://127.0.0.1:8000"
    webhook_max_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    # A repeated delivery key within this window gets the first answer; later it is new.
    webhook_idempotency_s: float = Field(default=86400.0, gt=0)

    @field_validator("source_dirs", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str):
            return [Path(p) for p in value.split(os.pathsep) if p]
        return value

    @field_validator("allowed_estimators", mode="before")
    @classmethod
    def _split_prefixes(cls, value: object) -> object:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'mlops.db').resolve()}"

    @property
    def resolved_artifact_dir(self) -> Path:
        return (self.artifact_dir or self.data_dir / "artifacts").resolve()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
