"""A pipeline's status at a glance: its newest run, production version, what is active.

One statement reads all of it. The next fire time is memoised on the values it is computed
from, as read in that statement (the stored spec's text and the schedule anchor), and is
reused only while the clock is before that fire time: no tick can fall in between, so the
memo answers exactly what computing afresh would, whichever replica changed the pipeline.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, select
from sqlalchemy.orm import aliased

from app.core.db import Reader
from app.core.time import utcnow
from app.pipelines.models import Pipeline
from app.pipelines.schemas import PipelineStatus
from app.pipelines.service import missing, parse_ref
from app.pipelines.views import MEMO_SIZE, SPEC_TEXT, spec_from_text
from app.registry.models import ModelVersion
from app.registry.service import PRODUCTION
from app.runs.models import Run
from app.spec.schema import SLUG
from app.triggers.schedule import next_runs

# (spec text, anchor) -> (computed at, next fire time or None)
_NEXT: dict[tuple[str, datetime], tuple[datetime, datetime | None]] = {}
_NEXT_LOCK = threading.Lock()


def status_of(*, session: Reader, name: str, now: datetime | None = None) -> PipelineStatus:
    """Status is the newest run's status, or 'paused', or 'never_run', with the next fire
    time after `now` (the clock's time by default); NotFound if there is no such pipeline."""
    row = None
    if SLUG.fullmatch(name):
        row = session.execute(STATEMENT, {"name": name}).one_or_none()
    elif (ref := parse_ref(name)) is not None:  # an archived pipeline's `name@id`
        row = session.execute(BY_ID, {"id": ref[1]}).one_or_none()
        row = row if row is not None and row.name == ref[0] else None
    if row is None:
        raise missing(name)
    if row.paused:
        status, next_run = "paused", None
    else:
        status = row.newest_status or "never_run"
        next_run = next_fire(row.name, row.spec_text, row.schedule_anchor_at, now or utcnow())
    return PipelineStatus(
        name=row.name,
        status=status,
        last_run_at=row.newest_started_at or row.newest_created_at,
        error=row.newest_error,
        next_run_at=next_run,
        production_version=row.production_version,
        active_run_id=row.active_run_id,
    )


def _statement(where: ColumnElement[bool]) -> Select[Any]:
    # Skipped fires are history, not a state the pipeline is in.
    newest_id = (
        select(Run.id)
        .where(Run.pipeline_id == Pipeline.id, Run.status != "skipped")
        .order_by(Run.id.desc())
        .limit(1)
        .correlate(Pipeline)
        .scalar_subquery()
    )
    production = (
        select(ModelVersion.version)
        .where(ModelVersion.pipeline_id == Pipeline.id, ModelVersion.stage == PRODUCTION)
        .correlate(Pipeline)
        .scalar_subquery()
    )
    active = (
        select(Run.id)
        .where(Run.pipeline_id == Pipeline.id, Run.slot == "active")
        .correlate(Pipeline)
        .scalar_subquery()
    )
    newest = aliased(Run)
    return (
        select(
            Pipeline.name,
            Pipeline.paused,
            Pipeline.schedule_anchor_at,
            SPEC_TEXT,
            newest.status.label("newest_status"),
            newest.started_at.label("newest_started_at"),
            newest.created_at.label("newest_created_at"),
            newest.error.label("newest_error"),
            production.label("production_version"),
            active.label("active_run_id"),
        )
        .outerjoin(newest, newest.id == newest_id)
        .where(where)
    )


# Built once: constructing them costs ten times more than running them.
STATEMENT = _statement((Pipeline.name == bindparam("name")) & Pipeline.archived_at.is_(None))
BY_ID = _statement(Pipeline.id == bindparam("id"))


def next_fire(name: str, spec_text: str, anchor: datetime, now: datetime) -> datetime | None:
    """The first fire time after `now` of the spec's time triggers (None if it has none)."""
    key = (spec_text, anchor)
    hit = _NEXT.get(key)
    if hit is not None and hit[0] <= now and (hit[1] is None or now < hit[1]):
        return hit[1]
    upcoming = next_runs(spec_from_text(name, spec_text), anchor, now, 1)
    found = upcoming[0] if upcoming else None
    with _NEXT_LOCK:
        if len(_NEXT) >= MEMO_SIZE:
            _NEXT.clear()
        _NEXT[key] = (now, found)
    return found
