"""Metric observations: store them stamped with the production version, and summarise the
window a metric trigger reads. Functions flush, never commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, insert, select
from sqlalchemy.orm import Session

from app.core.time import utcnow
from app.monitoring.models import MetricObservation
from app.monitoring.schemas import ObservationIn
from app.pipelines.models import Pipeline
from app.registry import service as registry


@dataclass(frozen=True)
class WindowStats:
    """The observations of one metric that a trigger reads, summarised."""

    count: int
    mean: float
    minimum: float
    maximum: float
    last: float
    newest_id: int

    def aggregate(self, name: str) -> float:
        """mean, min, max or last."""
        values = {"mean": self.mean, "min": self.minimum, "max": self.maximum, "last": self.last}
        return values[name]


def production_version(*, session: Session, pipeline: Pipeline) -> int | None:
    """The version observations are about now: the production one, if any."""
    row = registry.production(session=session, pipeline_id=pipeline.id)
    return None if row is None else row.version


def record(*, session: Session, pipeline: Pipeline, observations: Sequence[ObservationIn]) -> int:
    """Store observations stamped with the current production version; returns how many."""
    now = utcnow()
    version = production_version(session=session, pipeline=pipeline)
    # Ids are the arrival order a window reads ("the last N"); within one post, let them
    # follow the time each value is about.
    ordered = sorted(observations, key=lambda item: item.observed_at or now)
    rows = [
        {
            "pipeline_id": pipeline.id,
            "metric": item.metric,
            "value": item.value,
            "observed_at": item.observed_at or now,
            "received_at": now,
            "model_version": version,
        }
        for item in ordered
    ]
    session.execute(insert(MetricObservation), rows)
    session.flush()
    return len(rows)


def window_stats(
    *,
    session: Session,
    pipeline_id: int,
    metric: str,
    version: int | None,
    last: int,
    since: datetime | None = None,
) -> WindowStats | None:
    """The last `last` observations of `metric` about `version` (or all since `since`)."""
    o = MetricObservation
    window = select(o.id, o.value).where(
        o.pipeline_id == pipeline_id, o.metric == metric, _about(version)
    )
    if since is not None:
        window = window.where(o.observed_at >= since)
    else:
        window = window.order_by(o.id.desc()).limit(last)
    w = window.subquery()
    count, mean, low, high, newest = session.execute(
        select(
            func.count(),
            func.avg(w.c.value),
            func.min(w.c.value),
            func.max(w.c.value),
            func.max(w.c.id),
        )
    ).one()
    if not count:
        return None
    latest = session.scalars(select(o.value).where(o.id == newest)).one()
    return WindowStats(int(count), float(mean), float(low), float(high), float(latest), newest)


def _about(version: int | None) -> ColumnElement[bool]:
    column = MetricObservation.model_version
    return column.is_(None) if version is None else column == version
