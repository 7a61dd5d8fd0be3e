"""Time triggers as schedules: when a cron or interval trigger fires, and what to do with
ticks that were missed while the service was down (the misfire policy)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from app.core.time import as_utc
from app.spec.cron import CronExpression, parse_cron
from app.spec.schema import CronTrigger, IntervalTrigger, PipelineSpec

TimeTrigger = CronTrigger | IntervalTrigger


class TimeSchedule(Protocol):
    def next_after(self, after: datetime) -> datetime:
        """The first fire time strictly after `after` (UTC)."""

    def describe(self) -> str:
        """What a run fired by it says as its reason."""


@dataclass(frozen=True)
class CronSchedule:
    expression: CronExpression
    text: str
    zone_name: str

    def next_after(self, after: datetime) -> datetime:
        return as_utc(self.expression.next_after(after, ZoneInfo(self.zone_name)))

    def describe(self) -> str:
        return f"cron {self.text} ({self.zone_name})"


@dataclass(frozen=True)
class IntervalSchedule:
    """Ticks at anchor + k * every (k >= 1): every replica computes the same ticks."""

    every_s: float
    anchor: datetime

    def next_after(self, after: datetime) -> datetime:
        elapsed = (as_utc(after) - as_utc(self.anchor)).total_seconds()
        k = max(1, math.floor(elapsed / self.every_s) + 1)
        tick = as_utc(self.anchor) + timedelta(seconds=k * self.every_s)
        return tick if tick > as_utc(after) else tick + timedelta(seconds=self.every_s)

    def describe(self) -> str:
        return f"interval every {self.every_s:g} s"


def schedule_of(trigger: TimeTrigger, anchor: datetime) -> TimeSchedule:
    """The schedule of one time trigger; intervals count from the pipeline's anchor."""
    if isinstance(trigger, CronTrigger):
        expression = parse_cron(trigger.schedule)
        return CronSchedule(expression, trigger.schedule, trigger.timezone)
    return IntervalSchedule(trigger.every_s, anchor)


def time_triggers(spec: PipelineSpec) -> list[TimeTrigger]:
    """The spec's cron and interval triggers."""
    return [t for t in spec.triggers if isinstance(t, CronTrigger | IntervalTrigger)]


def ticks_between(
    schedule: TimeSchedule, start: datetime, end: datetime, limit: int
) -> list[datetime]:
    """Fire times in (start, end], at most `limit` of them (the earliest)."""
    ticks: list[datetime] = []
    tick = schedule.next_after(start)
    while tick <= end and len(ticks) < limit:
        ticks.append(tick)
        tick = schedule.next_after(tick)
    return ticks


def next_runs(spec: PipelineSpec, anchor: datetime, after: datetime, count: int) -> list[datetime]:
    """The next `count` fire times over all the spec's time triggers, merged and sorted."""
    merged: set[datetime] = set()
    for trigger in time_triggers(spec):
        schedule = schedule_of(trigger, anchor)
        tick = after
        for _ in range(count):
            tick = schedule.next_after(tick)
            merged.add(tick)
    return sorted(merged)[:count]


@dataclass(frozen=True)
class Misfire:
    """What to do about ticks missed while nothing was running to fire them."""

    tick: datetime  # the newest missed tick: the fire key of whatever is recorded
    run: bool  # True: one run for all of them; False: one skipped record
    reason: str


def misfire(spec: PipelineSpec, describe: str, missed: list[datetime], now: datetime) -> Misfire:
    """Apply the pipeline's misfire policy to the ticks missed (oldest first, non-empty)."""
    newest, count = missed[-1], len(missed)
    span = f"{count} missed tick{'s' if count > 1 else ''}"
    if count > 1:
        span += f" from {missed[0].isoformat()} to {newest.isoformat()}"
    else:
        span += f" at {newest.isoformat()}"
    if spec.misfire == "skip":
        return Misfire(newest, False, f"Skipped: {describe}: {span} (misfire: skip)")
    late = (now - newest).total_seconds()
    if late > spec.misfire_grace_s:
        reason = (
            f"Skipped: {describe}: {span}, {late:.0f} s ago, beyond misfire_grace_s "
            f"{spec.misfire_grace_s:g}"
        )
        return Misfire(newest, False, reason)
    return Misfire(newest, True, f"{describe} (ran once for {span}; misfire: run_once)")
