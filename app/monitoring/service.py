"""Metric observations: store them stamped with the production version, and summarise the
window a metric trigger reads. Functions flush, never commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Integer, Select, bindparam, func, insert, select
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
    return registry.production_number(session=session, pipeline_id=pipeline.id)


def record(
    *,
    session: Session,
    pipeline: Pipeline,
    version: int | None,
    observations: Sequence[ObservationIn],
) -> int:
    """Store observations stamped with `version` (the production one now); returns how many."""
    now = utcnow()
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
    query = _window_query(by_time=since is not None, versioned=version is not None)
    params = {"pipeline_id": pipeline_id, "metric": metric, "version": version}
    params |= {"since": since} if since is not None else {"last": last}
    count, mean, low, high, newest, latest = session.execute(query, params).one()
    if not count:
        return None
    return WindowStats(int(count), float(mean), float(low), float(high), float(latest), newest)


@cache
def _window_query(*, by_time: bool, versioned: bool) -> Select[tuple[Any, ...]]:
    """The window's aggregates and newest value in one statement, built once per shape:
    building it costs SQLAlchemy more than running it does (only compiling is cached)."""
    o = MetricObservation
    window = select(o.id, o.value).where(
        o.pipeline_id == bindparam("pipeline_id"),
        o.metric == bindparam("metric"),
        o.model_version == bindparam("version") if versioned else o.model_version.is_(None),
    )
    if by_time:
        window = window.where(o.observed_at >= bindparam("since"))
    else:
        window = window.order_by(o.id.desc()).limit(bindparam("last", type_=Integer))
    w = window.cte("recent")
    latest = select(w.c.value).order_by(w.c.id.desc()).limit(1).correlate(None).scalar_subquery()
    return select(
        func.count(),
        func.avg(w.c.value),
        func.min(w.c.value),
        func.max(w.c.value),
        func.max(w.c.id),
        latest,
    )


def recent(
    *, session: Session, pipeline_id: int, metric: str, limit: int
) -> list[MetricObservation]:
    """The newest `limit` observations of `metric`, oldest first (for a chart)."""
    rows = session.scalars(
        select(MetricObservation)
        .where(MetricObservation.pipeline_id == pipeline_id, MetricObservation.metric == metric)
        .order_by(MetricObservation.id.desc())
        .limit(limit)
    )
    return list(reversed(list(rows)))
