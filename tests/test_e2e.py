"""The issue's end-to-end story, once per database: a real `mlops serve` subprocess, the real
`mlops` CLI as a subprocess, and HTTP for /predict. One pipeline is trained, broken, refused by
its deploy target, offered a worse candidate, promoted and rolled back; at every turn the
model in production is the one the promises say it is."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import BACKENDS, create_pg_database, drop_pg_database
from tests.factories import churn_frame, pipeline_spec, write_csv
from tests.server import Server
from tests.webhook_server import deploy_target

NAME = "retrain-customer-model"
STEPS = ["load_data", "validate", "train", "evaluate", "deploy"]
LAST_RUN = re.compile(r"Last run: \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
QUEUED = re.compile(r"Run (\d+) queued \(manual\)")
INSTANCES = [
    {"age": 70, "monthly_spend": 20.0, "plan": "basic"},
    {"age": 20, "monthly_spend": 90.0, "plan": "team"},
]


class Cli:
    """`python -m app.cli.main …` as a user runs it, pointed at the server by MLOPS_URL."""

    def __init__(self, server: Server) -> None:
        self.workdir = server.workdir
        env = {k: v for k, v in os.environ.items() if k not in ("MLOPS_TOKEN", "COLUMNS")}
        # The server's data dir: where the CLI finds the admin token that `serve` writes.
        self.env = {**env, "MLOPS_URL": server.url, "MLOPS_DATA_DIR": server.env["MLOPS_DATA_DIR"]}

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app.cli.main", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.returncode == 0, (result.stdout, result.stderr)
        return result.stdout

    def apply(self, spec: dict[str, Any]) -> None:
        path = self.workdir / "spec.yaml"
        path.write_text(yaml.safe_dump(spec))
        self.ok("pipeline", "apply", "-f", str(path))

    def trigger(self) -> int:
        match = QUEUED.fullmatch(self.ok("pipeline", "trigger", NAME).strip())
        assert match, "trigger did not print `Run N queued (manual)`"
        return int(match.group(1))

    def watch(self, run_id: int, *, code: int) -> list[str]:
        result = self("run", "watch", str(run_id))
        assert result.returncode == code, (result.stdout, result.stderr)
        return result.stdout.splitlines()

    def stages(self) -> dict[int, str]:
        models = json.loads(self.ok("model", "list", NAME, "-o", "json"))
        return {model["version"]: model["stage"] for model in models}


@pytest.fixture(params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    url = create_pg_database() if request.param == "postgresql" else None
    # No MLOPS_ADMIN_TOKEN: the CLI finds the key `serve` bootstraps, as on a first start.
    instance = Server(tmp_path, database_url=url, MLOPS_ADMIN_TOKEN="")
    try:
        yield instance.start()
    finally:
        instance.stop()
        if url:
            drop_pg_database(url)


@pytest.fixture
def cli(server: Server) -> Cli:
    return Cli(server)


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    token = Path(server.env["MLOPS_DATA_DIR"]) / "admin-token"
    headers = {"Authorization": f"Bearer {token.read_text().strip()}"} if token.exists() else {}
    with server.api() as client:
        client.headers.update(headers)
        yield client


def served_version(api: httpx.Client) -> int:
    response = api.post(f"/pipelines/{NAME}/predict", json={"instances": INSTANCES})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["predictions"]) == len(INSTANCES)
    assert set(body["predictions"]) <= {0, 1}
    version: int = body["model_version"]
    return version


def assert_steps_advance(lines: list[str], run_id: int) -> None:
    """Watch lines name the steps in pipeline order, each ending completed, then the outcome."""
    *steps, outcome = lines
    order = [STEPS.index(line.split(":")[0]) for line in steps]
    assert order == sorted(order), lines
    completed = [line.split(":")[0] for line in steps if ": completed" in line]
    assert completed == STEPS, lines
    assert outcome == f"Run {run_id} completed"


def test_retrain_break_refuse_reject_promote_and_roll_back(
    server: Server, cli: Cli, api: httpx.Client
) -> None:
    csv = server.workdir / "data" / "customers.csv"
    write_csv(csv, churn_frame())

    # 1. Trained and served.
    cli.apply(pipeline_spec(NAME))
    first = cli.trigger()
    assert_steps_advance(cli.watch(first, code=0), first)
    assert served_version(api) == 1
    status, last_run = cli.ok("pipeline", "status", NAME).splitlines()
    assert status == "Status: Completed"
    assert LAST_RUN.fullmatch(last_run)
    started = datetime.fromisoformat(api.get(f"/runs/{first}").json()["started_at"])
    assert last_run == f"Last run: {started.astimezone(UTC):%Y-%m-%d %H:%M:%S}"

    # 2. A missing data source fails the run, and status says why in two lines.
    cli.apply(pipeline_spec(NAME, source={"kind": "csv", "path": "data/nope.csv"}))
    broken = cli.trigger()
    assert cli.watch(broken, code=1)[-2:] == [
        f"Run {broken} failed",
        "Error: Data source not found: data/nope.csv",
    ]
    assert cli.ok("pipeline", "status", NAME) == (
        "Status: Failed\nError: Data source not found: data/nope.csv\n"
    )

    # 3. A deploy target that refuses: the run fails, production stays version 1.
    with deploy_target(403) as target:
        webhook = {"mode": "auto", "target": {"kind": "webhook", "url": target.url}}
        cli.apply(pipeline_spec(NAME, deployment=webhook))
        refused = cli.trigger()
        error = f"Deployment failed: 403 Forbidden from {target.url}"
        assert cli.watch(refused, code=1)[-2:] == [f"Run {refused} failed", f"Error: {error}"]
        assert api.get(f"/runs/{refused}").json()["error"] == error
        assert [payload["version"] for payload in target.received] == [2]
    assert cli.stages() == {1: "production", 2: "candidate"}
    assert served_version(api) == 1

    # 4. A candidate trained on shuffled labels is rejected. Production is scored on the same
    # shuffled holdout, so both land near chance and which is ahead is a coin flip (a tie
    # passes min_improvement 0); what the candidate cannot do is beat guessing. The floor is
    # lowered so that min_score is not the gate that says no.
    gate = {"metric": "accuracy", "holdout_fraction": 0.25, "min_score": 0.0}
    cli.apply(pipeline_spec(NAME, evaluation=gate))
    write_csv(csv, churn_frame(shuffle_labels=True))
    worse = cli.trigger()
    assert cli.watch(worse, code=1)[-2] == f"Run {worse} rejected"
    run = api.get(f"/runs/{worse}").json()
    assert run["status"] == "rejected"
    candidate, baseline = run["metrics"]["candidate"], run["metrics"]["baseline"]
    assert run["error"].startswith(
        f"Evaluation gate: candidate accuracy {candidate:.3f} shows no real skill: "
    )
    assert f"scores {baseline:.3f} on the same holdout" in run["error"]
    assert cli.stages() == {1: "production", 2: "candidate", 3: "candidate"}
    assert served_version(api) == 1

    # 5. A tie is let through, promoted, and rolled back with one command.
    write_csv(csv, churn_frame())
    cli.apply(pipeline_spec(NAME, evaluation={**gate, "min_improvement": -1}))
    promoted = cli.trigger()
    assert_steps_advance(cli.watch(promoted, code=0), promoted)
    assert api.get(f"/runs/{promoted}").json()["model_version"] == 4
    assert cli.stages() == {1: "archived", 2: "candidate", 3: "candidate", 4: "production"}
    assert served_version(api) == 4
    assert cli.ok("model", "rollback", NAME) == f"Pipeline {NAME}: rolled back to v1 (was v4)\n"
    assert cli.stages() == {1: "production", 2: "candidate", 3: "candidate", 4: "archived"}
    assert served_version(api) == 1
    ledger = api.get(f"/pipelines/{NAME}/promotions").json()
    assert [(p["action"], p["from_version"], p["to_version"]) for p in ledger] == [
        ("rollback", 4, 1),
        ("promote", 1, 4),
        ("promote", None, 1),
    ]

    # 6. An unknown pipeline is the server's error, on stderr, exit 1.
    missing = cli("pipeline", "status", "nope")
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == "Error: Pipeline nope does not exist\n"
