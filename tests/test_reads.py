"""Read routes answer from memos keyed on the rows they read: never stale, whichever replica
(or whatever writer) changed the pipeline, and the next fire time moves on with the clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from app.api.read_cache import Kept
from app.core.db import make_engine
from app.core.readers import KeptConnection, Readers
from app.core.settings import Settings
from app.core.time import set_clock
from app.main import create_app
from tests.conftest import TestClient
from tests.factories import pipeline_spec, wait_for_run
from tests.test_auth import assert_problem, make_key

API = "/api/v1"
NAME = "retrain-customer-model"
HOURLY = [{"kind": "cron", "schedule": "15 * * * *", "timezone": "UTC"}]


@pytest.fixture
def replica(settings: Settings) -> Iterator[TestClient]:
    """A second app on the same database: another replica."""
    with TestClient(create_app(settings)) as other:
        yield other


@pytest.fixture
def clock() -> Iterator[list[datetime]]:
    now = [datetime(2026, 3, 1, 10, 0, tzinfo=UTC)]
    set_clock(lambda: now[0])
    yield now
    set_clock(None)


def test_a_change_through_another_replica_shows_at_once(client: Any, replica: Any) -> None:
    client.post(f"{API}/pipelines", json=pipeline_spec(description="before"))
    assert client.get(f"{API}/pipelines/{NAME}").json()["description"] == "before"
    assert client.get(f"{API}/pipelines").json()["items"][0]["description"] == "before"
    replica.put(f"{API}/pipelines/{NAME}", json=pipeline_spec(description="after"))
    replica.post(f"{API}/pipelines/{NAME}/pause")
    one = client.get(f"{API}/pipelines/{NAME}").json()
    assert (one["description"], one["paused"]) == ("after", True)
    assert client.get(f"{API}/pipelines").json()["items"] == [one]
    assert client.get(f"{API}/pipelines/{NAME}/status").json()["status"] == "paused"


def test_a_spec_changed_in_the_database_alone_shows_at_once(client: Any, database_url: str) -> None:
    client.post(f"{API}/pipelines", json=pipeline_spec(description="before"))
    client.get(f"{API}/pipelines/{NAME}")
    engine = create_engine(database_url)
    with engine.begin() as connection:  # no generation bump, no updated_at: only the spec
        stored = connection.execute(text("SELECT spec FROM pipelines")).scalar_one()
        document = json.loads(stored) if isinstance(stored, str) else stored
        edited = json.dumps({**document, "description": "edited"})
        value = "CAST(:spec AS JSON)" if connection.dialect.name == "postgresql" else ":spec"
        connection.execute(text(f"UPDATE pipelines SET spec = {value}"), {"spec": edited})
    engine.dispose()
    assert client.get(f"{API}/pipelines/{NAME}").json()["description"] == "edited"
    assert client.get(f"{API}/pipelines").json()["items"][0]["description"] == "edited"


def test_next_run_moves_on_with_the_clock(client: Any, clock: list[datetime]) -> None:
    client.post(f"{API}/pipelines", json=pipeline_spec(triggers=HOURLY))
    status = f"{API}/pipelines/{NAME}/status"
    assert client.get(status).json()["next_run_at"] == "2026-03-01T10:15:00+00:00"
    clock[0] += timedelta(minutes=14, seconds=59)
    assert client.get(status).json()["next_run_at"] == "2026-03-01T10:15:00+00:00"
    clock[0] += timedelta(seconds=1)  # at the tick: the next one is an hour on
    assert client.get(status).json()["next_run_at"] == "2026-03-01T11:15:00+00:00"
    clock[0] -= timedelta(hours=2)  # set back to 08:15: answered afresh too
    assert client.get(status).json()["next_run_at"] == "2026-03-01T09:15:00+00:00"


def test_a_schedule_changed_through_another_replica_moves_next_run(
    client: Any, replica: Any, clock: list[datetime]
) -> None:
    client.post(f"{API}/pipelines", json=pipeline_spec(triggers=HOURLY))
    status = f"{API}/pipelines/{NAME}/status"
    assert client.get(status).json()["next_run_at"] == "2026-03-01T10:15:00+00:00"
    daily = [{"kind": "cron", "schedule": "0 6 * * *", "timezone": "UTC"}]
    replica.put(f"{API}/pipelines/{NAME}", json=pipeline_spec(triggers=daily))
    assert client.get(status).json()["next_run_at"] == "2026-03-02T06:00:00+00:00"


def test_read_shapes_match_their_schemas(client: Any) -> None:
    client.post(f"{API}/pipelines", json=pipeline_spec())
    run = client.post(f"{API}/pipelines/{NAME}/runs").json()
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    shapes = {
        f"{API}/pipelines/{NAME}": "PipelineRead",
        f"{API}/pipelines/{NAME}/status": "PipelineStatus",
        f"{API}/runs/{run['id']}": "RunRead",
    }
    for path, name in shapes.items():
        response = client.get(path)
        assert response.headers["content-type"] == "application/json"
        assert set(response.json()) == set(schema[name]["properties"]), path
    listed = client.get(f"{API}/pipelines").json()
    assert set(listed) == {"items", "total", "limit", "offset"}
    assert listed["items"][0] == client.get(f"{API}/pipelines/{NAME}").json()
    assert client.get(f"{API}/runs/{run['id']}").json()["steps"][0]["name"] == "load_data"


class TestReadLane:
    """The hottest reads skip the router; what a caller gets is what the router gives."""

    def _paths(self, client: Any) -> list[str]:
        client.post(f"{API}/pipelines", json=pipeline_spec(triggers=HOURLY))
        client.post(f"{API}/pipelines", json=pipeline_spec(name="second-model"))
        run = client.post(f"{API}/pipelines/{NAME}/runs").json()
        wait_for_run(client, run["id"])
        return [
            f"{API}/runs/{run['id']}",
            f"{API}/pipelines/{NAME}/status",
            f"{API}/pipelines/{NAME}",
            f"{API}/pipelines",
        ]

    def test_each_read_answers_what_the_router_answers(self, client: Any) -> None:
        viewer = {"Authorization": f"Bearer {make_key(client, 'viewer')['key']}"}
        for path in self._paths(client):
            lane = client.get(path, headers=viewer)
            # Any query string sends the request through the router (which ignores `via`).
            routed = client.get(f"{path}?via=router", headers=viewer)
            assert lane.status_code == routed.status_code == 200, path
            assert lane.content == routed.content, path
            assert lane.headers["content-type"] == routed.headers["content-type"]
            assert lane.headers["x-request-id"]

    def test_what_it_cannot_answer_gets_the_usual_problem(self, client: Any) -> None:
        run_path = self._paths(client)[0]
        assert_problem(client.get(run_path, headers={"Authorization": ""}), 401)
        leaked = make_key(client, "viewer", "leaked")
        headers = {"Authorization": f"Bearer {leaked['key']}"}
        assert client.get(run_path, headers=headers).status_code == 200
        client.delete(f"{API}/keys/{leaked['id']}")
        assert "was revoked" in assert_problem(client.get(run_path, headers=headers), 401)["detail"]
        assert "does not exist" in assert_problem(client.get(f"{API}/runs/999"), 404)["detail"]
        assert_problem(client.get(f"{API}/pipelines/no-such-model/status"), 404)
        assert_problem(client.get(f"{API}/pipelines/no-such-model"), 404)
        assert_problem(client.get(f"{API}/runs/99999999999"), 404)

    def test_request_metrics_name_the_route_template(self, client: Any) -> None:
        for path in self._paths(client):
            client.get(path)
        metrics = client.get("/metrics").text
        for template in (
            "/api/v1/runs/{run_id}",
            "/api/v1/pipelines/{name}/status",
            "/api/v1/pipelines/{name}",
            "/api/v1/pipelines",
        ):
            line = f'mlops_http_requests_total{{method="GET",route="{template}",status="200"}}'
            assert line in metrics, template

    def test_it_records_when_a_key_was_last_used(self, client: Any) -> None:
        viewer = make_key(client, "viewer", "poller")
        client.get(self._paths(client)[0], headers={"Authorization": f"Bearer {viewer['key']}"})
        client.app.state.services.key_usage.flush()
        keys = client.get(f"{API}/keys").json()["items"]
        assert next(k for k in keys if k["name"] == "poller")["last_used_at"] is not None


class TestKeptAnswers:
    """A repeated read is answered from what was read while the database has committed
    nothing since: any commit, by any replica or any other writer, is seen at once."""

    def _run(self, client: Any) -> str:
        client.post(f"{API}/pipelines", json=pipeline_spec())
        run = client.post(f"{API}/pipelines/{NAME}/runs").json()
        wait_for_run(client, run["id"])
        return f"{API}/runs/{run['id']}"

    def test_a_run_changed_in_the_database_alone_shows_at_once(
        self, client: Any, database_url: str
    ) -> None:
        path = self._run(client)
        assert client.get(path).json() == client.get(path).json()  # the second one kept
        engine = create_engine(database_url)
        with engine.begin() as connection:
            connection.execute(text("UPDATE runs SET error = 'changed by hand'"))
        engine.dispose()
        assert client.get(path).json()["error"] == "changed by hand"

    def test_a_key_revoked_through_another_replica_is_refused_at_once(
        self, client: Any, replica: Any
    ) -> None:
        path = self._run(client)
        key = make_key(client, "viewer", "poller")
        headers = {"Authorization": f"Bearer {key['key']}"}
        for _ in range(3):  # looked up once, then kept with the answer
            assert client.get(path, headers=headers).status_code == 200
        assert replica.delete(f"{API}/keys/{key['id']}").status_code == 204
        assert "was revoked" in assert_problem(client.get(path, headers=headers), 401)["detail"]

    def test_a_kept_answer_is_for_viewers_only(self, client: Any) -> None:
        path = self._run(client)
        assert client.get(path).status_code == 200
        assert_problem(client.get(path, headers={"Authorization": "Bearer nope"}), 401)

    def test_answers_carry_the_request_id(self, client: Any) -> None:
        path = self._run(client)
        given = client.get(path, headers={"X-Request-ID": "poll-7"})
        assert given.headers["x-request-id"] == "poll-7"
        made = {client.get(path).headers["x-request-id"] for _ in range(3)}
        assert len(made) == 3 and all(len(value) == 32 for value in made)
        unsafe = client.get(path, headers={"X-Request-ID": "a b"})
        assert unsafe.headers["x-request-id"] != "a b"


class TestDatabaseVersion:
    """What the kept answers are checked against: a version of the committed state."""

    def test_it_changes_with_each_commit_by_another_connection(
        self, client: Any, database_url: str
    ) -> None:
        readers = Readers(make_engine(database_url))
        try:
            before = asyncio.run(readers.version())
            client.post(f"{API}/pipelines", json=pipeline_spec())
            after = asyncio.run(readers.version())
            client.post(f"{API}/pipelines/{NAME}/pause")
            assert len({before, after, asyncio.run(readers.version())}) == 3
        finally:
            readers.close()

    def test_it_holds_while_nothing_commits(self, tmp_path: Any) -> None:
        # SQLite only: a PostgreSQL server's other databases commit under the tests' feet.
        url = f"sqlite:///{tmp_path / 'version.db'}"
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (n INTEGER)"))
        readers = Readers(make_engine(url))
        try:
            first = asyncio.run(readers.version())
            assert asyncio.run(readers.version()) == first
            with engine.connect() as connection:  # reads commit nothing
                connection.execute(text("SELECT * FROM t")).all()
            assert asyncio.run(readers.version()) == first
            with engine.begin() as connection:
                connection.execute(text("INSERT INTO t VALUES (1)"))
            assert asyncio.run(readers.version()) != first
        finally:
            readers.close()
            engine.dispose()


class TestKept:
    def test_a_value_is_served_only_at_its_version(self) -> None:
        kept: Kept[str] = Kept()
        kept.put("a", 1, "one")
        assert (kept.get("a", 1), kept.get("a", 2), kept.get("b", 1)) == ("one", None, None)
        kept.put("b", 2, "two")  # a newer version: what was read at the old one goes
        assert (kept.get("a", 1), kept.get("b", 2)) == (None, "two")

    def test_it_stays_within_its_bounds(self) -> None:
        kept: Kept[str] = Kept(max_entries=2, max_bytes=100)
        kept.put("a", 1, "a")
        kept.put("b", 1, "b")
        kept.put("c", 1, "c")  # over the count: starts afresh
        assert (kept.get("a", 1), kept.get("c", 1)) == (None, "c")
        kept.put("d", 1, "d", size=60)
        kept.put("e", 1, "e", size=60)  # over the bytes: starts afresh
        assert (kept.get("d", 1), kept.get("e", 1)) == (None, "e")


def test_a_kept_connection_reconnects_after_a_database_error(tmp_path: Any) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'kept.db'}")
    kept = KeptConnection(engine)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (n INTEGER)"))
    with pytest.raises(OperationalError):
        kept.read(lambda connection: connection.execute(text("SELECT * FROM missing")).all())
    with engine.begin() as connection:  # written after the failed read, seen by the next one
        connection.execute(text("INSERT INTO t VALUES (7)"))
    assert kept.read(lambda connection: connection.execute(text("SELECT n FROM t")).all()) == [(7,)]
    kept.close()
    engine.dispose()
