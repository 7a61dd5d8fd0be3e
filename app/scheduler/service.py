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
from app.pipelines.spec import PipelineSpec
from app.runs import service as runs
from app.runs.models import Run
from app.scheduler.clock import TICKS_POOL, Clock
from app.triggers import firing
from app.triggers.identity import schedule_key, trigger_id
from app.triggers.schedule import TimeTrigger, misfire, schedule_of, ticks_between, time_triggers

log = logging.getLogger(__name__)
MAX_MISSED = 10_000  # ticks looked at when catching up; older ones only shift the count


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

    def start(self) -> None:
        """Schedule every pipeline now, then keep up with changes."""
        self.reconcile()
        self._clock.every(self._poll_s, "reconcile-schedules", self.reconcile)

    def nudge(self) -> None:
        """Reconcile soon (a pipeline changed in this process)."""
        if self._clock.running:
            self._clock.scheduler.add_job(self.reconcile, executor=TICKS_POOL)

    def reconcile(self) -> None:
        """Bring the jobs in line with the pipelines table."""
        with self._lock:
            with unit_of_work(self._factory) as session:
                rows = session.execute(select(Pipeline.id, Pipeline.generation)).all()
                current = {pipeline_id: generation for pipeline_id, generation in rows}
            for pipeline_id in set(self._known) - set(current):
                self._drop(pipeline_id)
            changed = [pid for pid, gen in current.items() if self._known.get(pid) != gen]
            for pipeline_id in changed:
                self._schedule_safely(pipeline_id, current[pipeline_id])

    def _schedule_safely(self, pipeline_id: int, generation: int) -> None:
        try:
            self._schedule(pipeline_id)
        except Exception:
            log.exception("pipeline %s: its time triggers could not be scheduled", pipeline_id)
        self._known[pipeline_id] = generation

    def _drop(self, pipeline_id: int) -> None:
        for job_id in self._jobs.pop(pipeline_id, set()):
            self._remove_job(job_id)
        self._known.pop(pipeline_id, None)

    def _remove_job(self, job_id: str) -> None:
        if self._clock.scheduler.get_job(job_id) is not None:
            self._clock.scheduler.remove_job(job_id)

    def _schedule(self, pipeline_id: int) -> None:
        wanted: set[str] = set()
        with unit_of_work(self._factory) as session:
            pipeline = session.get(Pipeline, pipeline_id)
            if pipeline is not None and not pipeline.paused:
                spec = spec_of(pipeline)
                for trigger in time_triggers(spec):
                    tick = self._catch_up(session, pipeline, spec, trigger)
                    wanted.add(self._add_tick_job(pipeline_id, trigger, tick))
        for stale in self._jobs.get(pipeline_id, set()) - wanted:
            self._remove_job(stale)
        self._jobs[pipeline_id] = wanted

    def _catch_up(
        self, session: Session, pipeline: Pipeline, spec: PipelineSpec, trigger: TimeTrigger
    ) -> datetime:
        """Apply the misfire policy to ticks missed since the last one fired; the next tick."""
        schedule = schedule_of(trigger, pipeline.schedule_anchor_at)
        last = last_tick(session, pipeline.id, trigger_id(trigger))
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
        fire = runs.Fire(
            kind=trigger.kind,
            reason=decision.reason,
            key=schedule_key(trigger, decision.tick),
            trigger_id=trigger_id(trigger),
        )
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
            with unit_of_work(self._factory) as session:
                pipeline = session.get(Pipeline, pipeline_id)
                trigger = _trigger(pipeline, tid) if pipeline and not pipeline.paused else None
                if pipeline is None or trigger is None:
                    return  # changed meanwhile: the next reconcile reschedules it
                self._fire_tick(session, pipeline, trigger, tick)
                spec = spec_of(pipeline)
                next_tick = self._catch_up(session, pipeline, spec, trigger)
            self._add_tick_job(pipeline_id, trigger, next_tick)
        except Exception:
            log.exception("pipeline %s: tick %s of trigger %s failed", pipeline_id, tick, tid)

    def _fire_tick(
        self, session: Session, pipeline: Pipeline, trigger: TimeTrigger, tick: datetime
    ) -> None:
        describe = schedule_of(trigger, pipeline.schedule_anchor_at).describe()
        fire = runs.Fire(
            kind=trigger.kind,
            reason=describe,
            key=schedule_key(trigger, tick),
            trigger_id=trigger_id(trigger),
        )
        firing.fire_automatic(session, pipeline, fire, dispatch=self._dispatch, scheduled_for=tick)


def last_tick(session: Session, pipeline_id: int, tid: str) -> datetime | None:
    """The newest tick of this trigger that has a run (or a skipped record)."""
    value = session.scalar(
        select(func.max(Run.scheduled_for)).where(
            Run.pipeline_id == pipeline_id, Run.trigger_id == tid
        )
    )
    return as_utc(value) if value is not None else None


def _trigger(pipeline: Pipeline, tid: str) -> TimeTrigger | None:
    return next((t for t in time_triggers(spec_of(pipeline)) if trigger_id(t) == tid), None)
