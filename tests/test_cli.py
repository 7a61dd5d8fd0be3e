"""The `mlops` CLI against a real server over real HTTP: the output lines DESIGN.md promises,
the exit codes (0 ok, 1 the server said no, 2 no server or bad usage), and `-o json`."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from standardwebhooks.webhooks import Webhook

from tests.webhook_server import deploy_target

LOGISTIC = {"estimator": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 1000}}
TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
STEPS = ["load_data", "validate", "train", "evaluate", "deploy"]


def churn_csv(rows: int = 300, seed: int = 7) -> str:
    """3 numeric features and a plan; churn follows the features, with some noise."""
    rng = np.random.default_rng(seed)
    numeric = rng.normal(size=(rows, 3))
    plan = rng.choice(["basic", "pro", "team"], size=rows)
    signal = numeric @ np.array([1.5, -1.0, 0.5]) + (plan == "basic") * 0.8
    churned = (signal + rng.normal(scale=0.5, size=rows) > 0).astype(int)
    frame = pd.DataFrame(
        {"age": numeric[:, 0], "spend": numeric[:, 1], "visits": numeric[:, 2], "plan": plan}
    )
    frame["churned"] = churned
    return frame.to_csv(index=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli")
    (path / "customers.csv").write_text(churn_csv())
    return path


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[str]:
    """`mlops serve` in a subprocess on a free port; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLOPS_DATA_DIR": str(workdir / "data"), "MLOPS_SOURCE_DIRS": str(workdir)}
    command = [sys.executable, "-m", "app.cli.main", "serve", "--host", "127.0.0.1"]
    with (workdir / "server.log").open("w") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_ready(url, process, workdir / "server.log")
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlops serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"mlops serve not ready after 60 s:\n{log.read_text()}")


def cli_env(url: str, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLOPS_TOKEN", "COLUMNS")}
    return {**env, "MLOPS_URL": url, "MLOPS_DATA_DIR": str(workdir / "data")}


class Cli:
    """Runs `python -m app.cli.main …` as a user would, against the test server."""

    def __init__(self, url: str, workdir: Path) -> None:
        self.url = url
        self.workdir = workdir

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app.cli.main", *args],
            env={**cli_env(self.url, self.workdir), **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    def ok(self, *args: str, **env: str) -> str:
        result = self(*args, **env)
        assert result.returncode == 0, (result.stdout, result.stderr)
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "-o", "json"))

    def apply(self, name: str, **overrides: Any) -> str:
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(spec(name, **overrides)))
        return self.ok("pipeline", "apply", "-f", str(path))


def spec(name: str, **overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": name,
        "source": {"kind": "csv", "path": "customers.csv"},
        "target": "churned",
        "model": LOGISTIC,
        "evaluation": {"metric": "accuracy", "min_score": 0.6},
    }
    document.update(overrides)
    return document


@pytest.fixture(scope="module")
def cli(server: str, workdir: Path) -> Cli:
    return Cli(server, workdir)


@pytest.fixture(scope="module")
def trained(cli: Cli) -> dict[str, Any]:
    """A pipeline with one completed run, made with `trigger --wait -o json`."""
    cli.apply("churn")
    run: dict[str, Any] = cli.json("pipeline", "trigger", "churn", "--wait", "--reason", "nightly")
    return run


def utc(timestamp: str) -> str:
    return datetime.fromisoformat(timestamp).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


class TestApply:
    def test_create_then_update(self, cli: Cli) -> None:
        assert cli.apply("apply-me").startswith("Pipeline apply-me created\n")
        assert cli.apply("apply-me", description="second version") == "Pipeline apply-me updated\n"
        assert cli.apply("apply-me", description="second version") == (
            "Pipeline apply-me unchanged\n"
        )
        listed = cli.json("pipeline", "list")["items"]
        assert {"name": "apply-me", "description": "second version"}.items() <= next(
            item for item in listed if item["name"] == "apply-me"
        ).items()

    def test_create_shows_the_webhook_secret_once(self, cli: Cli) -> None:
        created = cli.apply("secret-shown").splitlines()
        assert created[0] == "Pipeline secret-shown created"
        assert re.fullmatch(r"Webhook secret: whsec_\S+ .*", created[1])

    def test_json_spec_file(self, cli: Cli, workdir: Path) -> None:
        path = workdir / "as-json.json"
        path.write_text(json.dumps(spec("as-json")))
        assert cli.ok("pipeline", "apply", "-f", str(path)).startswith("Pipeline as-json created")
        listed = cli.json("pipeline", "list")
        assert "as-json" in [item["name"] for item in listed["items"]]
        assert "as-json" in cli.ok("pipeline", "list")

    def test_invalid_spec_is_the_servers_error(self, cli: Cli, workdir: Path) -> None:
        path = workdir / "bad.yaml"
        path.write_text(yaml.safe_dump(spec("bad", model={"estimator": "os.system"})))
        result = cli("pipeline", "apply", "-f", str(path))
        assert result.returncode == 1
        assert result.stderr.startswith("Error: model.estimator")

    def test_unusable_files_are_bad_usage(self, cli: Cli, workdir: Path) -> None:
        nameless = workdir / "nameless.yaml"
        nameless.write_text("target: churned\n")
        for path in (nameless, workdir / "missing.yaml"):
            result = cli("pipeline", "apply", "-f", str(path))
            assert result.returncode == 2
            assert result.stderr.startswith("Error: ")


class TestGlobalOptions:
    def test_version(self, cli: Cli) -> None:
        assert cli.ok("--version") == f"mlops {version('mlops')}\n"

    def test_url_and_token_before_the_subcommand(self, cli: Cli, workdir: Path) -> None:
        token = (workdir / "data" / "admin-token").read_text().strip()
        # No MLOPS_URL and no token file: only the global options say where and who.
        bare = {"MLOPS_URL": "", "MLOPS_DATA_DIR": str(workdir / "elsewhere")}
        listed = cli.ok(
            "--url", cli.url, "--token", token, "pipeline", "list", "-o", "json", **bare
        )
        assert "items" in json.loads(listed)
        refused = cli("--url", cli.url, "pipeline", "list", **bare)
        assert refused.returncode == 1
        assert refused.stderr.startswith("Error: ")
        assert "--token or MLOPS_TOKEN" in refused.stderr

    def test_url_after_the_subcommand_wins(self, cli: Cli) -> None:
        listed = cli.ok("--url", "http://127.0.0.1:1", "pipeline", "list", "--url", cli.url)
        assert listed
        unreachable = cli("pipeline", "list", "--url", "http://127.0.0.1:1")
        assert unreachable.returncode == 2

    def test_bad_usage_exits_2(self, cli: Cli) -> None:
        for args in (["--no-such-option"], ["pipeline", "list", "-o", "yaml"], ["pipeline"]):
            assert cli(*args).returncode == 2, args


class TestPrune:
    def test_prune_says_what_went(self, cli: Cli) -> None:
        said = cli.ok("prune", "--older-than", "3650d")
        assert re.fullmatch(
            r"Pruned 0 runs, 0 data batches and 0 observations from before "
            r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\n",
            said,
        )

    def test_a_bad_duration_is_bad_usage(self, cli: Cli) -> None:
        result = cli("prune", "--older-than", "soon")
        assert result.returncode == 2
        assert result.stderr.startswith("Error: --older-than 'soon'")
        assert cli("prune", "--older-than", "1h").returncode == 1  # the server: at least 1 day


class TestList:
    LONG = "breast-cancer-demo-with-a-long-descriptive-name"

    def lines_with(self, table: str, text: str) -> list[str]:
        return [line for line in table.splitlines() if text in line]

    def test_names_never_wrap(self, cli: Cli) -> None:
        cli.apply(self.LONG, triggers=[{"kind": "interval", "every_s": 3600}])
        for env in ({"COLUMNS": "80"}, {"COLUMNS": "40"}, {}):
            table = cli.ok("pipeline", "list", "--limit", "500", **env)
            (row,) = self.lines_with(table, self.LONG)
            assert row.split()[:2] == [self.LONG, "active"], env
            assert "LogisticRegression" in row and "interval" in row

    def test_the_compact_table_fits_80_columns(self, cli: Cli) -> None:
        cli.apply("breast-cancer-demo", triggers=[{"kind": "interval", "every_s": 3600}])
        names = [item["name"] for item in cli.json("pipeline", "list", "--limit", "500")["items"]]
        offset = str(names.index("breast-cancer-demo"))
        table = cli.ok("pipeline", "list", "--limit", "1", "--offset", offset, COLUMNS="80")
        (row,) = self.lines_with(table, "breast-cancer-demo ")
        assert row.split() == ["breast-cancer-demo", "active", "LogisticRegression", "interval"]
        assert max(len(line) for line in table.splitlines()) <= 80

    def test_wide_adds_source_and_updated(self, cli: Cli) -> None:
        cli.apply(self.LONG, triggers=[{"kind": "interval", "every_s": 3600}])
        assert "Source" not in cli.ok("pipeline", "list", COLUMNS="80")
        table = cli.ok("pipeline", "list", "-o", "wide", "--limit", "500")
        header = table.splitlines()[0].split()
        assert header == ["Name", "State", "Source", "Model", "Triggers", "Updated"]
        (row,) = self.lines_with(table, self.LONG)
        assert "csv customers.csv" in row
        assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$", row)


class TestStatus:
    def test_completed_pipeline_shows_when_its_last_run_started(
        self, cli: Cli, trained: dict[str, Any]
    ) -> None:
        status, last_run = cli.ok("pipeline", "status", "churn").splitlines()
        assert status == "Status: Completed"
        assert last_run == f"Last run: {utc(trained['started_at'])}"
        assert TIME.match(last_run.removeprefix("Last run: "))
        assert cli.json("pipeline", "status", "churn")["production_version"] == 1

    def test_never_run_paused_and_resumed(self, cli: Cli) -> None:
        cli.apply("idle")
        assert cli.ok("pipeline", "status", "idle") == "Status: Never run\n"
        assert cli.ok("pipeline", "pause", "idle") == "Pipeline idle paused\n"
        assert cli.ok("pipeline", "status", "idle") == "Status: Paused\n"
        assert cli.ok("pipeline", "resume", "idle") == "Pipeline idle resumed\n"
        assert cli.json("pipeline", "resume", "idle")["paused"] is False

    def test_failed_pipeline_shows_the_error(self, cli: Cli) -> None:
        cli.apply("broken", source={"kind": "csv", "path": "nowhere.csv"})
        result = cli("pipeline", "trigger", "broken", "--wait")
        assert result.returncode == 1
        lines = result.stdout.splitlines()
        assert "load_data: failed (Data source not found: nowhere.csv)" in lines
        assert lines[-2].endswith(" failed") and lines[-2].startswith("Run ")
        assert lines[-1] == "Error: Data source not found: nowhere.csv"
        assert cli.ok("pipeline", "status", "broken").splitlines() == [
            "Status: Failed",
            "Error: Data source not found: nowhere.csv",
        ]

    def test_unknown_pipeline_is_an_error(self, cli: Cli) -> None:
        result = cli("pipeline", "status", "nope")
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr == "Error: Pipeline nope does not exist\n"

    def test_no_server_exits_2(self, cli: Cli) -> None:
        result = cli("pipeline", "status", "churn", "--url", "http://127.0.0.1:1")
        assert result.returncode == 2
        assert result.stderr.startswith(
            "Error: cannot reach the mlops server at http://127.0.0.1:1 ("
        )


class TestRuns:
    def test_trigger_wait_json_is_the_finished_run(self, trained: dict[str, Any]) -> None:
        assert trained["status"] == "completed"
        assert trained["trigger"]["reason"] == "manual: nightly"

    def test_history_lists_the_run(self, cli: Cli, trained: dict[str, Any]) -> None:
        table = cli.ok("pipeline", "history", "churn")
        row = next(
            line for line in table.splitlines() if line.lstrip().startswith(str(trained["id"]))
        )
        assert "Completed" in row and "manual: nightly" in row
        assert utc(trained["started_at"]) in row
        page = cli.json("pipeline", "history", "churn", "--limit", "1")
        assert [run["id"] for run in page["items"]] == [trained["id"]]

    def test_watch_a_finished_run_prints_its_steps(self, cli: Cli, trained: dict[str, Any]) -> None:
        lines = cli.ok("run", "watch", str(trained["id"])).splitlines()
        assert [line.split(":")[0] for line in lines[:-1]] == STEPS
        assert all(": completed (" in line for line in lines[:-1])
        assert re.match(r"train: completed \(LogisticRegression fitted on 240 rows in ", lines[2])
        assert lines[-1] == f"Run {trained['id']} completed"

    def test_show(self, cli: Cli, trained: dict[str, Any]) -> None:
        shown = cli.ok("run", "show", str(trained["id"]))
        assert f"Run {trained['id']} of churn: Completed" in shown
        # Under the thread executor the worker is the `mlops serve` process: host:pid.
        assert re.search(r"^Worker: +\S+:\d+$", shown, re.MULTILINE)
        assert all(step in shown for step in STEPS)
        assert cli.json("run", "show", str(trained["id"]))["model_version"] == 1
        missing = cli("run", "show", "999999")
        assert (missing.returncode, missing.stderr.startswith("Error: ")) == (1, True)


class GatedSource:
    """Serves the CSV over HTTP only once released, so a run waits in load_data on cue."""

    def __init__(self, body: bytes) -> None:
        self.release = threading.Event()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                gate.release.wait(timeout=30)
                self.send_response(200)
                self.send_header("Content-Type", "text/csv")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/customers.csv"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)


@pytest.fixture
def gated() -> Iterator[GatedSource]:
    source = GatedSource(churn_csv().encode())
    source.thread.start()
    try:
        yield source
    finally:
        source.release.set()
        source.httpd.shutdown()
        source.httpd.server_close()
        source.thread.join()


class TestConcurrency:
    def test_second_trigger_while_one_is_active_is_refused(
        self, cli: Cli, gated: GatedSource
    ) -> None:
        cli.apply("gated", source={"kind": "csv", "path": gated.url}, concurrency="skip")
        first = cli.json("pipeline", "trigger", "gated", "--idempotency-key", "k-1")
        again = cli.json("pipeline", "trigger", "gated", "--idempotency-key", "k-1")
        assert again["id"] == first["id"]
        refused = cli("pipeline", "trigger", "gated")
        assert refused.returncode == 1
        assert refused.stderr == (
            f"Error: Pipeline gated already has run {first['id']} active (concurrency: skip)\n"
        )
        self.watch_it_finish(cli, first["id"], gated)

    def watch_it_finish(self, cli: Cli, run_id: int, gated: GatedSource) -> None:
        """`run watch` shows load_data running while the source holds, then the rest."""
        watcher = subprocess.Popen(
            [sys.executable, "-m", "app.cli.main", "run", "watch", str(run_id)],
            env=cli_env(cli.url, cli.workdir),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert watcher.stdout is not None
            assert watcher.stdout.readline() == "load_data: running\n"
            gated.release.set()
            rest, errors = watcher.communicate(timeout=60)
        finally:
            if watcher.poll() is None:
                watcher.kill()
                watcher.communicate()
        assert watcher.returncode == 0, errors
        lines = rest.splitlines()
        assert lines[0].startswith("load_data: completed (300 rows")
        assert lines[-1] == f"Run {run_id} completed"


class TestPromotion:
    def test_rollback_returns_production_to_the_previous_version(self, cli: Cli) -> None:
        # min_improvement -1: the second model (same data) passes the gate and is promoted.
        evaluation = {"metric": "accuracy", "min_score": 0.6, "min_improvement": -1}
        cli.apply("promo", evaluation=evaluation)
        for _ in range(2):
            lines = cli.ok("pipeline", "trigger", "promo", "--wait").splitlines()
            assert re.fullmatch(r"Run \d+ queued \(manual\)", lines[0])
            assert re.fullmatch(r"Run \d+ completed", lines[-1])
        assert stages(cli) == {1: "archived", 2: "production"}
        table = cli.ok("model", "list", "promo")
        assert "production" in table and "accuracy 0." in table

        rolled = cli.ok("model", "rollback", "promo", "--reason", "v2 misbehaves")
        assert rolled == "Pipeline promo: rolled back to v1 (was v2)\n"
        assert stages(cli)[1] == "production"

        promoted = cli.json("model", "promote", "promo", "2", "--reason", "fixed upstream")
        assert (promoted["to_version"], promoted["reason"]) == (2, "fixed upstream")
        assert stages(cli)[2] == "production"

    def test_a_rejected_version_is_promoted_only_with_force_and_a_reason(
        self, cli: Cli, workdir: Path
    ) -> None:
        frame = pd.read_csv(io.StringIO(churn_csv()))
        frame["churned"] = np.random.default_rng(3).permutation(frame["churned"].to_numpy())
        frame.to_csv(workdir / "scrambled.csv", index=False)
        cli.apply("forced", source={"kind": "csv", "path": "scrambled.csv"})
        ended = cli("pipeline", "trigger", "forced", "--wait", "-o", "json")
        assert ended.returncode == 1  # the run did not complete
        assert json.loads(ended.stdout)["status"] == "rejected"

        refused = cli("model", "promote", "forced", "1", "--reason", "ship it")
        assert refused.returncode == 1
        assert "was rejected by its gate: Evaluation gate:" in refused.stderr
        assert "--force --reason" in refused.stderr
        no_reason = cli("model", "promote", "forced", "1", "--force")
        assert no_reason.returncode == 2
        assert "--force needs --reason" in no_reason.stderr

        forced = cli.ok("model", "promote", "forced", "1", "--force", "--reason", "known noise")
        assert forced.splitlines()[0] == "Pipeline forced: promoted v1 (was no model)"
        assert (
            forced.splitlines()[1]
            == "Gate overridden: Evaluation gate: accuracy 0.533 < min_score 0.600"
        )


class TestDelete:
    def test_delete_archives_and_purge_removes_the_artifacts(self, cli: Cli, workdir: Path) -> None:
        cli.apply("gone")
        assert cli.json("pipeline", "trigger", "gone", "--wait")["status"] == "completed"

        archived = re.fullmatch(
            r"Pipeline gone archived as (gone@\d+) \(history kept, never runs again\)\n",
            cli.ok("pipeline", "delete", "gone"),
        )

        assert archived is not None
        ref = archived[1]
        assert "gone" not in [p["name"] for p in cli.json("pipeline", "list")["items"]]
        listed = cli.json("pipeline", "list", "--archived")["items"]
        assert ref in [p["ref"] for p in listed]
        assert ref in cli.ok("pipeline", "list", "--archived")
        files = sorted((workdir / "data" / "artifacts").glob(f"{ref}/v*.skops"))
        assert len(files) == 1
        purged = cli.ok("pipeline", "delete", ref, "--purge")
        assert purged == f"Pipeline {ref}: its artifacts were purged\n"
        assert not files[0].exists()
        again = cli("pipeline", "trigger", ref)
        assert again.returncode == 1
        assert f"Pipeline {ref} is archived" in again.stderr


def stages(cli: Cli) -> dict[int, str]:
    return {model["version"]: model["stage"] for model in cli.json("model", "list", "promo")}


class TestSubscriptions:
    def test_create_list_and_deliveries(self, cli: Cli) -> None:
        with deploy_target() as receiver:
            created = cli.ok(
                "subscription", "create", receiver.url, "-e", "run.completed", "-p", "events-cli"
            )
            assert re.match(r"^Subscription (\d+) created: run.completed -> ", created), created
            subscription_id = created.split()[1]
            secret = re.search(r"Secret: (whsec_\S+) \(shown only this once", created)
            assert secret is not None
            listed = cli.ok("subscription", "list")
            assert receiver.url in listed and "events-cli" in listed and "enabled" in listed
            cli.apply("events-cli")
            run = cli.json("pipeline", "trigger", "events-cli", "--wait")
            deadline = time.monotonic() + 30
            while not receiver.raw and time.monotonic() < deadline:
                time.sleep(0.1)
        [(headers, body)] = receiver.raw
        event = Webhook(secret.group(1)).verify(body, headers)
        assert event["type"] == "run.completed" and event["data"]["run"] == run["id"]
        log = cli.json("subscription", "deliveries", subscription_id)
        assert [d["status"] for d in log["items"]] == ["delivered"]
        table = cli.ok("subscription", "deliveries", subscription_id)
        assert "run.completed" in table and "delivered" in table and "200" in table

    def test_a_bad_event_is_the_servers_error(self, cli: Cli) -> None:
        result = cli("subscription", "create", "https://x.example.com", "-e", "nope")
        assert result.returncode == 1
        assert "events.0" in result.stderr + result.stdout
