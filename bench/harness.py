"""The pieces bench/overhead.py drives: the data, the bare-script child, the real service,
and reading a run's own timestamps back into durations."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np
import pandas as pd

BARE_JOB = Path(__file__).with_name("bare_job.py")
# The big job's model, by --model: `logistic` (the default) is data-heavy, a fast fit on many
# rows where reading, splitting and scoring are ~40 % of the job; `forest` spends nearly all
# of its time in the fit, on fewer rows.
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "logistic": ("sklearn.linear_model.LogisticRegression", {"max_iter": 1000}),
    "forest": (
        "sklearn.ensemble.RandomForestClassifier",
        {"n_estimators": 20, "n_jobs": 1, "random_state": 0},
    ),
}
TARGET, HOLDOUT = "label", 0.2
BIG, TINY = "bench-overhead", "bench-trigger"
FINAL = {"completed", "failed", "rejected", "awaiting_approval", "cancelled"}
STEP_NAMES = ("load_data", "validate", "train", "evaluate", "deploy")
FIT_SECONDS = re.compile(r" in ([0-9.]+) s$")


class BenchError(Exception):
    """The service or the baseline did not do what the benchmark asked."""


# --- data and specs ---------------------------------------------------------------------


def run_in_workdir(run: Callable[[Path], None], *, prefix: str, keep: bool, logs: str) -> int:
    """Run a benchmark in a fresh temp dir: exit code 1 and the dir kept if it fails."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        run(workdir)
    except (BenchError, httpx.HTTPError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        print(f"kept {workdir} ({logs})", file=sys.stderr)
        return 1
    if keep:
        print(f"kept {workdir} ({logs})")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def write_dataset(path: Path, rows: int, seed: int = 7) -> Path:
    """Eight numeric columns, one five-level category, a learnable noisy binary label."""
    rng = np.random.default_rng(seed)
    numbers = rng.normal(size=(rows, 8))
    segment = rng.choice(np.array(list("abcde")), rows)
    logit = numbers @ rng.normal(size=8) + np.select([segment == "a", segment == "b"], [1, -1])
    frame = pd.DataFrame(numbers.round(4), columns=[f"x{i}" for i in range(8)])
    frame["segment"] = segment
    frame[TARGET] = (logit + rng.normal(0, 1, rows) > 0).astype(int)
    frame.to_csv(path, index=False)
    return path


def bare_job(csv: Path, model: str, rows: Path | None = None) -> dict[str, Any]:
    """The bare script's job; with `rows` (service_rows), it trains and scores on those."""
    estimator, params = MODELS[model]
    return {
        "csv": str(csv),
        "target": TARGET,
        "holdout_fraction": HOLDOUT,
        "estimator": estimator,
        "params": params,
        **({"rows": str(rows)} if rows is not None else {}),
    }


def service_rows(csv: Path, model: str) -> Path:
    """The service's training and holdout rows of `csv` (positions), in an .npz beside it.

    The service splits by row hash and keeps the source's order; train_test_split draws
    other rows in another order. A forest's fit time depends on which rows it gets (20 trees
    on this data: about 7 % apart between the two splits, in one process), so the bare
    script, after its own train_test_split, fits and scores on the very rows the service
    does, and the ratio compares like with like.
    """
    from app.core.settings import Settings
    from app.datasources.files import load_file
    from app.pipelines.parsing import parse_spec
    from app.spec.estimators import resolve_estimator
    from app.training.holdout import split_holdout

    settings = Settings(source_dirs=[csv.parent])
    spec = parse_spec(big_spec(csv.name, model), settings)
    frame = load_file(spec.source, settings)  # type: ignore[arg-type]
    kind = resolve_estimator(spec.model.estimator, settings.allowed_estimators).kind
    holdout = split_holdout(frame, spec, kind)
    out = csv.with_suffix(".rows.npz")
    np.savez(out, train=holdout.X_train.index.to_numpy(), test=holdout.X_test.index.to_numpy())
    return out


def big_spec(csv_name: str, model: str) -> dict[str, Any]:
    estimator, params = MODELS[model]
    return {
        "name": BIG,
        "source": {"kind": "csv", "path": csv_name},
        "target": TARGET,
        "model": {"estimator": estimator, "params": params},
        "evaluation": {"metric": "accuracy", "holdout_fraction": HOLDOUT},
        "deployment": {"mode": "auto"},
        "concurrency": "skip",
    }


def tiny_spec() -> dict[str, Any]:
    return {
        "name": TINY,
        "source": {"kind": "sklearn", "dataset": "iris"},
        "target": "target",
        "model": {
            "estimator": "sklearn.tree.DecisionTreeClassifier",
            "params": {"random_state": 0},
        },
        "evaluation": {"metric": "accuracy", "holdout_fraction": 0.2},
        "concurrency": "skip",
    }


# --- the two child processes ------------------------------------------------------------


def child_env(threads: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment, with the BLAS/OpenMP thread count pinned when threads > 0."""
    env = {**os.environ, **(extra or {})}
    if threads > 0:
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(threads)
    return env


class BareChild:
    """bench/bare_job.py in a child process, fed one job per line."""

    def __init__(self, threads: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(BARE_JOB)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(threads),
        )

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        stdin, stdout = self._pipes()
        stdin.write(json.dumps(job) + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise BenchError("the bare script exited; see its stderr above")
        result: dict[str, Any] = json.loads(line)
        return result

    def close(self) -> None:
        if self.process.poll() is None:
            self._pipes()[0].close()
            self.process.wait(timeout=30)

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        assert self.process.stdin is not None and self.process.stdout is not None
        return self.process.stdin, self.process.stdout


class Service:
    """`mlops serve` on a free port with a fresh data dir and SQLite."""

    def __init__(self, workdir: Path, threads: int) -> None:
        self.port = _free_port()
        self.log = workdir / "server.log"
        self.workdir = workdir
        self.env = child_env(
            threads,
            {
                "MLOPS_DATA_DIR": str(workdir / ".mlops"),
                "MLOPS_SOURCE_DIRS": str(workdir / "data"),
                "MLOPS_AUTH": "disabled",
            },
        )
        self.env.pop("MLOPS_DATABASE_URL", None)
        self.process: subprocess.Popen[bytes] | None = None
        self.started_s = 0.0
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.port}/api/v1", timeout=60)

    def start(self, timeout: float = 90, poll_s: float = 0.1) -> None:
        """Start `mlops serve`; `started_s` is process start -> the first /readyz 200."""
        begin = time.perf_counter()
        command = [sys.executable, "-m", "app.cli.main", "serve", "--port", str(self.port)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"server exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).is_success:
                    self.started_s = time.perf_counter() - begin
                    return
            except httpx.HTTPError:
                pass
            time.sleep(poll_s)
        raise BenchError(f"server not ready after {timeout:g} s:\n{self.log.read_text()[-3000:]}")

    def restart(self) -> None:
        """Stop the server (SIGTERM) and start it again on the same data dir and port."""
        self._terminate()
        self.start()

    def create(self, spec: dict[str, Any]) -> None:
        response = self.api.post("/pipelines", json=spec)
        if response.status_code != 201:
            raise BenchError(f"creating {spec['name']}: {response.status_code} {response.text}")

    def stop(self) -> None:
        self.api.close()
        self._terminate()

    def _terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- one service run --------------------------------------------------------------------


@dataclass(frozen=True)
class Triggered:
    run: dict[str, Any]
    sent: float  # epoch seconds just before the POST was sent
    post_s: float  # the POST's round trip
    client_s: float  # POST sent -> final status seen


def trigger_and_wait(
    service: Service, name: str, poll_s: float, first_wait_s: float = 0.0
) -> Triggered:
    """POST a manual run, sleep first_wait_s, then poll GET /runs/{id} until it ends."""
    sent, start = time.time(), time.perf_counter()
    response = service.api.post(f"/pipelines/{name}/runs")
    post_s = time.perf_counter() - start
    if response.status_code != 202:
        raise BenchError(f"trigger {name}: {response.status_code} {response.text}")
    run_id = response.json()["id"]
    time.sleep(first_wait_s)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        time.sleep(poll_s)
        run: dict[str, Any] = service.api.get(f"/runs/{run_id}").json()
        if run["status"] in FINAL:
            return Triggered(run, sent, post_s, time.perf_counter() - start)
    raise BenchError(f"run {run_id} did not finish in 600 s")


def ts(value: str) -> float:
    """An API timestamp (ISO 8601 with offset) as epoch seconds."""
    return datetime.fromisoformat(value).timestamp()


def uncovered(start: float, end: float, spans: Sequence[tuple[float, float]]) -> float:
    """Seconds of [start, end] that no span covers."""
    covered, cursor = 0.0, start
    for left, right in sorted((max(a, start), min(b, end)) for a, b in spans):
        if right > cursor:
            covered += right - max(left, cursor)
            cursor = right
    return (end - start) - covered


@dataclass(frozen=True)
class RunTiming:
    server_s: float  # finished_at - created_at
    client_s: float
    queue_s: float  # created_at -> started_at
    bookkeeping_s: float  # inside [created_at, finished_at], outside every step
    steps: dict[str, float]
    fit_s: float | None  # from the train step's detail ("... in 0.52 s")


def run_timing(triggered: Triggered) -> RunTiming:
    """Durations from the run's own timestamps; BenchError unless it completed."""
    run = triggered.run
    if run["status"] != "completed":
        raise BenchError(f"run {run['id']} ended {run['status']}: {run['error']}")
    created, started, finished = (ts(run[k]) for k in ("created_at", "started_at", "finished_at"))
    spans = {
        step["name"]: (ts(step["started_at"]), ts(step["finished_at"]))
        for step in run["steps"]
        if step["started_at"] and step["finished_at"]
    }
    train = next(s for s in run["steps"] if s["name"] == "train")
    fit = FIT_SECONDS.search(train["detail"] or "")
    return RunTiming(
        server_s=finished - created,
        client_s=triggered.client_s,
        queue_s=started - created,
        bookkeeping_s=uncovered(created, finished, list(spans.values())),
        steps={name: b - a for name, (a, b) in spans.items()},
        fit_s=float(fit.group(1)) if fit else None,
    )
