"""The README's tour is true line by line: its `mlops` commands run against a real
`mlops serve --demo` and print what the README shows under them (times and durations
masked; a step still running when the CLI polls prints a `running` line first, which the
README leaves out), and "Your own pipeline on your own CSV" runs as written on the shipped
examples/customers.csv, promoting versions 1 and 2."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server import Server

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
MASKS = [
    (re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"), "<time>"),
    (re.compile(r"in \d+(\.\d+)? s\b"), "in <seconds> s"),
]


def masked(line: str) -> str:
    for pattern, replacement in MASKS:
        line = pattern.sub(replacement, line)
    return line.rstrip()


def section(title: str) -> str:
    start = README.index(f"## {title}")
    return README[start : README.index("\n## ", start + 1)]


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def commands_with_output(block: str) -> list[tuple[str, list[str]]]:
    """Each `mlops …` line of a block, with the `#   ` lines under it (what it prints)."""
    found: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("mlops "):
            found.append((shlex.join(shlex.split(line, comments=True)), []))
        elif line.startswith("#   ") and found:
            found[-1][1].append(line.removeprefix("#   "))
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("tour")
    # The checkout's directory, as the README assumes (`make run` starts the server there).
    shutil.copytree(ROOT / "examples", workdir / "examples")
    # As the README says: the server writes its admin key where the CLI looks for it.
    running = Server(workdir, MLOPS_ADMIN_TOKEN="")
    running.serve_args = ["--demo"]
    running.start()
    try:
        yield running
    finally:
        running.stop()


def mlops(server: Server, command: str) -> subprocess.CompletedProcess[str]:
    """One `mlops …` line as a user types it, in the server's directory (only the URL
    differs: the test server's port is not 8000)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    env |= {"MLOPS_URL": server.url, "COLUMNS": "100"}
    return subprocess.run(
        [sys.executable, "-m", "app.cli.main", *shlex.split(command, comments=True)[1:]],
        cwd=server.workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tour_prints_what_the_readme_shows(server: Server) -> None:
    tour = commands_with_output(bash_blocks(section("A five-minute tour"))[0])
    assert [command for command, _ in tour if "trigger" in command]
    for command, expected in tour:
        result = mlops(server, command)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        printed = [masked(line) for line in result.stdout.splitlines()]
        printed = [line for line in printed if not line.endswith(": running")]
        if expected:
            assert printed == [masked(line) for line in expected], command


def test_the_http_tour_answers_as_shown(server: Server) -> None:
    block = bash_blocks(section("A five-minute tour"))[1]
    key = re.search(r"Idempotency-Key: ([\w-]+)", block)
    shown = re.search(r'# (\{"predictions": .*\})', block)
    assert key is not None and shown is not None
    with server.api() as api:
        headers = {"Idempotency-Key": key.group(1)}
        run = api.post("/pipelines/breast-cancer-demo/runs", headers=headers).json()
        wait(api, run["id"])
        row = first_breast_cancer_row()
        answer = api.post("/pipelines/breast-cancer-demo/predict", json={"instances": [row]})
    assert answer.json() == json.loads(shown.group(1))


def first_breast_cancer_row() -> dict[str, Any]:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame.drop(columns="target")
    row: dict[str, Any] = frame.iloc[0].to_dict()
    return row


def wait(api: Any, run_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run: dict[str, Any] = api.get(f"/runs/{run_id}").json()
        if run["finished_at"]:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish")


def test_your_own_csv_runs_as_written(server: Server) -> None:
    (block,) = [b for b in bash_blocks(section("A five-minute tour")) if "churn.yaml" in b]
    setup = [line for line in block.splitlines() if line.startswith(("mkdir", "cp "))]
    for line in setup:
        subprocess.run(shlex.split(line, comments=True), cwd=server.workdir, check=True)
    assert (server.workdir / "data" / "customers.csv").exists()
    spec = re.search(r"cat > churn.yaml <<'EOF'\n(.*?)\nEOF", block, flags=re.S)
    assert spec is not None
    (server.workdir / "churn.yaml").write_text(spec.group(1) + "\n")
    for command, _ in commands_with_output(block):
        result = mlops(server, command)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
    with server.api() as api:
        ledger = api.get("/pipelines/retrain-customer-model/promotions").json()
        models = api.get("/pipelines/retrain-customer-model/models").json()
    entries = ledger["items"] if isinstance(ledger, dict) else ledger
    moves = sorted(((e["from_version"], e["to_version"]) for e in entries), key=str)
    assert moves == sorted([(None, 1), (1, 2), (2, 1), (1, 2)], key=str)
    assert {m["version"]: m["stage"] for m in models} == {1: "archived", 2: "production"}


def test_the_example_csv_is_what_the_generator_writes(tmp_path: Path) -> None:
    shutil.copy(ROOT / "examples" / "make_customers.py", tmp_path)
    subprocess.run([sys.executable, "make_customers.py"], cwd=tmp_path, check=True)
    assert (tmp_path / "customers.csv").read_bytes() == (
        ROOT / "examples" / "customers.csv"
    ).read_bytes()
