"""The Celery executor, end to end: real `mlops serve` (which never trains), real
`mlops worker` processes with their own data dirs, real Redis and RabbitMQ, PostgreSQL."""

from __future__ import annotations

import hashlib
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.core import s3
from app.core.settings import Settings
from app.executors.celery import TASK, make_celery
from tests.conftest import create_pg_database, drop_pg_database
from tests.s3server import moto_server, set_aws_env
from tests.server import Server
from tests.workers import AMQP_URL, REDIS_URL, Worker, alive, descendants, wait_gone

pytestmark = pytest.mark.postgres
FINAL = {"completed", "failed", "rejected", "awaiting_approval", "cancelled", "skipped"}
IRIS_ROW = {
    "sepal length (cm)": 5.1,
    "sepal width (cm)": 3.5,
    "petal length (cm)": 1.4,
    "petal width (cm)": 0.2,
}


def iris_spec(name: str, queue: str, **overrides: Any) -> dict[str, Any]:
    return {
        "name": name,
        "source": {"kind": "sklearn", "dataset": "iris"},
        "target": "target",
        "model": {"estimator": "sklearn.tree.DecisionTreeClassifier"},
        "validation": {"min_rows": 10},
        "evaluation": {"metric": "accuracy", "min_score": 0.5},
        "queue": queue,
        **overrides,
    }


@pytest.fixture
def database() -> Iterator[str]:
    url = create_pg_database()
    yield url
    drop_pg_database(url)


@pytest.fixture
def queue() -> str:
    # A queue of the test's own: tests running at once never take each other's runs.
    return f"q-{uuid.uuid4().hex[:10]}"


class Fleet:
    """One API replica (celery executor) and its workers, on one database and broker."""

    def __init__(self, tmp_path: Path, database: str, broker: str, **env: str) -> None:
        self.tmp_path, self.database, self.broker, self.env = tmp_path, database, broker, env
        api_dir = tmp_path / "api"
        api_dir.mkdir()
        self.api = Server(
            api_dir, database_url=database, MLOPS_EXECUTOR="celery", MLOPS_BROKER_URL=broker, **env
        )
        self.workers: list[Worker] = []

    def worker(self, name: str, queues: str) -> Worker:
        worker = Worker(
            self.tmp_path / name,
            database_url=self.database,
            broker_url=self.broker,
            name=name,
            queues=queues,
            **self.env,
        )
        self.workers.append(worker)
        return worker.start()

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        self.api.kill()


@pytest.fixture
def fleet_factory(tmp_path: Path, database: str) -> Iterator[Any]:
    fleets: list[Fleet] = []

    def make(broker: str = REDIS_URL, **env: str) -> Fleet:
        fleet = Fleet(tmp_path, database, broker, **env)
        fleets.append(fleet)
        fleet.api.start()
        return fleet

    yield make
    for fleet in fleets:
        fleet.close()


def wait_final(api: httpx.Client, run_id: int, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (run := api.get(f"/runs/{run_id}").json())["status"] not in FINAL:
        assert time.monotonic() < deadline, f"run {run_id} did not end: {run}"
        time.sleep(0.1)
    return run


def train_and_serve(fleet: Fleet, queue: str) -> None:
    """A worker trains iris; the API replica, which shares no disk with it, serves it."""
    with fleet.api.api() as api:
        assert api.post("/pipelines", json=iris_spec("iris", queue)).status_code == 201
        run = wait_final(api, api.post("/pipelines/iris/runs").json()["id"])
        assert (run["status"], run["worker"], run["model_version"]) == ("completed", "w1", 1)
        predicted = api.post("/pipelines/iris/predict", json={"instances": [IRIS_ROW]})
        assert predicted.status_code == 200, predicted.text
        assert predicted.json() == {"predictions": [0], "model_version": 1}
        artifact = api.get("/pipelines/iris/models/1/artifact")
        assert artifact.status_code == 200
        assert hashlib.sha256(artifact.content).hexdigest() == artifact.headers["x-model-sha256"]
    # Nothing was trained or stored on the API's disk.
    assert not (fleet.api.workdir / ".mlops" / "artifacts").exists()


@pytest.mark.parametrize("broker", [REDIS_URL, AMQP_URL], ids=["redis", "rabbitmq"])
def test_a_worker_trains_and_the_api_serves_from_the_database(
    fleet_factory: Any, queue: str, broker: str
) -> None:
    fleet = fleet_factory(broker)
    fleet.worker("w1", queue)
    train_and_serve(fleet, queue)
    ready = httpx.get(f"{fleet.api.url}/readyz").json()
    assert ready["broker"] == "reachable"
    with fleet.api.api() as api:
        metrics = httpx.get(f"{fleet.api.url}/metrics", headers=api.headers).text
    assert f'mlops_broker_queue_depth{{queue="{queue}"}} 0.0' in metrics
    assert 'mlops_worker_up{worker="w1"} 1.0' in metrics


def test_a_worker_trains_and_the_api_serves_from_s3(
    fleet_factory: Any, queue: str, tmp_path: Path
) -> None:
    set_aws_env()
    with moto_server(tmp_path / "moto.log") as endpoint:
        s3.client(endpoint).create_bucket(Bucket="models")
        fleet = fleet_factory(
            MLOPS_ARTIFACT_STORE="s3://models/mlops", MLOPS_S3_ENDPOINT_URL=endpoint
        )
        fleet.worker("w1", queue)
        train_and_serve(fleet, queue)
        listed = s3.client(endpoint).list_objects_v2(Bucket="models")["Contents"]
        # Under the pipeline's name and id: a re-created name never overwrites these files.
        assert [item["Key"] for item in listed] == ["mlops/iris@1/v1.skops"]


def test_a_pipeline_runs_on_the_workers_of_its_queue(fleet_factory: Any, queue: str) -> None:
    fleet = fleet_factory()
    fleet.worker("general", queue)
    with fleet.api.api() as api:
        api.post("/pipelines", json=iris_spec("big", f"{queue}-big"))
        run_id = api.post("/pipelines/big/runs").json()["id"]
        time.sleep(3)
        # Only a worker listening on the pipeline's queue takes its runs.
        assert api.get(f"/runs/{run_id}").json()["status"] == "queued"
        metrics = httpx.get(f"{fleet.api.url}/metrics", headers=api.headers).text
        assert f'mlops_broker_queue_depth{{queue="{queue}-big"}} 1.0' in metrics
        fleet.worker("bigmem", f"{queue}-big")
        assert wait_final(api, run_id)["worker"] == "bigmem"


def test_a_task_delivered_twice_runs_once(fleet_factory: Any, queue: str) -> None:
    fleet = fleet_factory()
    fleet.worker("w1", queue)
    fleet.worker("w2", queue)
    with fleet.api.api() as api:
        api.post("/pipelines", json=iris_spec("iris", queue))
        run = wait_final(api, api.post("/pipelines/iris/runs").json()["id"])
        app = make_celery(Settings(broker_url=REDIS_URL))
        for _ in range(3):
            app.send_task(TASK, args=[run["id"]], queue=queue)
        time.sleep(3)
        assert api.get(f"/runs/{run['id']}").json() == run
        assert len(api.get("/pipelines/iris/runs").json()["items"]) == 1
        assert len(api.get("/pipelines/iris/models").json()) == 1


def slow_forest(queue: str) -> dict[str, Any]:
    model = {
        "estimator": "sklearn.ensemble.RandomForestClassifier",
        "params": {"n_estimators": 400, "n_jobs": 1, "random_state": 0},
    }
    return iris_spec("forest", queue, model=model, retries={"max_attempts": 2, "backoff_s": 0})


def wait_training(api: httpx.Client, run_id: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = api.get(f"/runs/{run_id}").json()
        if any(s["name"] == "train" and s["status"] == "running" for s in run["steps"]):
            return run
        assert time.monotonic() < deadline, f"run never reached training: {run}"
        time.sleep(0.02)


def test_sigkill_a_worker_mid_fit(fleet_factory: Any, queue: str) -> None:
    fleet = fleet_factory()
    workers = {name: fleet.worker(name, queue) for name in ("w1", "w2")}
    with fleet.api.api() as api:
        api.post("/pipelines", json=slow_forest(queue))
        first = wait_training(api, api.post("/pipelines/forest/runs").json()["id"])
        victim = workers[first["worker"]]
        assert victim.process is not None
        tree = descendants(victim.process.pid)
        assert tree, "the worker had no training process"
        victim.process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        # Within 5 s nothing of the dead worker is left: training process, forkserver,
        # resource tracker.
        assert wait_gone(tree, 5) == set()
        ended = wait_final(api, first["id"], timeout=15)
        assert time.monotonic() - killed_at < 15
        assert ended["error"] == "Worker lost: its process died"
        runs = settle(api)
        ledger = api.get("/pipelines/forest/promotions").json()
    statuses = sorted(run["status"] for run in runs)
    assert statuses == ["completed", "failed"]
    [retry] = [run for run in runs if run["status"] == "completed"]
    assert retry["worker"] != first["worker"] and retry["attempt"] == 2
    assert [(entry["action"], entry["to_version"]) for entry in ledger] == [("promote", 1)]
    assert alive(tree) == set()


def settle(api: httpx.Client, timeout: float = 120) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        runs: list[dict[str, Any]] = api.get("/pipelines/forest/runs").json()["items"]
        if len(runs) > 1 and all(run["status"] in FINAL for run in runs):
            return runs
        assert time.monotonic() < deadline, f"runs did not settle: {runs}"
        time.sleep(0.2)


def test_readyz_says_when_the_broker_is_unreachable(tmp_path: Path, database: str) -> None:
    server = Server(
        tmp_path,
        database_url=database,
        MLOPS_EXECUTOR="celery",
        MLOPS_BROKER_URL="redis://127.0.0.1:1/0",
    )
    with pytest.raises(RuntimeError, match="not ready"):
        server.start(timeout=0)  # started; never ready
    try:
        answer = answer_of(f"{server.url}/readyz")
        assert answer.status_code == 503
        assert answer.json()["detail"] == (
            "Broker unreachable: redis://127.0.0.1:1/0 (MLOPS_BROKER_URL)"
        )
    finally:
        server.kill()


def answer_of(url: str, timeout: float = 60) -> httpx.Response:
    """The first answer of a server that is starting."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"{url} never answered"
            time.sleep(0.2)
