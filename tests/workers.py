"""Real `mlops worker` processes for Celery tests, and the process trees tests kill."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.server import ADMIN_TOKEN

REDIS_URL = "redis://127.0.0.1:6379/0"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


class Worker:
    """`mlops worker` with its own data dir (nothing shared on disk); start, kill."""

    def __init__(
        self,
        workdir: Path,
        *,
        database_url: str,
        broker_url: str,
        name: str,
        queues: str,
        **env: str,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir, self.name, self.queues = workdir, name, queues
        self.env = {
            **os.environ,
            "MLOPS_DATA_DIR": str(workdir / ".mlops"),
            "MLOPS_SOURCE_DIRS": str(workdir),
            "MLOPS_ADMIN_TOKEN": ADMIN_TOKEN,
            "MLOPS_DATABASE_URL": database_url,
            "MLOPS_BROKER_URL": broker_url,
            **env,
        }
        self.log = workdir / "worker.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> Worker:
        command = [sys.executable, "-m", "app.cli.main", "worker", "--name", self.name]
        command += ["--queues", self.queues]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log.read_text()[-3000:]}")
            if " ready." in self.log.read_text():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (children, their children…), read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of `pids` still running (a zombie has finished)."""
    running = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.add(pid)
    return running


def wait_gone(pids: set[int], timeout: float) -> set[int]:
    """Wait up to `timeout` for `pids` to end; returns those still alive."""
    deadline = time.monotonic() + timeout
    while (left := alive(pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left
