"""How a step ends a run early. Raised by steps, turned into statuses by the worker."""

from __future__ import annotations


class StepOutcome(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Rejected(StepOutcome):
    """A gate said no (data validation, or the evaluation gate)."""


class Failed(StepOutcome):
    """Something broke; the reason is one a person can act on."""


class Stopped(StepOutcome):
    """Cancelled, timed out, or the lease was lost; the run must not go on."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class AwaitApproval(StepOutcome):
    """Every gate passed; a person decides when to promote."""
