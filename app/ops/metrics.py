"""Prometheus metrics: run series read from the database at scrape time (so every replica
agrees), this process's standard series, and HTTP requests by route template."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

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

BUCKETS = DURATION_BUCKETS


class DatabaseCollector(Collector):
    def __init__(self, factory: SessionFactory, executor: Executor) -> None:
        self._factory = factory
        self._executor = executor

    def collect(self) -> Iterator[Metric]:
        # Three statements, each a row per series: aggregates and roll-ups, never the runs.
        with read_only_unit(self._factory) as session:
            totals = rollup.totals(session=session)
            queued = session.scalar(select(func.count()).where(Run.status == "queued")) or 0
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
    factory: SessionFactory, executor: Executor
) -> tuple[CollectorRegistry, RequestMetrics]:
    """The registry /metrics exposes, and the HTTP series the request middleware records."""
    # auto_describe=False: registering must not run the database collector's queries.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(factory, executor))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry, RequestMetrics(registry)
