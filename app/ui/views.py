"""What each dashboard page shows, read from the domain services in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from markupsafe import Markup
from sqlalchemy.orm import Session

from app.core.errors import StoredSpecInvalid
from app.core.time import utcnow
from app.monitoring import service as monitoring
from app.monitoring.models import MetricObservation
from app.pipelines import service as pipelines
from app.pipelines.models import Pipeline
from app.pipelines.schemas import PipelineStatus
from app.registry import service as registry
from app.registry.models import ModelVersion, Promotion
from app.runs import service as runs
from app.runs.models import Run
from app.spec.schema import MetricTrigger, PipelineSpec
from app.status.service import status_of
from app.triggers.schedule import next_runs
from app.ui import charts

PAGE_SIZE = 50
RUNS_SHOWN = 25
OBSERVATIONS_SHOWN = 200
LIVE = ("queued", "running")


@dataclass(frozen=True)
class PipelineRow:
    name: str
    status: PipelineStatus | None
    paused: bool
    trigger_kinds: list[str]
    problem: str | None = None


@dataclass(frozen=True)
class HomePage:
    rows: list[PipelineRow]
    total: int
    page: int
    pages: int
    query: str


def home(*, session: Session, query: str, page: int) -> HomePage:
    """One page of pipelines (by name, those whose name contains `query`) with their status."""
    offset = (page - 1) * PAGE_SIZE
    found, total = pipelines.list_page(
        session=session, limit=PAGE_SIZE, offset=offset, name_contains=query
    )
    pages = max(1, -(-total // PAGE_SIZE))
    return HomePage([_row(session, p) for p in found], total, page, pages, query)


def _row(session: Session, pipeline: Pipeline) -> PipelineRow:
    try:
        spec = pipelines.spec_of(pipeline)
        status = status_of(session=session, name=pipelines.ref_of(pipeline))
    except StoredSpecInvalid as exc:
        # One pipeline whose stored spec no longer loads must not hide the others.
        return PipelineRow(pipeline.name, None, pipeline.paused, [], exc.detail)
    kinds = sorted({str(t.kind) for t in spec.triggers})
    return PipelineRow(pipeline.name, status, pipeline.paused, kinds)


@dataclass(frozen=True)
class RunRow:
    run: Run
    duration_s: float | None

    @property
    def live(self) -> bool:
        return self.run.status in LIVE


def run_row(run: Run) -> RunRow:
    """A run with its duration (so far, for a live run)."""
    if run.started_at is None:
        return RunRow(run, None)
    end = run.finished_at or utcnow()
    return RunRow(run, (end - run.started_at).total_seconds())


@dataclass
class PipelinePage:
    pipeline: Pipeline
    spec: PipelineSpec | None
    problem: str | None
    status: PipelineStatus | None = None
    runs: list[RunRow] = field(default_factory=list)
    runs_total: int = 0
    versions: list[ModelVersion] = field(default_factory=list)
    ledger: list[Promotion] = field(default_factory=list)
    next_runs: list[datetime] = field(default_factory=list)
    gate_chart: Markup | None = None
    metric_charts: list[Markup] = field(default_factory=list)


def pipeline_page(*, session: Session, name: str) -> PipelinePage:
    """Everything the pipeline page shows."""
    pipeline = pipelines.get(session=session, name=name)
    spec = pipelines.stored_spec_or_none(pipeline)
    page = PipelinePage(pipeline, spec, None)
    found, page.runs_total = runs.list_page(
        session=session, pipeline=pipeline, limit=RUNS_SHOWN, offset=0
    )
    page.runs = [run_row(r) for r in found]
    page.versions = registry.list_versions(session=session, pipeline=pipeline)
    page.ledger = registry.ledger(session=session, pipeline=pipeline)
    if spec is None:
        page.problem = _problem(pipeline)
        return page
    page.status = status_of(session=session, name=pipelines.ref_of(pipeline))
    page.next_runs = next_runs(spec, pipeline.schedule_anchor_at, utcnow(), 5)
    page.gate_chart = _gate_chart(spec, page.versions, page.ledger)
    page.metric_charts = _metric_charts(session, pipeline, spec)
    return page


def _problem(pipeline: Pipeline) -> str:
    try:
        pipelines.spec_of(pipeline)
    except StoredSpecInvalid as exc:
        return exc.detail
    return ""


def _gate_chart(
    spec: PipelineSpec, versions: list[ModelVersion], ledger: list[Promotion]
) -> Markup | None:
    """Candidate score per version; versions that were ever in production marked."""
    metric = spec.evaluation.metric
    promoted = {p.to_version for p in ledger}
    points = [
        charts.Point(
            x=v.version,
            y=float(v.metrics["candidate"]),
            title=f"version {v.version}: {metric} {float(v.metrics['candidate']):.4g} ({v.stage})",
            kind=_version_kind(v, promoted),
        )
        for v in versions
        if isinstance(v.metrics.get("candidate"), int | float)
    ]
    if not points:
        return None
    floor = spec.evaluation.min_score
    rules = [] if floor is None else [charts.Rule(floor, f"min_score {floor:g}")]
    return charts.render(
        charts.Chart(
            title=f"Gate metric ({metric}) of each version's candidate",
            x_label="model version",
            y_label=f"{metric} on the holdout",
            points=points,
            rules=rules,
        )
    )


def _version_kind(version: ModelVersion, promoted: set[int]) -> str:
    if version.stage == registry.PRODUCTION:
        return "current"
    return "production" if version.version in promoted else "point"


def _metric_charts(session: Session, pipeline: Pipeline, spec: PipelineSpec) -> list[Markup]:
    """One chart per monitored metric: its observations and each metric trigger's threshold."""
    triggers = [t for t in spec.triggers if isinstance(t, MetricTrigger)]
    out = []
    for metric in sorted({t.metric for t in triggers}):
        observed = monitoring.recent(
            session=session, pipeline_id=pipeline.id, metric=metric, limit=OBSERVATIONS_SHOWN
        )
        rules = [
            charts.Rule(t.threshold, f"{t.aggregate} {t.operator} {t.threshold:g}")
            for t in triggers
            if t.metric == metric
        ]
        if observed:
            out.append(_observation_chart(metric, observed, rules))
    return out


def _observation_chart(
    metric: str, observed: list[MetricObservation], rules: list[charts.Rule]
) -> Markup:
    start = min(o.observed_at for o in observed)
    points = [
        charts.Point(
            x=(o.observed_at - start).total_seconds(),
            y=o.value,
            title=f"{o.observed_at:%Y-%m-%d %H:%M:%S} UTC: {o.value:.4g}",
        )
        for o in observed
    ]
    span = (max(o.observed_at for o in observed) - start).total_seconds()
    # Four evenly spaced times label the axis; observations bunch wherever they were posted.
    ticks = [
        (span * i / 3, f"{start + timedelta(seconds=span * i / 3):%m-%d %H:%M}")
        for i in range(4 if span else 1)
    ]
    return charts.render(
        charts.Chart(
            title=f"Observed {metric} of the production model",
            x_label="observed at (UTC)",
            y_label=metric,
            points=points,
            rules=rules,
            x_ticks=ticks,
        )
    )
