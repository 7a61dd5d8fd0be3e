"""Many pipelines with cron triggers: start-up time, resident memory and idle CPU.

The pipelines are written straight into a fresh SQLite file through the app's own code
(migrations, then `pipelines.service.create` in one unit of work): the same rows the API
would write, without 10,000 HTTP calls. The baseline is the same server with no pipelines.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from app.core import migrate
from app.core.db import make_engine, make_session_factory, unit_of_work
from app.core.settings import Settings
from app.pipelines import service as pipelines
from app.pipelines.parsing import parse_spec
from bench.harness import BenchError, tiny_spec
from bench.triggers_server import (
    Row,
    Server,
    fmt,
    idle_cpu_percent,
    peak_rss_mb,
    rss_mb,
)

ZONES = ("UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo")
DAYS = ("* * *", "* * 1-5", "1,15 * *", "* * 0")
QUIET_HOURS = 3  # no schedule fires in the current local hour or the next two
SETTLE_S = 5.0  # after /readyz: let start-up stragglers finish before the idle window


@dataclass(frozen=True)
class Footprint:
    pipelines: int
    started_s: list[float]  # process start -> first /readyz 200, one per start
    rss_ready_mb: float  # right after the last start was ready
    rss_idle_mb: float  # at the end of the idle window
    peak_mb: float  # VmHWM: the most it was resident at any time
    idle_cpu: float  # % of one core over the idle window
    scheduled: int  # pipelines the API lists (sanity check)
    next_run: str  # one pipeline's next fire time, from the API (sanity check)

    @property
    def start_s(self) -> float:
        return statistics.median(self.started_s)


def fleet_spec(i: int, allowed: dict[str, list[int]]) -> dict[str, Any]:
    """Pipeline i: a daily-ish cron at a minute and hour spread over the day, in one of ZONES."""
    zone = ZONES[i % len(ZONES)]
    hours = allowed[zone]
    minute, hour = i % 60, hours[(i // 60) % len(hours)]
    days = DAYS[(i // 7) % len(DAYS)]
    trigger = {"kind": "cron", "schedule": f"{minute} {hour} {days}", "timezone": zone}
    return {**tiny_spec(), "name": f"fleet-{i:05d}", "triggers": [trigger]}


def quiet_hours() -> dict[str, list[int]]:
    """Per zone, the local hours whose ticks cannot fall within the measurement."""
    allowed = {}
    for zone in ZONES:
        now = datetime.now(ZoneInfo(zone)).hour
        busy = {(now + k) % 24 for k in range(QUIET_HOURS)}
        allowed[zone] = [h for h in range(24) if h not in busy]
    return allowed


def build_database(workdir: Path, count: int) -> float:
    """Migrate a fresh SQLite file in workdir/.mlops and create `count` pipelines; seconds taken."""
    start = time.perf_counter()
    settings = Settings(data_dir=workdir / ".mlops", source_dirs=[workdir / "data"])
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url
    migrate.upgrade(url)
    engine = make_engine(url)
    allowed = quiet_hours()
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            for i in range(count):
                pipelines.create(session=session, spec=parse_spec(fleet_spec(i, allowed), settings))
    finally:
        engine.dispose()
    return time.perf_counter() - start


def footprint(workdir: Path, count: int, starts: int, idle_s: float) -> Footprint:
    """Start the server `starts` times on the database; the last start also sits idle."""
    started = [_start_and_stop(workdir) for _ in range(starts - 1)]
    server = Server(workdir)
    try:
        server.start()
        started.append(server.started_s)
        ready = rss_mb(server.pid)
        time.sleep(SETTLE_S)
        cpu = idle_cpu_percent(server.pid, idle_s)
        idle, peak = rss_mb(server.pid), peak_rss_mb(server.pid)
        listed = server.api.get("/pipelines", params={"limit": 1}).json()["total"]
        next_run = _next_run(server, count)
    finally:
        server.stop()
    if listed != count:
        raise BenchError(f"the API lists {listed} pipelines, {count} were created")
    return Footprint(count, started, ready, idle, peak, cpu, listed, next_run)


def _start_and_stop(workdir: Path) -> float:
    server = Server(workdir)
    try:
        server.start()
    finally:
        server.stop()
    return server.started_s


def _next_run(server: Server, count: int) -> str:
    if count == 0:
        return "-"
    response = server.api.get(f"/pipelines/{fleet_name(count - 1)}/schedule", params={"count": 1})
    if response.status_code != 200:
        raise BenchError(f"schedule: {response.status_code} {response.text}")
    return str(response.json()["next_runs"][0])


def fleet_name(i: int) -> str:
    return f"fleet-{i:05d}"


def print_fleet(empty: Footprint, fleet: Footprint, built_s: float, idle_s: float) -> None:
    print(f"\n-- {fleet.pipelines:,} pipelines with cron triggers vs the same server with none --")
    print(
        f"   (written to SQLite through app code in {built_s:.1f} s; schedules spread over"
        f" minutes, hours, weekdays and {len(ZONES)} time zones; idle CPU over {idle_s:g} s"
        f" after /readyz + {SETTLE_S:g} s; MLOPS_RECONCILE_S default)"
    )
    print(f"  {'':<40}{'0 pipelines':>14}{f'{fleet.pipelines:,} pipelines':>18}")
    label = "start-up: process start -> /readyz (s)"
    print(f"  {label:<40}{_list(empty.started_s):>14}{_list(fleet.started_s):>18}")
    for label, x, y in (
        ("resident memory at ready (MiB)", empty.rss_ready_mb, fleet.rss_ready_mb),
        ("resident memory after idling (MiB)", empty.rss_idle_mb, fleet.rss_idle_mb),
        ("peak resident memory, VmHWM (MiB)", empty.peak_mb, fleet.peak_mb),
        ("idle CPU (% of one core)", empty.idle_cpu, fleet.idle_cpu),
    ):
        print(f"  {label:<40}{fmt(x):>14}{fmt(y):>18}")
    print(f"  sanity: the API lists {fleet.scheduled:,}; last one's next run {fleet.next_run}")


def _list(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def fleet_rows(empty: Footprint, fleet: Footprint) -> list[Row]:
    n = f"{fleet.pipelines // 1000}k" if fleet.pipelines >= 1000 else str(fleet.pipelines)
    return [
        Row(
            f"{n} pipelines: start-up, median",
            fleet.start_s,
            "s",
            f"{empty.start_s:.2f} s with 0",
            10.0,
        ),
        Row(
            f"{n} pipelines: resident memory",
            max(fleet.rss_idle_mb, fleet.rss_ready_mb),
            "MiB",
            f"{max(empty.rss_idle_mb, empty.rss_ready_mb):.0f} MiB with 0",
            300.0,
        ),
        Row(
            f"{n} pipelines: idle CPU",
            fleet.idle_cpu,
            "%",
            f"{empty.idle_cpu:.2f} % with 0",
            5.0,
        ),
    ]
