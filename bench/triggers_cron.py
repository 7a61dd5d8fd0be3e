"""Cron lateness: started_at - scheduled tick, with no training and with N trainings running.

Cron-triggered tiny pipelines tick every minute. First a baseline window with nothing else
to do, then a window during which a keeper thread holds N RandomForest trainings (manual
runs of N other pipelines) running at all times, re-triggering each as soon as it ends.
Each tick's scheduled time, fire time and start are read back from the SQLite file once
the server has stopped.
"""

from __future__ import annotations

import math
import sqlite3
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from bench.harness import FINAL, TARGET, BenchError, tiny_spec, write_dataset
from bench.triggers_server import Row, Server, fmt, pct

CRON, TRAIN = "bench-cron-", "bench-train-"
TREES = 40
SETTLE_S = 5.0  # after the last tick of a window: time for its runs to start
KEEPER_POLL_S = 1.0


@dataclass(frozen=True)
class CronOptions:
    pipelines: int  # cron-triggered pipelines
    trainings: int  # trainings kept running in the loaded window
    ticks: int  # ticks per pipeline per window
    every_s: float | None  # None: cron "* * * * *"; else an interval trigger (smoke runs)
    train_seconds: float  # one training's length alone, in this process

    @property
    def workers(self) -> int:
        # Enough run workers that no tick waits for a free thread: lateness is the clock's.
        return self.trainings + self.pipelines + 2


# --- the training job -------------------------------------------------------------------


def calibrate_training(data: Path, seconds: float) -> tuple[Path, int, float]:
    """A CSV on which a RandomForest (TREES trees) fit takes ~`seconds` here; its fit time."""
    rows, fit = 20_000, 0.0
    for _ in range(3):
        csv = write_dataset(data / f"train-{rows}.csv", rows, seed=3)
        fit = _fit_seconds(csv)
        print(f"  {rows:>9,} rows -> RandomForest fit {fit:5.2f} s", flush=True)
        if abs(fit / seconds - 1) < 0.2:
            break
        rows = max(2_000, min(2_000_000, round(rows * seconds / fit)))
    return csv, rows, fit


def _fit_seconds(csv: Path) -> float:
    frame = pd.get_dummies(pd.read_csv(csv), columns=["segment"])
    train = frame.sample(frac=0.8, random_state=0)
    start = time.perf_counter()
    model = RandomForestClassifier(n_estimators=TREES, random_state=0)
    model.fit(train.drop(columns=[TARGET]), train[TARGET])
    return time.perf_counter() - start


def train_spec(name: str, csv_name: str) -> dict[str, Any]:
    return {
        "name": name,
        "source": {"kind": "csv", "path": csv_name},
        "target": TARGET,
        "model": {
            "estimator": "sklearn.ensemble.RandomForestClassifier",
            "params": {"n_estimators": TREES, "random_state": 0},
        },
        "evaluation": {"metric": "accuracy", "holdout_fraction": 0.2},
        "concurrency": "skip",
    }


def cron_spec(name: str, every_s: float | None) -> dict[str, Any]:
    trigger: dict[str, Any] = (
        {"kind": "cron", "schedule": "* * * * *", "timezone": "UTC"}
        if every_s is None
        else {"kind": "interval", "every_s": every_s}
    )
    return {**tiny_spec(), "name": name, "triggers": [trigger]}


# --- keeping trainings running ----------------------------------------------------------


class Keeper(threading.Thread):
    """Keeps one run of each training pipeline going: triggers it again once it ends."""

    def __init__(self, base_url: str, names: list[str]) -> None:
        super().__init__(daemon=True)
        self._client = httpx.Client(base_url=base_url, timeout=60)
        self._names = names
        self._current: dict[str, int] = {}
        self._halt = threading.Event()
        self.all_running = threading.Event()
        self.triggered = 0
        self.failures: list[str] = []

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                statuses = [self._keep(name) for name in self._names]
                if all(status == "running" for status in statuses):
                    self.all_running.set()
                self._halt.wait(KEEPER_POLL_S)
        except httpx.HTTPError as exc:
            self.failures.append(f"keeper: {exc}")
        finally:
            self._client.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=120)

    def _keep(self, name: str) -> str:
        run_id = self._current.get(name)
        status = "" if run_id is None else self._client.get(f"/runs/{run_id}").json()["status"]
        if run_id is not None and status not in FINAL:
            return str(status)
        if status in FINAL - {"completed"}:
            self.failures.append(f"training run {run_id} ended {status}")
        response = self._client.post(f"/pipelines/{name}/runs")
        if response.status_code != 202:
            self.failures.append(f"trigger {name}: {response.status_code} {response.text}")
            return "refused"
        self._current[name] = response.json()["id"]
        self.triggered += 1
        return "queued"


# --- the windows ------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    label: str
    start: float  # epoch seconds; ticks scheduled in [start, end] belong to the window
    end: float
    ticks: int  # expected ticks per pipeline


def next_ticks(opts: CronOptions, after: float, anchor: float) -> list[float]:
    """The next `opts.ticks` tick times after `after` (interval ticks count from `anchor`)."""
    step = 60.0 if opts.every_s is None else opts.every_s
    base = 0.0 if opts.every_s is None else anchor
    first = base + (math.floor((after - base) / step) + 1) * step
    return [first + i * step for i in range(opts.ticks)]


def wait_window(label: str, opts: CronOptions, anchor: float) -> Window:
    start = time.time()
    ticks = next_ticks(opts, start + 0.5, anchor)
    print(
        f"  {label}: {len(ticks)} ticks, until {_hms(ticks[-1])} UTC (+{SETTLE_S:g} s)",
        flush=True,
    )
    time.sleep(max(0.0, ticks[-1] + SETTLE_S - time.time()))
    return Window(label, start, ticks[-1] + 0.5, len(ticks))


def _hms(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S")


@dataclass
class Lateness:
    window: Window
    late_s: list[float] = field(default_factory=list)  # started_at - scheduled_for
    fire_s: list[float] = field(default_factory=list)  # created_at - scheduled_for
    not_started: list[str] = field(default_factory=list)
    trainings_at_tick: list[int] = field(default_factory=list)
    expected: int = 0


@dataclass(frozen=True)
class CronResult:
    baseline: Lateness
    loaded: Lateness
    opts: CronOptions
    train_rows: int
    train_fit_s: float
    trainings_triggered: int
    training_run_s: list[float]


def measure(server: Server, opts: CronOptions, data: Path) -> CronResult:
    """Both windows on one server; the figures come from its database after it stops."""
    print("cron lateness: calibrating the training job ...", flush=True)
    csv, rows, fit = calibrate_training(data, opts.train_seconds)
    server.start()
    trains = [f"{TRAIN}{i:02d}" for i in range(opts.trainings)]
    for name in trains:
        server.create_pipeline(train_spec(name, csv.name))
    anchor = time.time()
    for i in range(opts.pipelines):
        server.create_pipeline(cron_spec(f"{CRON}{i:02d}", opts.every_s))
    baseline = wait_window("baseline (no training)", opts, anchor)
    keeper = Keeper(str(server.api.base_url), trains)
    keeper.start()
    if not keeper.all_running.wait(timeout=300):
        keeper.stop()
        raise BenchError(f"the {opts.trainings} trainings never all ran at once: {keeper.failures}")
    loaded = wait_window(f"loaded ({opts.trainings} trainings)", opts, anchor)
    keeper.stop()
    if keeper.failures:
        raise BenchError("; ".join(keeper.failures[:5]))
    server.stop()
    runs = read_runs(server.workdir / ".mlops" / "mlops.db")
    training = [r for r in runs if r["pipeline"].startswith(TRAIN)]
    return CronResult(
        baseline=lateness(baseline, runs, training, opts.pipelines),
        loaded=lateness(loaded, runs, training, opts.pipelines),
        opts=opts,
        train_rows=rows,
        train_fit_s=fit,
        trainings_triggered=keeper.triggered,
        training_run_s=[
            r["finished_at"] - r["started_at"]
            for r in training
            if r["finished_at"] is not None and r["started_at"] is not None
        ],
    )


def read_runs(db: Path) -> list[dict[str, Any]]:
    """Every run with its pipeline name, timestamps as epoch seconds (read-only)."""
    query = (
        "SELECT p.name, r.id, r.status, r.error, r.scheduled_for, r.created_at, r.started_at,"
        " r.finished_at FROM runs r JOIN pipelines p ON p.id = r.pipeline_id ORDER BY r.id"
    )
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        rows = connection.execute(query).fetchall()
    keys = ("scheduled_for", "created_at", "started_at", "finished_at")
    return [
        {
            "pipeline": name,
            "id": run_id,
            "status": status,
            "error": error,
            **{key: _epoch(value) for key, value in zip(keys, stamps, strict=True)},
        }
        for name, run_id, status, error, *stamps in rows
    ]


def _epoch(value: str | None) -> float | None:
    if value is None:
        return None
    stamp = datetime.fromisoformat(value)
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def lateness(
    window: Window, runs: list[dict[str, Any]], training: list[dict[str, Any]], pipelines: int
) -> Lateness:
    found = Lateness(window, expected=window.ticks * pipelines)
    for run in runs:
        tick = run["scheduled_for"]
        if not run["pipeline"].startswith(CRON) or tick is None:
            continue
        if not window.start <= tick <= window.end:
            continue
        found.fire_s.append(run["created_at"] - tick)
        found.trainings_at_tick.append(_running_at(training, tick))
        if run["started_at"] is None:
            found.not_started.append(f"run {run['id']} {run['status']}: {run['error']}")
        else:
            found.late_s.append(run["started_at"] - tick)
    return found


def _running_at(training: list[dict[str, Any]], moment: float) -> int:
    return sum(
        1
        for r in training
        if r["started_at"] is not None
        and r["started_at"] <= moment
        and (r["finished_at"] is None or r["finished_at"] > moment)
    )


# --- the report -------------------------------------------------------------------------


def print_cron(result: CronResult) -> None:
    opts = result.opts
    kind = "cron '* * * * *'" if opts.every_s is None else f"interval every_s {opts.every_s:g}"
    print(f"\n-- cron lateness: {opts.pipelines} tiny pipelines ({kind}), {opts.ticks} ticks each")
    print(
        f"   per window, MLOPS_WORKERS={opts.workers} (no tick waits for a free worker);"
        f" training: RandomForest {TREES} trees"
    )
    print(
        f"   on {result.train_rows:,} rows (fit alone, in this process: {result.train_fit_s:.1f}"
        f" s; a run under load in the service: median {_median(result.training_run_s):.1f} s;"
        f" {result.trainings_triggered} triggered)"
    )
    print(
        f"  {'seconds':<46}{'ticks':>7}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}"
        "  trainings running at the ticks"
    )
    for found in (result.baseline, result.loaded):
        seen = f"{len(found.fire_s)}/{found.expected}"
        running = found.trainings_at_tick or [0]
        busy = f"min {min(running)}, median {statistics.median(running):g}"
        for label, values in (
            (f"{found.window.label}: started_at - tick", found.late_s),
            ("  created_at (fired) - tick", found.fire_s),
        ):
            figures = "".join(f"{pct(values, q):8.3f}" for q in (50, 95, 99, 100))
            print(f"  {label:<46}{seen:>7}{figures}  {busy}")
            seen, busy = "", ""
        for problem in found.not_started[:5]:
            print(f"    not started: {problem}")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def cron_rows(result: CronResult) -> list[Row]:
    base, loaded = result.baseline, result.loaded
    missing = loaded.expected - len(loaded.late_s) + base.expected - len(base.late_s)
    trainings = result.opts.trainings
    return [
        Row(
            f"cron lateness p99, {trainings} trainings",
            pct(loaded.late_s, 99) if not missing else float(np.nan),
            "s",
            f"p99 {fmt(pct(base.late_s, 99))} s with none",
            1.0,
        ),
        Row(
            f"cron lateness p50, {trainings} trainings",
            pct(loaded.late_s, 50),
            "s",
            f"p50 {fmt(pct(base.late_s, 50))} s with none",
        ),
    ]
