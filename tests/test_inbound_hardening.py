"""Inbound hardening, as an outside caller meets it: a replayed signed request is answered,
not stored again; Standard Webhooks senders are accepted; GitHub-form bodies are deduplicated
by hash; pipeline names cannot be listed without a secret; bad sources are refused when the
spec is stored, and still when it runs."""

from __future__ import annotations

import base64
import sqlite3
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, update
from standardwebhooks.webhooks import Webhook

from app.core.settings import Settings
from app.core.time import utcnow
from app.pipelines.models import Pipeline
from tests.factories import churn_frame, pipeline_spec, wait_for_run, write_csv
from tests.test_webhooks import (
    API,
    DATA,
    JSON,
    batch_count,
    create,
    github_signature,
    mlops_signature,
    moved_clock,
    records,
)

__all__ = ["moved_clock"]  # the fixture, imported to be used here


def standard_headers(secret: str, body: bytes, message_id: str | None = None) -> dict[str, str]:
    """Headers as the reference Standard Webhooks library signs them."""
    message_id = message_id or f"msg_{uuid.uuid4().hex}"
    now = utcnow()
    signature = Webhook(secret).sign(message_id, now, body.decode())
    return {
        "Content-Type": JSON,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }


class TestReplays:
    def test_a_replayed_signed_request_is_answered_as_the_first(
        self, client: Any, settings: Settings
    ) -> None:
        secret = create(client)
        body = records(churn_frame(5))
        headers = {"Content-Type": JSON, "X-Mlops-Signature": mlops_signature(secret, body)}
        first = client.post(DATA, content=body, headers=headers)
        replay = client.post(DATA, content=body, headers=headers)
        assert first.status_code == replay.status_code == 202, replay.text
        assert replay.json() == first.json()
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert batch_count(settings) == 1

    def test_a_fresh_idempotency_key_does_not_make_a_replay_new(
        self, client: Any, settings: Settings
    ) -> None:
        secret = create(client)
        body = records(churn_frame(5))
        signed = {"Content-Type": JSON, "X-Mlops-Signature": mlops_signature(secret, body)}
        first = client.post(DATA, content=body, headers={**signed, "Idempotency-Key": "a"})
        replay = client.post(DATA, content=body, headers={**signed, "Idempotency-Key": "b"})
        assert replay.json() == first.json()
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert batch_count(settings) == 1

    def test_the_same_rows_signed_again_later_are_new(
        self, client: Any, settings: Settings, moved_clock: Any
    ) -> None:
        secret = create(client)
        body = records(churn_frame(5))
        assert client.post(DATA, content=body, headers=_mlops(secret, body)).status_code == 202
        moved_clock(timedelta(seconds=2))
        again = client.post(DATA, content=body, headers=_mlops(secret, body))
        assert again.status_code == 202
        assert "Idempotent-Replayed" not in again.headers
        assert batch_count(settings) == 2

    def test_a_github_form_body_is_stored_once_a_day(
        self, client: Any, settings: Settings, moved_clock: Any
    ) -> None:
        secret = create(client)
        body = records(churn_frame(5))
        first = _github(client, secret, body, "delivery-1")
        # A fresh X-GitHub-Delivery does not make a replay new: the body's hash is the key.
        replay = _github(client, secret, body, "delivery-2")
        assert replay.json() == first.json()
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert _github(client, secret, records(churn_frame(6)), "delivery-3").status_code == 202
        assert batch_count(settings) == 2
        moved_clock(timedelta(seconds=settings.webhook_idempotency_s + 60))
        later = _github(client, secret, body, "delivery-4")
        assert "Idempotent-Replayed" not in later.headers
        assert batch_count(settings) == 3


class TestStandardWebhooks:
    def test_a_request_signed_by_the_reference_library_is_stored(
        self, client: Any, settings: Settings
    ) -> None:
        secret = create(client)
        assert secret.startswith("whsec_")
        body = records(churn_frame(5))
        response = client.post(DATA, content=body, headers=standard_headers(secret, body))
        assert response.status_code == 202, response.text
        assert response.json()["rows"] == 5

    def test_the_webhook_id_deduplicates_retries_and_replays(
        self, client: Any, settings: Settings
    ) -> None:
        secret = create(client)
        body = records(churn_frame(5))
        first = client.post(DATA, content=body, headers=standard_headers(secret, body, "msg_1"))
        # The sender's retry signs again, with a new timestamp and the same id.
        retry = client.post(DATA, content=body, headers=standard_headers(secret, body, "msg_1"))
        assert retry.json() == first.json()
        assert retry.headers["Idempotent-Replayed"] == "true"
        other = records(churn_frame(6))
        reused = client.post(DATA, content=other, headers=standard_headers(secret, other, "msg_1"))
        assert reused.status_code == 422
        assert reused.json()["errors"][0]["loc"] == "header.webhook-id"
        assert batch_count(settings) == 1

    @pytest.mark.parametrize(
        ("change", "says"),
        [
            ({"webhook-id": "msg_other"}, "signature mismatch"),
            ({"webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()}, "mismatch"),
            ({"webhook-timestamp": "12345"}, "outside the 300 s tolerance"),
            ({"webhook-timestamp": "soon"}, "Malformed Standard Webhooks headers"),
        ],
    )
    def test_a_tampered_request_is_refused(
        self, client: Any, settings: Settings, change: dict[str, str], says: str
    ) -> None:
        secret = create(client)
        body = records(churn_frame(5))
        headers = {**standard_headers(secret, body), **change}
        response = client.post(DATA, content=body, headers=headers)
        assert response.status_code == 401, response.text
        assert says in response.json()["detail"]
        assert batch_count(settings) == 0


class TestNamesAreNotListed:
    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"X-Mlops-Signature": "t=1,v1=" + "0" * 64},
            {"X-Hub-Signature-256": "sha256=" + "0" * 64},
        ],
    )
    def test_unknown_and_existing_pipelines_answer_alike(
        self, client: Any, headers: dict[str, str]
    ) -> None:
        create(client)
        body = records(churn_frame(2))
        if "X-Mlops-Signature" in headers:
            headers = {"X-Mlops-Signature": mlops_signature("not-the-secret", body)}
        answers = [
            client.post(url, content=body, headers={"Content-Type": JSON, **headers})
            for url in (DATA, f"{API}/pipelines/no-such-pipeline/data")
        ]
        known, unknown = answers
        assert known.status_code == unknown.status_code == 401
        assert known.headers["content-type"] == unknown.headers["content-type"]
        assert _without_instance(known.json()) == _without_instance(unknown.json())


class TestSourcesRefusedWhenStored:
    @pytest.fixture
    def confined(self, settings: Settings, tmp_path: Path) -> Path:
        data = tmp_path / "data"
        write_csv(data / "customers.csv", churn_frame())
        (tmp_path / "secret.csv").write_text("a\n1\n")
        (data / "innocent.csv").symlink_to(tmp_path / "secret.csv")
        settings.source_dirs = [data]
        return data

    @pytest.mark.parametrize(
        "path", ["/etc/passwd", "../secret.csv", "../../etc/passwd", "innocent.csv"]
    )
    def test_paths_outside_the_source_dirs(self, client: Any, confined: Path, path: str) -> None:
        error = _refused(client, {"kind": "csv", "path": path})
        assert error["loc"] == "source.csv.path"
        assert "outside the source directories (MLOPS_SOURCE_DIRS)" in error["msg"]
        assert client.get(f"{API}/pipelines/sources").status_code == 404

    def test_the_services_own_files(self, client: Any, settings: Settings) -> None:
        settings.source_dirs = [Path("/")]
        own = [settings.data_dir / "mlops.db", settings.resolved_artifact_dir / "x.parquet"]
        for path in own:
            error = _refused(client, {"kind": "parquet", "path": str(path)})
            assert error["loc"] == "source.parquet.path"
            assert "inside the service's data directory" in error["msg"], error
            assert "outside" not in error["msg"]

    def test_replacing_a_good_spec_with_a_bad_path_changes_nothing(
        self, client: Any, confined: Path
    ) -> None:
        good = pipeline_spec("sources", source={"kind": "csv", "path": "customers.csv"})
        assert client.post(f"{API}/pipelines", json=good).status_code == 201
        bad = {**good, "source": {"kind": "csv", "path": "/etc/passwd"}}
        response = client.put(f"{API}/pipelines/sources", json=bad)
        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == "source.csv.path"
        stored = client.get(f"{API}/pipelines/sources").json()
        assert stored["spec"]["source"]["path"] == "customers.csv"

    def test_a_path_not_yet_written_inside_the_dirs_is_accepted(
        self, client: Any, confined: Path
    ) -> None:
        spec = pipeline_spec("sources", source={"kind": "csv", "path": "tomorrow.csv"})
        assert client.post(f"{API}/pipelines", json=spec).status_code == 201

    def test_a_symlink_turned_outward_after_storing_is_refused_at_run_time(
        self, client: Any, confined: Path, tmp_path: Path
    ) -> None:
        link = confined / "moving.csv"
        link.symlink_to(confined / "customers.csv")
        spec = pipeline_spec("sources", source={"kind": "csv", "path": "moving.csv"})
        assert client.post(f"{API}/pipelines", json=spec).status_code == 201
        link.unlink()
        link.symlink_to(tmp_path / "secret.csv")
        run = wait_for_run(client, client.post(f"{API}/pipelines/sources/runs").json()["id"])
        assert run["status"] == "failed"
        assert "outside the source directories" in run["error"]

    @pytest.mark.parametrize(
        ("query", "says"),
        [
            ("SELECT 1; DROP TABLE customers", "must be one statement"),
            ("SELECT * FROM customers;\n-- done\n; DELETE FROM customers", "one statement"),
            ("WITH gone AS (DELETE FROM customers RETURNING *) SELECT * FROM gone", "DELETE"),
            ("with x as (update customers set age = 0 returning age) select 1", "UPDATE"),
            ("WITH t AS (INSERT INTO log VALUES (1) RETURNING 1) SELECT * FROM t", "INSERT"),
        ],
    )
    def test_multi_statement_and_writing_sql(
        self, client: Any, settings: Settings, query: str, says: str
    ) -> None:
        settings.sql_connections = {"warehouse": "sqlite:///warehouse.db"}
        error = _refused(client, {"kind": "sql", "connection": "warehouse", "query": query})
        assert error["loc"] == "source.sql.query"
        assert says in error["msg"]

    @pytest.mark.parametrize(
        "query",
        [
            "SELECT * FROM customers;",
            "SELECT 'a; DROP TABLE x' AS note, \"delete\" FROM customers -- ; update",
            "WITH recent AS (SELECT * FROM customers) SELECT last_update_at FROM recent",
        ],
    )
    def test_reading_sql_is_still_accepted(
        self, client: Any, settings: Settings, query: str
    ) -> None:
        settings.sql_connections = {"warehouse": "sqlite:///warehouse.db"}
        source = {"kind": "sql", "connection": "warehouse", "query": query}
        response = client.post(f"{API}/pipelines", json=pipeline_spec("sources", source=source))
        assert response.status_code == 201, response.text

    def test_a_stored_writing_query_still_fails_at_run_time(
        self, client: Any, settings: Settings, tmp_path: Path
    ) -> None:
        warehouse = tmp_path / "w.db"
        with sqlite3.connect(warehouse) as connection:
            connection.execute("CREATE TABLE customers (age INTEGER)")
            connection.execute("INSERT INTO customers VALUES (1)")
        connection.close()
        settings.source_dirs = [tmp_path]
        settings.sql_connections = {"warehouse": f"sqlite:///{warehouse}"}
        source = {"kind": "sql", "connection": "warehouse", "query": "SELECT 1"}
        spec = pipeline_spec("sources", source=source)
        assert client.post(f"{API}/pipelines", json=spec).status_code == 201
        # As an older release would have stored it.
        source["query"] = "SELECT 1; DELETE FROM customers"
        engine = create_engine(settings.resolved_database_url)
        with engine.begin() as connection:
            connection.execute(update(Pipeline).values(spec=spec))
        engine.dispose()
        run = wait_for_run(client, client.post(f"{API}/pipelines/sources/runs").json()["id"])
        # The database refuses it: one prepared statement, in a read-only transaction.
        assert run["status"] == "failed"
        assert run["error"].startswith("SQL source error: "), run["error"]
        with sqlite3.connect(warehouse) as connection:
            assert connection.execute("SELECT count(*) FROM customers").fetchone() == (1,)
        connection.close()

    def test_a_sqlite_url_outside_the_source_dirs(self, client: Any, tmp_path: Path) -> None:
        source = {"kind": "sql", "url": f"sqlite:///{tmp_path.parent}/x.db", "query": "SELECT 1"}
        error = _refused(client, source)
        assert error["loc"] == "source.sql.url"
        assert "outside the source directories" in error["msg"]


def _mlops(secret: str, body: bytes) -> dict[str, str]:
    return {"Content-Type": JSON, "X-Mlops-Signature": mlops_signature(secret, body)}


def _github(client: Any, secret: str, body: bytes, delivery: str) -> Any:
    headers = {
        "Content-Type": JSON,
        "X-Hub-Signature-256": github_signature(secret, body),
        "X-GitHub-Delivery": delivery,
    }
    response = client.post(DATA, content=body, headers=headers)
    assert response.status_code == 202, response.text
    return response


def _refused(client: Any, source: dict[str, Any]) -> dict[str, str]:
    response = client.post(f"{API}/pipelines", json=pipeline_spec("sources", source=source))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    error: dict[str, str] = response.json()["errors"][0]
    return error


def _without_instance(problem: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in problem.items() if key != "instance"}
