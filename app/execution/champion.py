"""Production (the champion) scored on a run's holdout, and what the gate does when it cannot be.

The gate fails closed: a production version that exists but cannot be scored (its artifact is
missing, corrupt or fails its hash check, this host cannot load it, its columns changed) is
never taken as "no production". The spec's `evaluation.on_unscorable_production` says what
happens instead, and the run's metrics (and so the ledger's evidence) say that it happened.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from app.core.db import SessionFactory, read_only_unit
from app.execution.outcomes import AwaitApproval, StepOutcome
from app.registry import service as registry
from app.registry.serving import ModelCache
from app.spec.estimators import EstimatorKind
from app.spec.schema import Evaluation
from app.training.evaluation import GateDecision, score
from app.training.holdout import Split

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProductionScore:
    """Production's score on this run's holdout; `error` when it exists but cannot be scored."""

    version: int | None
    value: float | None
    error: str | None = None

    @property
    def note(self) -> str | None:
        """The error in a sentence, for the run's metrics."""
        if self.error is None:
            return None
        return f"production version {self.version} could not score this holdout: {self.error}"


@dataclass(frozen=True)
class Scoring:
    """What scoring production needs: where it is, and what to score it on."""

    factory: SessionFactory
    models: ModelCache
    pipeline_id: int
    holdout: Split
    metric: str
    kind: EstimatorKind


def production_score(scoring: Scoring) -> ProductionScore:
    """Production's score on the holdout, None without production, or the reason it failed."""
    with read_only_unit(scoring.factory) as session:
        ref = registry.production_ref(session=session, pipeline_id=scoring.pipeline_id)
    if ref is None:
        return ProductionScore(None, None)
    h = scoring.holdout
    try:
        # The serving cache: production is verified and loaded once, not per run.
        loaded = scoring.models.get(ref)
        value = score(loaded.model, h.X_test, h.y_test, scoring.metric, scoring.kind)
    except Exception as exc:
        # Any reason at all (missing file, hash mismatch, unloadable, changed columns) is
        # the same for the gate: no evidence that the candidate is better.
        log.warning("production v%s could not be scored: %s", ref.version, exc)
        return ProductionScore(ref.version, None, str(exc) or type(exc).__name__)
    if not math.isfinite(value):
        return ProductionScore(ref.version, None, f"its {scoring.metric} is {value}")
    return ProductionScore(ref.version, value)


def current_version(factory: SessionFactory, pipeline_id: int) -> int | None:
    """The version in production now, if any."""
    with read_only_unit(factory) as session:
        ref = registry.production_ref(session=session, pipeline_id=pipeline_id)
    return ref.version if ref else None


def unscorable(
    production: ProductionScore, evaluation: Evaluation, own: GateDecision
) -> tuple[GateDecision, StepOutcome | None, dict[str, Any]]:
    """The gate's decision when production could not be scored and the candidate passed its
    own checks (`own`): the decision, how the run ends early (if it does), and the evidence."""
    policy = evaluation.on_unscorable_production
    what = f"production version {production.version} could not be scored on this holdout"
    evidence = {"version": production.version, "error": production.error, "policy": policy}
    if policy == "reject":
        return (
            GateDecision(
                False,
                f"Evaluation gate: {what} ({production.error}), so the candidate was not "
                "compared with it. Repair or roll back production and retrain, or promote "
                "this version with force and a reason "
                "(evaluation.on_unscorable_production: reject)",
            ),
            None,
            evidence,
        )
    if policy == "approve":
        reason = f"{own.reason}; {what} ({production.error}): waiting for approval"
        return GateDecision(True, reason), AwaitApproval(reason), evidence
    reason = (
        f"{own.reason}; {what} ({production.error}): promoted without a comparison "
        "(evaluation.on_unscorable_production: promote)"
    )
    return GateDecision(True, reason), None, evidence
