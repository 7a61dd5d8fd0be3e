"""Drift triggers: after new data arrives, compare the rows ingested since the production
model was trained with its training data's reference profile, feature by feature.

`psi` scores each feature by the population stability index over the reference's bins;
`ks` by the two-sample Kolmogorov-Smirnov statistic against the reference's sample (for
categorical features, its unordered analogue, the total variation distance). One feature
over the threshold, with at least `min_rows` new rows, fires a keyed retrain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.time import as_utc
from app.datasources import stored
from app.datasources.models import DataBatch
from app.events import service as events
from app.pipelines.models import Pipeline
from app.pipelines.service import spec_of
from app.registry import service as registry
from app.registry.models import ModelVersion
from app.runs import service as runs
from app.runs import transitions as t
from app.runs.models import Run
from app.spec.identity import event_key, triggers_of
from app.spec.schema import DriftTrigger
from app.training.reference import OTHER, bin_fractions, category_values, cut_points, numeric_values
from app.triggers import firing, hysteresis

# Floor for bin fractions in PSI: a bin empty on one side would make ln(a/e) infinite. With
# the floor an emptied bin adds a large but finite term (0.1 * ln(0.1/1e-4) ~ 0.69 for a
# decile), the convention most PSI implementations follow.
EPSILON = 1e-4
# The newest rows compared at most: enough for a stable statistic, bounded work per batch.
MAX_ROWS = 100_000

Values = pd.Series | Sequence[Any]


@dataclass(frozen=True)
class DriftResult:
    """A drift trigger judged: every feature's score and the worst one."""

    method: str
    threshold: float
    scores: dict[str, float]
    feature: str
    score: float
    rows: int
    newest_batch_id: int
    version: int

    @property
    def breached(self) -> bool:
        return self.score > self.threshold

    @property
    def reason(self) -> str:
        comparison = ">" if self.breached else "<="
        return (
            f"drift {self.method} {self.score:.2f} {comparison} {self.threshold:g} on feature "
            f"{self.feature} over {self.rows} new rows (model v{self.version})"
        )


def psi(expected_fractions: Sequence[float], actual_fractions: Sequence[float]) -> float:
    """Population stability index: sum((a - e) * ln(a / e)), fractions floored at EPSILON."""
    expected = np.maximum(np.asarray(expected_fractions, dtype=float), EPSILON)
    actual = np.maximum(np.asarray(actual_fractions, dtype=float), EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def population_stability(reference_feature: dict[str, Any], values: Values) -> float:
    """PSI of new values against one feature's reference (0 when there are no values)."""
    column = pd.Series(values)
    if reference_feature["kind"] == "numeric":
        numbers = numeric_values(column)
        if numbers.size == 0:
            return 0.0
        actual = bin_fractions(cut_points(reference_feature["edges"]), numbers)
        return psi(reference_feature["fractions"], actual)
    expected, observed = _category_fractions(reference_feature, column)
    return 0.0 if observed is None else psi(expected, observed)


def ks_statistic(sample: Values, values: Values) -> float:
    """Two-sample Kolmogorov-Smirnov D: the largest gap between the two empirical CDFs."""
    a = np.sort(numeric_values(pd.Series(sample)))
    b = np.sort(numeric_values(pd.Series(values)))
    if a.size == 0 or b.size == 0:
        return 0.0
    # Both CDFs step only at observed values, so the gap peaks at one of them; side="right"
    # counts ties as reached, as the definition F(x) = P(X <= x) does.
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / a.size
    cdf_b = np.searchsorted(b, grid, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


def total_variation(reference_feature: dict[str, Any], values: Values) -> float:
    """The largest gap in probability between the two category distributions (0..1)."""
    expected, observed = _category_fractions(reference_feature, pd.Series(values))
    if observed is None:
        return 0.0
    return float(0.5 * np.abs(np.asarray(expected) - np.asarray(observed)).sum())


def feature_score(reference_feature: dict[str, Any], values: Values, method: str) -> float:
    """One feature's drift score by `method` (psi or ks)."""
    if method == "psi":
        return population_stability(reference_feature, values)
    if reference_feature["kind"] == "numeric":
        return ks_statistic(reference_feature["sample"], values)
    return total_variation(reference_feature, values)


def evaluate_drift(
    session: Session, pipeline: Pipeline, trigger: DriftTrigger
) -> DriftResult | None:
    """Score the rows ingested since production was trained; None if too few or no reference."""
    production = registry.production(session=session, pipeline_id=pipeline.id)
    if production is None or not production.reference:
        return None
    since = _since(session, pipeline, production)
    rows, newest = _new_rows(session, pipeline.id, since)
    if newest is None or rows < trigger.min_rows:
        return None
    frame = _recent_frame(session, pipeline.id, since)
    scores = {
        feature: feature_score(reference, frame[feature], trigger.method)
        for feature, reference in production.reference.items()
        # A feature with no values in training has nothing to drift from.
        if feature in frame.columns and reference.get("rows")
    }
    if not scores:
        return None
    worst = max(scores, key=scores.__getitem__)
    return DriftResult(
        method=trigger.method,
        threshold=trigger.threshold,
        scores=scores,
        feature=worst,
        score=scores[worst],
        rows=rows,
        newest_batch_id=newest,
        version=production.version,
    )


def check_after_ingest(
    session: Session, pipeline: Pipeline, dispatch: runs.Dispatch, *, actor: str = "system"
) -> list[int]:
    """Judge the pipeline's drift triggers after a batch was stored; the ids of runs fired."""
    fired = []
    for trigger in drift_triggers(pipeline):
        # Checked first as well: reading the new rows is the expensive part.
        if hysteresis.refusal(session, pipeline, trigger) is not None:
            continue
        result = evaluate_drift(session, pipeline, trigger)
        if result is None or not result.breached:
            continue
        run_id = _fire(session, pipeline, trigger, result, dispatch, actor)
        events.emit(
            session,
            "drift.detected",
            pipeline=pipeline.name,
            data={"reason": result.reason, "run": run_id, "method": trigger.method},
        )
        if run_id is not None:
            fired.append(run_id)
    return fired


def drift_triggers(pipeline: Pipeline) -> list[DriftTrigger]:
    """The pipeline's drift triggers."""
    found = triggers_of(spec_of(pipeline), "drift")
    return [trigger for trigger in found if isinstance(trigger, DriftTrigger)]


def _fire(
    session: Session,
    pipeline: Pipeline,
    trigger: DriftTrigger,
    result: DriftResult,
    dispatch: runs.Dispatch,
    actor: str,
) -> int | None:
    # Locked before the checks: a concurrent batch must see this fire, not race past it.
    firing.lock(session, pipeline)
    key = event_key(trigger, result.newest_batch_id)
    if hysteresis.refusal(session, pipeline, trigger) or runs.by_fire_key(session, pipeline, key):
        return None
    fire = runs.Fire(kind="drift", reason=result.reason, key=key, actor=actor)
    run = firing.fire_locked(session, pipeline, fire, dispatch=dispatch)
    return None if run is None or run.status == t.SKIPPED else run.id


def _category_fractions(
    reference_feature: dict[str, Any], column: pd.Series
) -> tuple[list[float], list[float] | None]:
    """Reference and new fractions over the reference's categories (unseen ones as other)."""
    frequencies: dict[str, float] = reference_feature["frequencies"]
    categories = [name for name in frequencies if name != OTHER]
    counts = category_values(column).value_counts()
    total = int(counts.sum())
    expected = [frequencies[name] for name in categories] + [frequencies.get(OTHER, 0.0)]
    if total == 0:
        return expected, None
    known = [int(counts.get(name, 0)) / total for name in categories]
    return expected, [*known, max(0.0, 1.0 - sum(known))]


def _since(session: Session, pipeline: Pipeline, production: ModelVersion) -> datetime:
    """Rows after this are new: since production was made, or the last run started if later."""
    started = session.scalar(select(func.max(Run.started_at)).where(Run.pipeline_id == pipeline.id))
    created = as_utc(production.created_at)
    return created if started is None else max(created, as_utc(started))


def _new_rows(session: Session, pipeline_id: int, since: datetime) -> tuple[int, int | None]:
    rows, newest = session.execute(
        select(func.coalesce(func.sum(DataBatch.row_count), 0), func.max(DataBatch.id)).where(
            DataBatch.pipeline_id == pipeline_id, DataBatch.received_at > since
        )
    ).one()
    return int(rows), newest


def _recent_frame(session: Session, pipeline_id: int, since: datetime) -> pd.DataFrame:
    """The newest new rows, at most MAX_ROWS of them."""
    # Plain columns, not entities: the rows stay out of the session's identity map.
    newest_first = (
        select(DataBatch.parquet)
        .where(DataBatch.pipeline_id == pipeline_id, DataBatch.received_at > since)
        .order_by(DataBatch.id.desc())
    )
    tables: list[pa.Table] = []
    rows = 0
    for data in session.scalars(newest_first):
        tables.append(stored.decode(data))
        rows += tables[-1].num_rows
        if rows >= MAX_ROWS:
            break
    return stored.frame(tables).head(MAX_ROWS)
