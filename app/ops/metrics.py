"""Prometheus metrics: run series read from the database at scrape time (so every replica
agrees), this process's standard series, and HTTP requests by route template."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString
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
        # The run series are rendered apart (run_series): there are many of them.
        with read_only_unit(self._factory) as session:
            queued = session.scalar(select(func.count()).where(Run.status == "queued")) or 0
            # Queue names only matter with a broker; without one, no spec is read.
            specs = session.scalars(select(Pipeline.spec)).all() if self._broker else []
            production = session.execute(
                select(Pipeline.name, ModelVersion.version)
                .join(Pipeline, Pipeline.id == ModelVersion.pipeline_id)
                # One series per name: an archived pipeline's model no longer serves.
                .where(ModelVersion.stage == "production", Pipeline.archived_at.is_(None))
            ).all()
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


def _go(value: float) -> str:
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


def run_series(factory: SessionFactory) -> bytes:
    """mlops_runs_total and mlops_run_duration_seconds in the text exposition format.

    Rows per series from the database (roll-ups plus the runs not counted yet, see
    runs.rollup), in one snapshot, rendered here directly: with a few series per pipeline,
    building prometheus_client families and formatting them cost several times the queries.
    """
    with read_only_unit(factory, snapshot=True) as session:
        # An archived pipeline's series end with it: a new pipeline may take its name.
        live = select(Pipeline.id, Pipeline.name).where(Pipeline.archived_at.is_(None))
        names: dict[int, str] = {pid: name for pid, name in session.execute(live)}
        counts = rollup.counts(session=session)
        histograms = rollup.histograms(session=session)
    lines = [
        "# HELP mlops_runs_total Runs by pipeline, status and trigger\n",
        "# TYPE mlops_runs_total counter\n",
    ]
    for (pipeline_id, status, kind), runs in counts.items():
        if pipeline_id not in names:
            continue
        pipeline = _label(names[pipeline_id])
        labels = f'pipeline="{pipeline}",status="{_label(status)}",trigger="{_label(kind)}"'
        lines.append(f"mlops_runs_total{{{labels}}} {_number(runs)}\n")
    lines += [
        "# HELP mlops_run_duration_seconds Run wall time\n",
        "# TYPE mlops_run_duration_seconds histogram\n",
    ]
    for row in histograms:
        if row.pipeline_id in names and row.timed:  # no row for a pipeline never timed
            lines += _histogram(_label(names[row.pipeline_id]), row)
    return "".join(lines).encode()


_BUCKETS = list(zip([_go(bound) for bound in BUCKETS], rollup.BUCKET_COLUMNS, strict=True))


def _histogram(pipeline: str, row: Row[Any]) -> list[str]:
    name, label, values = "mlops_run_duration_seconds", f'pipeline="{pipeline}"', row._mapping
    lines = [
        f'{name}_bucket{{{label},le="{bound}"}} {_number(int(values[column]))}\n'
        for bound, column in _BUCKETS
    ]
    timed = _number(int(values["timed"]))
    lines.append(f'{name}_bucket{{{label},le="+Inf"}} {timed}\n')
    lines.append(f"{name}_count{{{label}}} {timed}\n")
    lines.append(f"{name}_sum{{{label}}} {_go(float(values['duration_sum']))}\n")
    return lines


def _number(value: float) -> str:
    """As prometheus_client writes a sample value (Go's float format), fast for counts."""
    if value == int(value) and abs(value) < 1_000_000:
        return f"{int(value)}.0"
    return _go(value)


def _label(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


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
