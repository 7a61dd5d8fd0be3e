"""Prometheus metrics, read from the database at scrape time so every replica agrees."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Row, func, select

from app.core.db import SessionFactory, read_only_unit
from app.execution.env import Executor
from app.pipelines.models import Pipeline
from app.registry.models import ModelVersion
from app.runs.models import Run

DEFAULT_QUEUE = "default"
BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)


class Broker(Protocol):
    """What the metrics read from a broker (the celery executor's)."""

    def depths(self, queues: list[str]) -> dict[str, int]: ...

    def workers(self) -> list[str]: ...


class DatabaseCollector(Collector):
    def __init__(
        self, factory: SessionFactory, executor: Executor, broker: Broker | None = None
    ) -> None:
        self._factory = factory
        self._executor = executor
        self._broker = broker

    def collect(self) -> Iterator[Metric]:
        with read_only_unit(self._factory) as session:
            counts = session.execute(
                select(Pipeline.name, Run.status, Run.trigger_kind, func.count())
                .join(Pipeline, Pipeline.id == Run.pipeline_id)
                .group_by(Pipeline.name, Run.status, Run.trigger_kind)
            ).all()
            finished = session.execute(
                select(Pipeline.name, Run.started_at, Run.finished_at)
                .join(Pipeline, Pipeline.id == Run.pipeline_id)
                .where(Run.started_at.is_not(None), Run.finished_at.is_not(None))
            ).all()
            queued = session.scalar(select(func.count()).where(Run.status == "queued")) or 0
            specs = session.scalars(select(Pipeline.spec)).all()
            production = session.execute(
                select(Pipeline.name, ModelVersion.version)
                .join(Pipeline, Pipeline.id == ModelVersion.pipeline_id)
                .where(ModelVersion.stage == "production")
            ).all()
        runs = CounterMetricFamily(
            "mlops_runs",
            "Runs by pipeline, status and trigger",
            labels=["pipeline", "status", "trigger"],
        )
        for name, status, trigger, count in counts:
            runs.add_metric([name, status, trigger], count)
        yield runs
        yield _durations(finished)  # type: ignore[arg-type]  # filtered to non-null above
        yield GaugeMetricFamily("mlops_runs_queued", "Runs waiting to start", value=queued)
        yield GaugeMetricFamily(
            "mlops_worker_queue_depth",
            "Runs handed to this process's workers",
            value=self._executor.queue_depth(),
        )
        versions = GaugeMetricFamily(
            "mlops_production_version", "Production model version", labels=["pipeline"]
        )
        for name, version in production:
            versions.add_metric([name], version)
        yield versions
        if self._broker is not None:
            yield from _broker_metrics(self._broker, sorted({_queue(spec) for spec in specs}))


def _queue(spec: dict[str, Any]) -> str:
    return str(spec.get("queue") or DEFAULT_QUEUE)


def _broker_metrics(broker: Broker, queues: list[str]) -> Iterator[Metric]:
    depth = GaugeMetricFamily(
        "mlops_broker_queue_depth", "Tasks waiting in the broker, per queue", labels=["queue"]
    )
    for queue, count in broker.depths([DEFAULT_QUEUE, *queues]).items():
        depth.add_metric([queue], count)
    yield depth
    workers = broker.workers()
    yield GaugeMetricFamily(
        "mlops_workers_seen", "Workers that answered a ping recently", value=len(workers)
    )
    seen = GaugeMetricFamily("mlops_worker_up", "A worker seen recently", labels=["worker"])
    for name in workers:
        seen.add_metric([name], 1)
    yield seen


def _durations(rows: Sequence[Row[str, datetime, datetime]]) -> HistogramMetricFamily:
    per_pipeline: dict[str, list[float]] = {}
    for name, started, finished in rows:
        per_pipeline.setdefault(name, []).append((finished - started).total_seconds())
    family = HistogramMetricFamily(
        "mlops_run_duration_seconds", "Run wall time", labels=["pipeline"]
    )
    for name, values in per_pipeline.items():
        buckets = [(str(b), float(sum(v <= b for v in values))) for b in BUCKETS]
        buckets.append(("+Inf", float(len(values))))
        family.add_metric([name], buckets, sum_value=sum(values))
    return family
