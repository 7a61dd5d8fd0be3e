"""Warm start: `mlops serve` reports ready only once a training process is up, so the first
run after a start waits for no imports and no new process (the pool's warm() and its refill
of a retired process are tested in test_processes.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from tests.server import Server
from tests.workers import descendants

# The forkserver, its resource tracker and one training process (a forkserver child).
WARM_PROCESSES = 3


def test_serve_is_ready_with_a_training_process_up(tmp_path: Path) -> None:
    server = Server(tmp_path, MLOPS_WARM_START="true")
    try:
        server.start()
        assert server.process is not None
        assert len(descendants(server.process.pid)) >= WARM_PROCESSES
        assert httpx.get(f"{server.url}/readyz").json()["status"] == "ready"
    finally:
        server.kill()
    # What a run frees is kept for the next one (app.core.heap).
    assert "the memory allocator keeps freed memory for the next run" in server.log.read_text()


def test_without_warm_start_no_training_process_runs_until_a_run(tmp_path: Path) -> None:
    server = Server(tmp_path, MLOPS_WARM_START="false")
    try:
        server.start()
        assert server.process is not None
        assert len(descendants(server.process.pid)) < WARM_PROCESSES
    finally:
        server.kill()


IRIS = {
    "name": "iris",
    "source": {"kind": "sklearn", "dataset": "iris"},
    "target": "target",
    "model": {"estimator": "sklearn.tree.DecisionTreeClassifier"},
}


def finished_run(api: httpx.Client, name: str) -> dict[str, object]:
    run_id = api.post(f"/pipelines/{name}/runs").json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run: dict[str, object] = api.get(f"/runs/{run_id}").json()
        if run["status"] not in ("queued", "running"):
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end in 60 s")


def restarted_after_a_run(server: Server, spec: dict[str, Any]) -> None:
    """Start, create the pipeline and run it once, then restart: it has a version now."""
    server.start()
    with server.api() as api:
        assert api.post("/pipelines", json=spec).status_code == 201
        assert finished_run(api, spec["name"])["status"] == "completed"
    server.stop()
    server.start()


def test_a_run_its_checks_reject_gives_its_training_process_back(tmp_path: Path) -> None:
    # The training process starts splitting the rows while the service checks them; a run the
    # checks reject collects that split before it gives the process back, so the process is
    # not killed (and a new one started) for the next run. The run's end is committed just
    # before the process is given back: a next run that starts in between takes a second
    # process, so the check is that the first one lives on, not that no other starts.
    server = Server(tmp_path, MLOPS_WARM_START="true")
    try:
        server.start()
        assert server.process is not None
        with server.api() as api:
            strict = {**IRIS, "validation": {"min_rows": 10_000}}
            assert api.post("/pipelines", json=strict).status_code == 201
            warm = descendants(server.process.pid)
            rejected = finished_run(api, "iris")
            assert api.put("/pipelines/iris", json=IRIS).status_code == 200
            assert warm <= descendants(server.process.pid)
            completed = finished_run(api, "iris")
            assert warm <= descendants(server.process.pid)
    finally:
        server.kill()
    assert rejected["status"] == "rejected"
    assert completed["status"] == "completed"


def test_a_restarted_service_has_production_loaded_before_it_is_ready(tmp_path: Path) -> None:
    # The first run after a start scores production, and /predict serves it: both found it
    # in memory only after reading its artifact. A restarted service loads it while it starts,
    # so with the file gone afterwards it still serves it.
    server = Server(tmp_path, MLOPS_WARM_START="true")
    flower = {
        "sepal length (cm)": 5.1,
        "sepal width (cm)": 3.5,
        "petal length (cm)": 1.4,
        "petal width (cm)": 0.2,
    }
    try:
        restarted_after_a_run(server, IRIS)
        artifacts = list((tmp_path / ".mlops").rglob("*.skops"))
        assert len(artifacts) == 1
        artifacts[0].unlink()
        with server.api() as api:
            served = api.post("/pipelines/iris/predict", json={"instances": [flower]})
    finally:
        server.kill()
    assert served.status_code == 200, served.text
    assert served.json()["model_version"] == 1
    assert "preloaded 1 of 1 production models" in server.log.read_text()


def wide_csv(path: Path, rows: int) -> Path:
    """`rows` x 10 numbers and a two-class label a tree learns at once."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(rows, 10)), columns=[f"x{i}" for i in range(10)])
    frame["label"] = (frame["x0"] > 0).astype(int)
    frame.to_csv(path, index=False)
    return path


WIDE = {
    "name": "wide",
    "source": {"kind": "csv", "path": "wide.csv"},
    "target": "label",
    "model": {"estimator": "sklearn.tree.DecisionTreeClassifier", "params": {"max_depth": 2}},
}


def test_a_restarted_service_readies_memory_for_its_largest_pipelines_data(
    tmp_path: Path,
) -> None:
    # 60,000 rows x 11 columns: 660,000 cells, ~10 MB at 16 bytes a cell (app.execution.worker).
    wide_csv(tmp_path / "wide.csv", 60_000)
    server = Server(tmp_path, MLOPS_WARM_START="true")
    try:
        restarted_after_a_run(server, WIDE)
        with server.api() as api:  # and the next run takes it: the run is as any other
            assert finished_run(api, "wide")["status"] == "completed"
    finally:
        server.kill()
    log = server.log.read_text()
    assert log.count("memory ready for runs' data") == 1  # at the first start: no version yet
    assert "memory ready for runs' data: 10 MB" in log
    assert "for the largest pipeline's 660000 cells" in log


def test_the_operator_can_turn_the_ready_memory_off(tmp_path: Path) -> None:
    wide_csv(tmp_path / "wide.csv", 60_000)
    server = Server(tmp_path, MLOPS_WARM_START="true", MLOPS_WARM_MEMORY_MB="0")
    try:
        restarted_after_a_run(server, WIDE)
    finally:
        server.kill()
    assert "memory ready for runs' data" not in server.log.read_text()
