"""One settings object, read from the environment (prefix MLOPS_)."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_ADMIN_TOKEN_LENGTH = 32
CONNECTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Settings(BaseSettings):
    # hide_input_in_errors: a bad value may be a token or a URL with a password in it.
    model_config = SettingsConfigDict(
        env_prefix="MLOPS_", extra="ignore", hide_input_in_errors=True
    )

    data_dir: Path = Path(".mlops")
    database_url: str | None = None
    artifact_dir: Path | None = None
    source_dirs: Annotated[list[Path], NoDecode] = Field(default_factory=lambda: [Path.cwd()])
    executor: Literal["thread", "celery"] = "thread"
    broker_url: str = "redis://127.0.0.1:6379/0"
    # A directory or file:// URL, `db` or s3://bucket/prefix; None: the default for the
    # executor (the artifact directory with threads, `db` with celery, where the worker
    # that trains and the replica that serves share no disk).
    artifact_store: str | None = None
    s3_endpoint_url: str | None = None
    workers: int = Field(default=4, ge=1, le=256)
    auth: Literal["enabled", "disabled"] = "enabled"
    # A SecretStr: printing the settings (or a validation error) never shows it.
    admin_token: SecretStr | None = None
    allowed_estimators: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["sklearn."])
    http_source_timeout_s: float = 30.0
    http_source_max_bytes: int = 512 * 1024 * 1024
    # What a fit may map on top of its training process's own footprint; None: no cap.
    training_memory_mb: int | None = Field(default=None, ge=16)
    # `mlops serve` (thread executor) prepares a training process before it reports ready.
    warm_start: bool = True
    # A start readies memory for the largest live pipeline's latest training data, in the
    # compute threads' arenas and in the training processes' shared input files, at most this
    # many MB of each (app.execution.worker.prepare_memory); 0: none.
    warm_memory_mb: int = Field(default=128, ge=0)
    # A run whose owner stopped heartbeating for lease_s is settled at the next lease check
    # (every reconcile_s at most): within 15 s of its owner's death on another host.
    lease_s: float = Field(default=10.0, gt=0)
    reconcile_s: float = Field(default=2.0, gt=0)
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    heartbeat_s: float = Field(default=3.0, gt=0)
    public_url: str = "http://127.0.0.1:8000"
    # text: lines for people; json: one JSON object a line, for log search.
    log_format: Literal["text", "json"] = "text"
    webhook_max_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    # A repeated delivery key within this window gets the first answer; later it is new.
    webhook_idempotency_s: float = Field(default=86400.0, gt=0)
    # Every other request body (specs, metrics, predictions); past it: 413, nothing read.
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1)
    # SQL sources: named connections (`name=url` pairs, whitespace-separated) that a spec
    # references as `connection`, and a pattern a spec's own `url` must match in full.
    # Neither is set by default: a pipeline author can then read only SQLite files in the
    # source directories, never a database server (least of all ours).
    sql_connections: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    sql_url_allow: str | None = None
    http_url_allow: str | None = None
    # The dashboard: how long a login lasts, and the key its session cookies are signed with
    # (default: a random one kept in the data dir; set it when replicas share users).
    ui_session_s: float = Field(default=8 * 3600.0, gt=0)
    ui_secret: SecretStr | None = None
    # Deploy webhooks and http(s) sources: tries per call through 5xx, timeouts and resets,
    # waiting about backoff_s, 2 x backoff_s, 4 x backoff_s… (with jitter) in between.
    outbound_attempts: int = Field(default=4, ge=1, le=20)
    outbound_backoff_s: float = Field(default=1.0, ge=0, le=60)
    # Event delivery (subscriptions): how often each process looks for due deliveries, the
    # timeout of one attempt, the backoff (exponential with full jitter, from backoff_s up
    # to max_backoff_s), and for how long a failing delivery is retried (at least 24 h).
    event_poll_s: float = Field(default=2.0, gt=0)
    event_timeout_s: float = Field(default=10.0, gt=0, le=120)
    event_backoff_s: float = Field(default=5.0, ge=0)
    event_max_backoff_s: float = Field(default=3600.0, gt=0)
    event_retry_s: float = Field(default=26 * 3600.0, gt=0)
    # Delivered and failed events (and their delivery log) are forgotten after this.
    event_keep_s: float = Field(default=30 * 86400.0, gt=0)

    @field_validator("source_dirs", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str):
            return [Path(p) for p in value.split(os.pathsep) if p]
        return value

    @field_validator("admin_token", mode="before")
    @classmethod
    def _strong_token(cls, value: object) -> object:
        # Empty means unset (`MLOPS_ADMIN_TOKEN=` in a compose file); a short token would be
        # an admin credential guessable offline.
        if value == "":
            return None
        if isinstance(value, str) and len(value) < MIN_ADMIN_TOKEN_LENGTH:
            raise ValueError(
                f"must be at least {MIN_ADMIN_TOKEN_LENGTH} characters; "
                "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value

    @field_validator("sql_connections", mode="before")
    @classmethod
    def _split_connections(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        pairs = [item.partition("=") for item in value.split()]
        bad = [
            name for name, eq, url in pairs if not (eq and CONNECTION_NAME.fullmatch(name) and url)
        ]
        if bad:
            raise ValueError(
                "expected whitespace-separated name=url pairs (names: letters, digits, _ or -)"
            )
        return {name: url for name, _, url in pairs}

    @field_validator("sql_url_allow", "http_url_allow")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @field_validator("artifact_store")
    @classmethod
    def _store(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme = value.partition("://")[0].lower() if "://" in value else ""
        if scheme not in ("", "file", "s3"):
            raise ValueError("expected a directory, a file:// URL, db or s3://bucket/prefix")
        if scheme == "s3" and not value[len("s3://") :].partition("/")[0]:
            raise ValueError("an s3:// store needs a bucket: s3://bucket/prefix")
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

    @property
    def resolved_artifact_store(self) -> str:
        """`db`, an s3:// URL, a file:// URL or a directory."""
        if self.artifact_store:
            return self.artifact_store
        return "db" if self.executor == "celery" else str(self.resolved_artifact_dir)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
