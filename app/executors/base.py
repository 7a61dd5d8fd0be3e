"""The executor interface: hand a run id to something that will execute it.

Executors receive run ids only (never ORM objects): each unit of work opens its own session.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class Executor(Protocol):
    def submit(self, run_id: int, *, not_before: datetime | None = None) -> None:
        """Execute the run now, or not before the given time."""

    def queue_depth(self) -> int:
        """Runs handed over and not yet finished in this process."""
