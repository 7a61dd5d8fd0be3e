"""The time-trigger scheduler: keeps the clock's jobs equal to the pipelines in the database.

Responsible for: building one job per cron/interval trigger from the pipelines table at start,
reconciling when pipelines are created, changed, paused, resumed or deleted (here, or by
another process: a cheap poll of every pipeline's generation), firing each tick through the
keyed insert (so replicas firing the same tick make one run), and applying the misfire policy
to ticks nobody fired while the service was down or too busy. A pipeline whose triggers
cannot be scheduled is logged and skipped; it never stops the others.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.db import SessionFactory, unit_of_work
from app.core.time import as_utc, utcnow
from app.pipelines.models import Pipeline
from app.pipelines.service import spec_of
from app.runs import service as runs
from app.runs.models import Run
from app.scheduler.clock import TICKS_POOL, Clock
from app.spec.identity import schedule_key, trigger_id
from app.spec.schema import PipelineSpec
from app.triggers import firing
from app.triggers.schedule import TimeTrigger, misfire, schedule_of, ticks_between, time_triggers

log = logging.getLogger(__name__)
MAX_MISSED = 10_000  # ticks looked at when catching up; older ones only shift the count
CHUNK = 500  # pipelines scheduled per query
LastTicks = dict[tuple[int, str], datetime]


class TimeScheduler:
    def __init__(
        self, clock: Clock, factory: SessionFactory, dispatch: runs.Dispatch, poll_s: float
    ) -> None:
        self._clock = clock
        self._factory = factory
        self._dispatch = dispatch
        self._poll_s = poll_s
        self._known: dict[int, int] = {}  # pipeline id -> generation scheduled
        self._jobs: dict[int, set[str]] = {}
        self._lock = threading.Lock()
        self._stopped = False

    def start(self) -> None:
        """Schedule every pipeline now, then keep up with changes."""
        self.reconcile()
        self._clock.every(self._poll_s, "reconcile-schedules", self.reconcile)

    def stop(self) -> None:
        """Fire nothing more; waits for a reconcile or tick in progress to end."""
        with self._lock:
            self._stopped = True

    def nudge(self) -> None:
        """Reconcile soon (a pipeline changed in this process)."""
        if self._clock.running:
            self._clock.scheduler.add_job(self.reconcile, executor=TICKS_POOL)

    def reconcile(self) -> None:
        """Bring the jobs in line with the pipelines table."""
        with self._lock, unit_of_work(self._factory) as session:
            if self._stopped:
                return
            rows = session.execute(
                select(Pipeline.id, Pipeline.generation).where(Pipeline.archived_at.is_(None))
            ).all()
            current = {pipeline_id: generation for pipeline_id, generation in rows}
            for pipeline_id in set(self._known) - set(current):
                self._drop(pipeline_id)
            changed = [pid for pid, gen in current.items() if self._known.get(pid) != gen]
            # In chunks, with one query for pipelines and one for their last ticks: start-up
            # with thousands of pipelines must not cost thousands of round trips.
            for start in range(0, len(changed), CHUNK):
                chunk = changed[start : start + CHUNK]
                self._schedule_chunk(session, chunk)
                self._known.update({pid: current[pid] for pid in chunk})

    def _schedule_chunk(self, session: Session, pipeline_ids: list[int]) -> None:
        pipelines = session.scalars(select(Pipeline).where(Pipeline.id.in_(pipeline_ids)))
        lasts = last_ticks(session, pipeline_ids)
        for pipeline in pipelines:
            try:
                with session.begin_nested():
                    self._schedule(session, pipeline, lasts)
            except Exception:
                log.exception("pipeline %s: its time triggers could not be scheduled", pipeline.id)

    def _drop(self, pipeline_id: int) -> None:
        for job_id in self._jobs.pop(pipeline_id, set()):
            self._remove_job(job_id)
        self._known.pop(pipeline_id, None)

    def _remove_job(self, job_id: str) -> None:
        if self._clock.scheduler.get_job(job_id) is not None:
            self._clock.scheduler.remove_job(job_id)

    def _schedule(self, session: Session, pipeline: Pipeline, lasts: LastTicks) -> None:
        wanted: set[str] = set()
        if not pipeline.paused:
            spec = spec_of(pipeline)
            for trigger in time_triggers(spec):
                last = lasts.get((pipeline.id, trigger_id(trigger)))
                tick = self._catch_up(session, pipeline, spec, trigger, last)
                wanted.add(self._add_tick_job(pipeline.id, trigger, tick))
        for stale in self._jobs.get(pipeline.id, set()) - wanted:
            self._remove_job(stale)
        self._jobs[pipeline.id] = wanted

    def _catch_up(
        self,
        session: Session,
        pipeline: Pipeline,
        spec: PipelineSpec,
        trigger: TimeTrigger,
        last: datetime | None,
    ) -> datetime:
        """Apply the misfire policy to ticks missed since the last one fired; the next tick."""
        schedule = schedule_of(trigger, pipeline.schedule_anchor_at)
        anchor = as_utc(pipeline.schedule_anchor_at)
        since = max(anchor, last) if last else anchor
        now = utcnow()
        missed = ticks_between(schedule, since, now, MAX_MISSED)
        if missed:
            self._apply_misfire(session, pipeline, spec, trigger, missed)
        return schedule.next_after(max(now, missed[-1]) if missed else now)

    def _apply_misfire(
        self,
        session: Session,
        pipeline: Pipeline,
        spec: PipelineSpec,
        trigger: TimeTrigger,
        missed: list[datetime],
    ) -> None:
        describe = schedule_of(trigger, pipeline.schedule_anchor_at).describe()
        decision = misfire(spec, describe, missed, utcnow())
        fire = tick_fire(trigger, decision.tick, decision.reason)
        if decision.run:
            firing.fire_automatic(
                session, pipeline, fire, dispatch=self._dispatch, scheduled_for=decision.tick
            )
            return
        record = firing.skipped(pipeline.id, fire, decision.reason, scheduled_for=decision.tick)
        firing.record(session, record)

    def _add_tick_job(self, pipeline_id: int, trigger: TimeTrigger, tick: datetime) -> str:
        job_id = f"tick:{pipeline_id}:{trigger_id(trigger)}"
        self._clock.scheduler.add_job(
            self._fire,
            "date",
            run_date=tick,
            args=[pipeline_id, trigger_id(trigger), tick],
            id=job_id,
            replace_existing=True,
            executor=TICKS_POOL,
            misfire_grace_time=None,  # late is handled here, never silently dropped
        )
        return job_id

    def _fire(self, pipeline_id: int, tid: str, tick: datetime) -> None:
        """A tick is due: fire it (once across replicas), then schedule the next one."""
        try:
            if self._stopped:
                return
            with unit_of_work(self._factory) as session:
                pipeline = session.get(Pipeline, pipeline_id)
                trigger = _trigger(pipeline, tid) if pipeline and not pipeline.paused else None
                if pipeline is None or trigger is None:
                    return  # changed meanwhile: the next reconcile reschedules it
                self._fire_tick(session, pipeline, trigger, tick)
                next_tick = schedule_of(trigger, pipeline.schedule_anchor_at).next_after(tick)
                if next_tick <= utcnow():  # fell behind: the misfire policy decides
                    spec = spec_of(pipeline)
                    next_tick = self._catch_up(session, pipeline, spec, trigger, tick)
            self._add_tick_job(pipeline_id, trigger, next_tick)
        except Exception:
            log.exception("pipeline %s: tick %s of trigger %s failed", pipeline_id, tick, tid)

    def _fire_tick(
        self, session: Session, pipeline: Pipeline, trigger: TimeTrigger, tick: datetime
    ) -> None:
        describe = schedule_of(trigger, pipeline.schedule_anchor_at).describe()
        fire = tick_fire(trigger, tick, describe)
        firing.fire_automatic(session, pipeline, fire, dispatch=self._dispatch, scheduled_for=tick)


def tick_fire(trigger: TimeTrigger, tick: datetime, reason: str) -> runs.Fire:
    """The keyed fire of one tick of a time trigger."""
    return runs.Fire(
        kind=trigger.kind,
        reason=reason,
        key=schedule_key(trigger, tick),
        trigger_id=trigger_id(trigger),
    )


def last_ticks(session: Session, pipeline_ids: list[int]) -> LastTicks:
    """The newest tick of each time trigger that has a run (or a skipped record)."""
    rows = session.execute(
        select(Run.pipeline_id, Run.trigger_id, func.max(Run.scheduled_for))
        .where(Run.pipeline_id.in_(pipeline_ids), Run.scheduled_for.is_not(None))
        .group_by(Run.pipeline_id, Run.trigger_id)
    ).all()
    return {(pid, tid): as_utc(tick) for pid, tid, tick in rows if tid and tick}


def _trigger(pipeline: Pipeline, tid: str) -> TimeTrigger | None:
    return next((t for t in time_triggers(spec_of(pipeline)) if trigger_id(t) == tid), None)
