"""Prometheus metrics: run series read from the database at scrape time (so every replica
agrees), this process's standard series, and HTTP requests by route template."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import Row, func, select

from app.core.db import SessionFactory, read_only_unit
from app.execution.env import Executor
from app.ops.http import RequestMetrics
from app.pipelines.models import Pipeline
from app.registry.models import ModelVersion
from app.runs import rollup
from app.runs.models import DURATION_BUCKETS, Run

DEFAULT_QUEUE = "default"
BUCKETS = DURATION_BUCKETS


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
        # Three statements, each a row per series: aggregates and roll-ups, never the runs.
        with read_only_unit(self._factory) as session:
            totals = rollup.totals(session=session)
            queued = session.scalar(select(func.count()).where(Run.status == "queued")) or 0
            # Queue names only matter with a broker; without one, no spec is read.
            specs = session.scalars(select(Pipeline.spec)).all() if self._broker else []
            production = session.execute(
                select(Pipeline.name, ModelVersion.version)
                .join(Pipeline, Pipeline.id == ModelVersion.pipeline_id)
                # One series per name: an archived pipeline's model no longer serves.
                .where(ModelVersion.stage == "production", Pipeline.archived_at.is_(None))
            ).all()
        runs = CounterMetricFamily(
            "mlops_runs",
            "Runs by pipeline, status and trigger",
            labels=["pipeline", "status", "trigger"],
        )
        for row in totals:
            runs.add_metric([row.name, row.status, row.trigger_kind], int(row.runs))
        yield runs
        yield _durations(totals)
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


def _durations(totals: Sequence[Row[Any]]) -> HistogramMetricFamily:
    """Wall time of the runs that have both a start and an end, per pipeline."""
    per_pipeline: dict[str, dict[str, float | int]] = {}
    for row in totals:
        sums = rollup.as_numbers(row)
        into = per_pipeline.setdefault(row.name, dict.fromkeys(sums, 0))
        for name, value in sums.items():
            into[name] += value
    family = HistogramMetricFamily(
        "mlops_run_duration_seconds", "Run wall time", labels=["pipeline"]
    )
    for name, sums in per_pipeline.items():
        if not sums["timed"]:
            continue
        buckets = [
            (str(bound), float(sums[column]))
            for bound, column in zip(BUCKETS, rollup.BUCKET_COLUMNS, strict=True)
        ]
        buckets.append(("+Inf", float(sums["timed"])))
        family.add_metric([name], buckets, sum_value=float(sums["duration_sum"]))
    return family


def build_registry(
    factory: SessionFactory, executor: Executor, broker: Broker | None = None
) -> tuple[CollectorRegistry, RequestMetrics]:
    """The registry /metrics exposes, and the HTTP series the request middleware records."""
    # auto_describe=False: registering must not run the database collector's queries.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(factory, executor, broker))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry, RequestMetrics(registry)
