"""What executing runs needs: the executor interface and the environment shared by every run.

Executors receive run ids only (never ORM objects): each unit of work opens its own session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from app.core.db import SessionFactory
from app.core.settings import Settings
from app.registry.artifacts import ArtifactStore
from app.registry.serving import ModelCache


class Executor(Protocol):
    def submit(self, run_id: int, *, not_before: datetime | None = None) -> None:
        """Execute the run now, or not before the given time."""

    def queue_depth(self) -> int:
        """Runs handed over and not yet finished in this process."""

    def executing(self) -> int:
        """Runs this process is executing right now."""


@dataclass(frozen=True)
class WorkerEnv:
    """What a worker needs to execute runs; shared by every run a process executes."""

    factory: SessionFactory
    settings: Settings
    artifacts: ArtifactStore
    executor: Executor
    owner: str
    models: ModelCache
    # What runs record as their `worker`: the worker's name, or `<hostname>:<pid>`.
    worker: str
