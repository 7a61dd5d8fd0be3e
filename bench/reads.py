"""Read endpoints' request rate against a bare FastAPI endpoint, in the same run.

Seeds a fresh database (1,000 pipelines with cron triggers, 100k runs with five steps each:
bench/seed.py), starts the real `mlops serve` on it with authentication on (requests carry a
stored viewer key, looked up as in production), and bench/bare_app.py (FastAPI's first
example, served by the same uvicorn). Then, for 1 and for 16 keep-alive clients, it measures
the request rate of each endpoint and of the bare one, in turns, and prints the ratios.

    python bench/reads.py                         # SQLite
    python bench/reads.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    python bench/reads.py --commits-per-s 200     # while another writer commits 200 times a second

Repeated reads are answered from what was read while the database has committed nothing since
(app.api.read_cache), so a quiet database shows that path; `--commits-per-s` has a writer in
this process commit an update that many times a second throughout, so that reads made after
a commit are read afresh, as on a busy service. The `run-cold` figure asks for runs spread over
the whole history, each rarely asked twice: reads that find nothing kept.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: make `bench` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from sqlalchemy import create_engine, text

from bench.harness import BenchError, _free_port
from bench.load import encode, measure
from bench.seed import (
    create_pg_database,
    drop_pg_database,
    pipeline_name,
    seed,
    wait_rolled_up,
)
from bench.triggers_server import Server, cpu_seconds

ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"  # a throwaway server's
BARE_APP = Path(__file__).with_name("bare_app.py")
RESULTS = Path(__file__).with_name("results")
TARGET = 0.5
GOALS = ("status", "run", "pipelines")


def main() -> int:
    parser = argparse.ArgumentParser(description="read endpoints against a bare FastAPI endpoint")
    parser.add_argument("--postgres", metavar="ADMIN_URL", help="use PostgreSQL (a fresh database)")
    parser.add_argument("--pipelines", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--clients", default="1,16", help="concurrent clients, comma-separated")
    parser.add_argument("--auth", choices=("key", "disabled"), default="key")
    parser.add_argument("--hold", type=float, default=0, help="keep serving N s (to profile)")
    parser.add_argument("--commits-per-s", type=float, default=0, help="a writer's commit rate")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mlops-bench-reads-"))
    url = create_pg_database(args.postgres) if args.postgres else f"sqlite:///{workdir}/bench.db"
    try:
        seeded = seed(url, pipelines_count=args.pipelines, runs=args.runs, steps=True)
        print(
            f"seeded {seeded.pipelines:,} pipelines, {seeded.runs:,} runs, {seeded.steps:,} "
            f"steps in {seeded.seconds:.1f} s"
        )
        result = run(workdir, url, args)
    finally:
        if args.postgres:
            drop_pg_database(args.postgres, url)
    result["database"] = "postgresql" if args.postgres else "sqlite"
    print_result(result)
    RESULTS.mkdir(exist_ok=True)
    busy = f"-{args.commits_per_s:g}-commits-per-s" if args.commits_per_s else ""
    out = RESULTS / f"reads-{result['database']}{busy}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"figures kept in {out}")
    return 0


def run(workdir: Path, url: str, args: argparse.Namespace) -> dict[str, Any]:
    auth = "enabled" if args.auth == "key" else "disabled"
    server = Server(workdir, database_url=url, auth=auth, admin_token=ADMIN_TOKEN)
    server.start()
    caught_up = wait_rolled_up(url)
    print(f"the roll-up job counted the history in {caught_up:.1f} s")
    bare_port = _free_port()
    bare = subprocess.Popen(
        [sys.executable, str(BARE_APP), str(bare_port)],
        stdout=(workdir / "bare.log").open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        _wait(f"http://127.0.0.1:{bare_port}/bare")
        token = _viewer_key(server) if args.auth == "key" else None
        targets = _targets(server, token, args)
        if args.hold:
            print(f"serving on {server.port} (pid {server.pid}) for {args.hold:g} s")
            _load_for(server.port, targets["status"], args.hold)
        bare_requests = [encode("/bare", "bench", None)]
        clients = [int(value) for value in args.clients.split(",")]
        with Writer(url, args.commits_per_s) as writer:
            return {
                "load_before": os.getloadavg()[0],
                "rounds": [
                    _round(
                        Side(server.port, server.pid),
                        Side(bare_port, bare.pid),
                        bare_requests,
                        targets,
                        clients,
                        args.seconds,
                    )
                    for _ in range(args.repeats)
                ],
                "load_after": os.getloadavg()[0],
                "pipelines": args.pipelines,
                "runs": args.runs,
                "auth": args.auth,
                "commits_per_s": writer.rate(),
            }
    finally:
        bare.terminate()
        bare.wait(timeout=15)
        server.stop()


class Writer:
    """Commits an update `per_second` times a second in a thread, while in its block."""

    def __init__(self, url: str, per_second: float) -> None:
        self.engine = create_engine(url)
        self.per_second = per_second
        self.commits = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, daemon=True)
        self._started = self._stopped = time.monotonic()

    def __enter__(self) -> Writer:
        if self.per_second > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._stopped = time.monotonic()
        if self._thread.is_alive():
            self._thread.join()
        self.engine.dispose()

    def rate(self) -> float:
        """Commits a second, as made."""
        return self.commits / max(time.monotonic() - self._started, 1e-9)

    def _write(self) -> None:
        self._started = time.monotonic()
        while not self._stop.wait(1 / self.per_second):
            with self.engine.begin() as connection:
                # A new value each time: an update that changes nothing commits nothing.
                connection.execute(
                    text("UPDATE api_keys SET last_used_at = :at WHERE name = :name"),
                    {"at": datetime.now(UTC), "name": "bench-reader"},
                )
            self.commits += 1


@dataclass(frozen=True)
class Side:
    port: int
    pid: int


def _round(
    service: Side,
    bare: Side,
    bare_requests: list[bytes],
    targets: dict[str, list[bytes]],
    clients: list[int],
    seconds: float,
) -> dict[str, dict[str, float]]:
    figures: dict[str, dict[str, float]] = {}
    for count in clients:
        row: dict[str, float] = {}
        # The bare endpoint before and after the service's endpoints: its mean is the baseline.
        before = _measured(bare, bare_requests, count, seconds)
        for name, requests in targets.items():
            if not name.endswith("-cold"):
                measure(service.port, requests, clients=count, seconds=0.3)  # warm the path
            row.update(
                {f"{name}{k}": v for k, v in _measured(service, requests, count, seconds).items()}
            )
        after = _measured(bare, bare_requests, count, seconds)
        row["bare"] = (before[""] + after[""]) / 2
        row["bare_cpu_us"] = (before["_cpu_us"] + after["_cpu_us"]) / 2
        figures[str(count)] = row
    return figures


def _measured(side: Side, requests: list[bytes], clients: int, seconds: float) -> dict[str, float]:
    """Request rate, p50 latency, and the server's CPU time per request (all its threads):
    the CPU figure hardly depends on what else the machine is running."""
    cpu = cpu_seconds(side.pid)
    rate = measure(side.port, requests, clients=clients, seconds=seconds)
    used = cpu_seconds(side.pid) - cpu
    return {
        "": rate.per_second,
        "_p50_ms": statistics.median(rate.latencies_ms),
        "_cpu_us": used / max(rate.requests, 1) * 1e6,
    }


def _targets(server: Server, token: str | None, args: argparse.Namespace) -> dict[str, list[bytes]]:
    rng = random.Random(3)
    names = [pipeline_name(rng.randrange(args.pipelines)) for _ in range(64)]
    run_ids = [rng.randrange(1, args.runs + 1) for _ in range(256)]
    paths = {
        "status": [f"/api/v1/pipelines/{name}/status" for name in names],
        "run": [f"/api/v1/runs/{run_id}" for run_id in run_ids],
        "pipelines": ["/api/v1/pipelines"],
        "run-cold": [f"/api/v1/runs/{rng.randrange(1, args.runs + 1)}" for _ in range(20_000)],
        "healthz": ["/healthz"],
    }
    for path in (paths["status"][0], paths["run"][0], paths["pipelines"][0]):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = httpx.get(f"http://127.0.0.1:{server.port}{path}", headers=headers)
        if response.status_code != 200:
            raise BenchError(f"GET {path}: {response.status_code} {response.text[:300]}")
    return {name: [encode(p, "bench", token) for p in group] for name, group in paths.items()}


def _viewer_key(server: Server) -> str:
    response = httpx.post(
        f"http://127.0.0.1:{server.port}/api/v1/keys",
        json={"name": "bench-reader", "role": "viewer"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    if response.status_code != 201:
        raise BenchError(f"creating a key: {response.status_code} {response.text}")
    key: str = response.json()["key"]
    return key


def _load_for(port: int, requests: list[bytes], seconds: float) -> None:
    measure(port, requests, clients=1, seconds=seconds)


def _wait(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise BenchError(f"{url} did not answer in {timeout_s:g} s")


def print_result(result: dict[str, Any]) -> None:
    rounds = result["rounds"]
    print(
        f"\n{result['database']}: {result['pipelines']:,} pipelines, {result['runs']:,} runs, "
        f"auth {result['auth']}; {result['commits_per_s']:.0f} commits/s by another writer; "
        f"load average {result['load_before']:.2f} -> "
        f"{result['load_after']:.2f}; medians of {len(rounds)} rounds"
    )
    for count in rounds[0]:
        bare = statistics.median(r[count]["bare"] for r in rounds)
        bare_cpu = statistics.median(r[count]["bare_cpu_us"] for r in rounds)
        print(
            f"\n  {count} client(s): bare FastAPI endpoint {bare:,.0f} req/s, "
            f"{bare_cpu:,.0f} us CPU/request"
        )
        for name in ("status", "run", "pipelines", "run-cold", "healthz"):
            rate = statistics.median(r[count][name] for r in rounds)
            ratio = statistics.median(r[count][name] / r[count]["bare"] for r in rounds)
            p50 = statistics.median(r[count][f"{name}_p50_ms"] for r in rounds)
            cpu = statistics.median(r[count][f"{name}_cpu_us"] for r in rounds)
            goal = f"(target >= {TARGET}: {'pass' if ratio >= TARGET else 'MISS'})"
            print(
                f"    {name:<10} {rate:>8,.0f} req/s  p50 {p50:6.2f} ms  ratio {ratio:.2f}  "
                f"CPU {cpu:6,.0f} us/req (bare/this {bare_cpu / cpu:.2f})  "
                f"{goal if name in GOALS else ''}"
            )


if __name__ == "__main__":
    sys.exit(main())
