"""Shared pieces of bench/triggers.py: a timed `mlops serve`, /proc readings, the summary row."""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.harness import FINAL, BenchError, Service

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
READY_POLL_S = 0.02


class Server(Service):
    """bench.harness.Service with extra settings, a timed start and the process's /proc."""

    def __init__(self, workdir: Path, *, threads: int = 1, **settings: str) -> None:
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        super().__init__(workdir, threads)
        self.env.update({f"MLOPS_{key.upper()}": value for key, value in settings.items()})
        self.root = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60)

    def start(self, timeout: float = 300, poll_s: float = READY_POLL_S) -> None:
        """Start, polling /readyz every 20 ms so `started_s` is precise."""
        super().start(timeout, poll_s)

    @property
    def pid(self) -> int:
        assert self.process is not None, "server not started"
        return self.process.pid

    def create_pipeline(self, spec: dict[str, Any]) -> dict[str, Any]:
        """POST the spec; the answer (with the webhook secret, shown only here)."""
        response = self.api.post("/pipelines", json=spec)
        if response.status_code != 201:
            raise BenchError(f"creating {spec['name']}: {response.status_code} {response.text}")
        created: dict[str, Any] = response.json()
        return created

    def run(self, run_id: int) -> dict[str, Any]:
        response = self.api.get(f"/runs/{run_id}")
        if response.status_code != 200:
            raise BenchError(f"GET /runs/{run_id}: {response.status_code} {response.text}")
        run: dict[str, Any] = response.json()
        return run

    def wait_final(self, run_id: int, poll_s: float, timeout: float = 600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.run(run_id)
            if run["status"] in FINAL:
                return run
            time.sleep(poll_s)
        raise BenchError(f"run {run_id} did not finish in {timeout:g} s")

    def stop(self) -> None:
        self.root.close()
        super().stop()


# --- /proc ------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    """Resident memory (VmRSS) in MiB."""
    return _status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int) -> float:
    """The high-water mark of resident memory (VmHWM) in MiB."""
    return _status_kb(pid, "VmHWM") / 1024


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise BenchError(f"/proc/{pid}/status has no {field}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads) in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat(5)
    return (utime + stime) / CLOCK_TICKS


def idle_cpu_percent(pid: int, seconds: float) -> float:
    """CPU the process used over `seconds` of sleeping here, as % of one core."""
    before, start = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - start) * 100


# --- webhook signing --------------------------------------------------------------------


def signature(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The X-Mlops-Signature header value for `body`, signed now."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


# --- figures ----------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=float), q))


@dataclass(frozen=True)
class Row:
    """One line of the summary: a figure, its same-run baseline and its target."""

    figure: str
    value: float
    unit: str
    baseline: str
    limit: float | None = None  # None: for information
    at_least: bool = False  # the target is a floor, not a ceiling

    def verdict(self) -> str:
        if self.limit is None:
            return ""
        if self.value != self.value:  # NaN: nothing was measured
            return "FAIL"
        ok = self.value >= self.limit if self.at_least else self.value <= self.limit
        return "PASS" if ok else "FAIL"

    def target(self) -> str:
        if self.limit is None:
            return "(info)"
        return f"{'>=' if self.at_least else '<='} {fmt(self.limit)} {self.unit}".strip()

    def shown(self) -> str:
        return f"{fmt(self.value)} {self.unit}".strip()


def fmt(value: float) -> str:
    if value != value:
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value == int(value):
        return f"{value:.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
