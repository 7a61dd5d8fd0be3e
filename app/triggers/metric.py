"""Metric threshold triggers, judged when observations arrive (in the request that posts them).

A trigger reads the last `window` observations of its metric (or those of the last
`window_s` seconds) about the current production version, needs `min_observations` of them,
and compares their aggregate with its threshold. A breach fires one keyed run, unless the
monitoring hysteresis (paused, a run in flight, cooldown) holds it back.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import timedelta

from sqlalchemy.orm import Session

from app.core.time import utcnow
from app.monitoring import service as monitoring
from app.monitoring.service import WindowStats
from app.pipelines.models import Pipeline
from app.pipelines.service import spec_of
from app.runs import service as runs
from app.runs import transitions as t
from app.spec.identity import event_key, trigger_id, triggers_of
from app.spec.schema import MetricTrigger
from app.triggers import firing, hysteresis

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class MetricEvaluation:
    """One trigger judged: the aggregate, whether it crossed the line, and why (not) fired."""

    trigger: str
    metric: str
    aggregate: str
    value: float | None
    observations: int
    breached: bool
    reason: str
    run_id: int | None = None


def metric_triggers(pipeline: Pipeline) -> list[MetricTrigger]:
    """The pipeline's metric triggers."""
    found = triggers_of(spec_of(pipeline), "metric")
    return [trigger for trigger in found if isinstance(trigger, MetricTrigger)]


def evaluate_after_ingest(
    session: Session,
    pipeline: Pipeline,
    metrics: Collection[str],
    *,
    version: int | None,
    dispatch: runs.Dispatch,
    actor: str = "system",
) -> list[MetricEvaluation]:
    """Judge every metric trigger on the posted metrics about `version` (the production one
    the observations were stamped with); fire the breached ones that may."""
    evaluations = []
    for trigger in metric_triggers(pipeline):
        if trigger.metric not in metrics:
            continue
        evaluation, stats = judge(session, pipeline, trigger, version)
        if evaluation.breached and stats is not None:
            evaluation = _fire(session, pipeline, trigger, evaluation, stats, dispatch, actor)
        evaluations.append(evaluation)
    return evaluations


def judge(
    session: Session, pipeline: Pipeline, trigger: MetricTrigger, version: int | None
) -> tuple[MetricEvaluation, WindowStats | None]:
    """The trigger's aggregate over its window of observations about `version`."""
    since = None if trigger.window_s is None else utcnow() - timedelta(seconds=trigger.window_s)
    stats = monitoring.window_stats(
        session=session,
        pipeline_id=pipeline.id,
        metric=trigger.metric,
        version=version,
        last=trigger.window,
        since=since,
    )
    count = 0 if stats is None else stats.count
    value = None if stats is None else stats.aggregate(trigger.aggregate)
    breached = (
        value is not None
        and count >= trigger.min_observations
        and OPERATORS[trigger.operator](value, trigger.threshold)
    )
    evaluation = MetricEvaluation(
        trigger=trigger_id(trigger),
        metric=trigger.metric,
        aggregate=trigger.aggregate,
        value=value,
        observations=count,
        breached=breached,
        reason=_reason(trigger, value, count, version, breached),
    )
    return evaluation, stats


def _fire(
    session: Session,
    pipeline: Pipeline,
    trigger: MetricTrigger,
    evaluation: MetricEvaluation,
    stats: WindowStats,
    dispatch: runs.Dispatch,
    actor: str,
) -> MetricEvaluation:
    # Locked before the checks: a concurrent post must see this fire, not race past it.
    firing.lock(session, pipeline)
    key = event_key(trigger, stats.newest_id)
    refusal = hysteresis.refusal(session, pipeline, trigger)
    if refusal is None and (earlier := runs.by_fire_key(session, pipeline, key)):
        refusal = f"run {earlier.id} already fired for this observation"
    if refusal is not None:
        return replace(evaluation, reason=f"{evaluation.reason}; not fired: {refusal}")
    fire = runs.Fire(kind="metric", reason=evaluation.reason, key=key, actor=actor)
    run = firing.fire_locked(session, pipeline, fire, dispatch=dispatch)
    if run is None:
        return replace(evaluation, reason=f"{evaluation.reason}; not fired: pipeline is paused")
    if run.status == t.SKIPPED:
        note = f"not fired: run {run.id} recorded as skipped ({run.error})"
        return replace(evaluation, reason=f"{evaluation.reason}; {note}")
    return replace(evaluation, run_id=run.id)


def _reason(
    trigger: MetricTrigger, value: float | None, count: int, version: int | None, breached: bool
) -> str:
    model = "no production model" if version is None else f"model v{version}"
    plural = "observation" if count == 1 else "observations"
    if value is None or count < trigger.min_observations:
        return (
            f"metric {trigger.metric}: {count} {plural} ({model}), "
            f"min_observations {trigger.min_observations}"
        )
    comparison = trigger.operator if breached else f"not {trigger.operator}"
    return (
        f"metric {trigger.metric} {trigger.aggregate} {value:.3f} {comparison} "
        f"{trigger.threshold:g} over {count} {plural} ({model})"
    )
