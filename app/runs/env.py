from __future__ import annotations

from dataclasses import dataclass

from app.core.db import SessionFactory
from app.core.settings import Settings
from app.executors.base import Executor
from app.registry.artifacts import LocalArtifactStore
from app.registry.serving import ModelCache


@dataclass(frozen=True)
class WorkerEnv:
    """What a worker needs to execute runs; shared by every run a process executes."""

    factory: SessionFactory
    settings: Settings
    artifacts: LocalArtifactStore
    executor: Executor
    owner: str
    models: ModelCache
