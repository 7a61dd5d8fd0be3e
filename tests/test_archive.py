"""History is never lost or reused: deleting a pipeline archives it, its history stays
readable under its ref (`name@id`), a re-created name starts a new history beside it, only an
admin purge removes artifacts, and ids are never handed out twice on either database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from app.core import migrate
from app.core.settings import Settings
from tests.conftest import BACKENDS, create_pg_database, drop_pg_database
from tests.factories import churn_frame, pipeline_spec, wait_for_run, write_csv

API = "/api/v1"
NAME = "retrain-customer-model"
BASE = f"{API}/pipelines/{NAME}"


def create(client: Any, tmp_path: Path, **overrides: Any) -> None:
    write_csv(tmp_path / "data" / "customers.csv", churn_frame())
    response = client.post(f"{API}/pipelines", json=pipeline_spec(**overrides))
    assert response.status_code == 201, response.text


def run_once(client: Any, base: str = BASE) -> dict[str, Any]:
    response = client.post(f"{base}/runs")
    assert response.status_code == 202, response.text
    return wait_for_run(client, response.json()["id"])


def archive(client: Any) -> str:
    """Delete the live pipeline; its ref as the archive lists it."""
    assert client.delete(BASE).status_code == 204
    listed = client.get(f"{API}/pipelines", params={"include_archived": True}).json()["items"]
    ref: str = next(p["ref"] for p in listed if p["name"] == NAME and p["archived_at"])
    return ref


def artifacts(settings: Settings) -> list[Path]:
    return sorted(settings.resolved_artifact_dir.glob(f"{NAME}@*/v*.skops"))


class TestDeleteArchives:
    def test_history_stays_readable(self, client: Any, settings: Settings, tmp_path: Path) -> None:
        create(client, tmp_path)
        run = run_once(client)
        assert run["status"] == "completed"

        ref = archive(client)

        assert ref.startswith(f"{NAME}@")
        again = client.get(f"{API}/runs/{run['id']}")
        assert again.status_code == 200
        assert (again.json()["status"], again.json()["pipeline"]) == ("completed", ref)
        assert client.get(f"{API}/pipelines").json()["items"] == []
        [listed] = client.get(f"{API}/pipelines", params={"include_archived": True}).json()["items"]
        assert listed["archived_at"] is not None and listed["ref"] == ref
        archived = f"{API}/pipelines/{ref}"
        assert client.get(archived).json()["archived_at"] == listed["archived_at"]
        assert [r["id"] for r in client.get(f"{archived}/runs").json()["items"]] == [run["id"]]
        assert [m["version"] for m in client.get(f"{archived}/models").json()] == [1]
        assert [p["to_version"] for p in client.get(f"{archived}/promotions").json()] == [1]
        assert client.get(f"{archived}/models/1/artifact").status_code == 200
        assert len(artifacts(settings)) == 1
        audit = client.get(f"{API}/audit", params={"action": "pipeline.delete"}).json()
        assert audit["items"][0]["detail"] == {"archived_as": ref}

    def test_an_archived_pipeline_never_runs_and_cannot_change(
        self, client: Any, tmp_path: Path
    ) -> None:
        create(client, tmp_path)
        ref = archive(client)
        archived = f"{API}/pipelines/{ref}"

        # Its name is free: nothing lives there (404, as for any unknown name).
        by_name = client.post(f"{BASE}/runs")
        assert (by_name.status_code, by_name.json()["detail"]) == (
            404,
            f"Pipeline {NAME} does not exist",
        )
        # The data webhook answers an unknown name as a wrong signature (no name enumeration).
        assert client.post(f"{BASE}/data", json={"records": [{"age": 1}]}).status_code == 401
        # Named by its ref, it exists but is archived: a conflict with its state, not absent.
        observations = {"observations": [{"metric": "accuracy", "value": 0.5}]}
        for path, body in [
            (f"{archived}/runs", None),
            (f"{archived}/resume", None),
            (f"{archived}/pause", None),
            (f"{archived}/metrics", observations),
            (f"{archived}/rollback", None),
            (f"{archived}/models/1/promote", None),
        ]:
            response = client.post(path, json=body)
            assert response.status_code == 409, (path, response.text)
            assert response.json()["detail"] == (
                f"Pipeline {ref} is archived: its history stays readable, "
                "but it never runs and cannot change"
            )
        assert client.get(f"{archived}/runs").json()["items"] == []

    def test_archived_time_triggers_never_fire(self, client: Any, tmp_path: Path) -> None:
        # Runs on a missing file fail at once: the pipeline is idle most of the time.
        missing = {"kind": "csv", "path": "data/missing.csv"}
        create(client, tmp_path, source=missing, triggers=[{"kind": "interval", "every_s": 0.5}])
        deadline = time.monotonic() + 20
        while client.get(f"{BASE}/runs").json()["total"] == 0:
            assert time.monotonic() < deadline, "never fired"
            time.sleep(0.05)
        while client.delete(BASE).status_code != 204:
            assert time.monotonic() < deadline, "never idle"
            time.sleep(0.05)
        ref = archive_ref(client)
        assert client.get(f"{API}/pipelines/{ref}/runs").json()["total"] >= 1
        fired = client.get(f"{API}/pipelines/{ref}/runs").json()["total"]
        time.sleep(1.5)
        assert client.get(f"{API}/pipelines/{ref}/runs").json()["total"] == fired

    def test_deleting_while_a_run_is_active_is_refused(self, client: Any, tmp_path: Path) -> None:
        slow = {"estimator": "sklearn.ensemble.RandomForestClassifier", "params": {}}
        create(client, tmp_path, model=slow)
        client.post(f"{BASE}/runs")
        response = client.delete(BASE)
        if response.status_code == 409:  # the run had not finished: refused, nothing changed
            assert "in progress; cancel it first" in response.json()["detail"]
            assert client.get(BASE).status_code == 200


def archive_ref(client: Any) -> str:
    listed = client.get(f"{API}/pipelines", params={"include_archived": True}).json()["items"]
    return str(next(p["ref"] for p in listed if p["archived_at"]))


class TestRecreatingAName:
    def test_a_new_history_starts_beside_the_archived_one(
        self, client: Any, settings: Settings, tmp_path: Path
    ) -> None:
        create(client, tmp_path)
        old_run = run_once(client)
        ref = archive(client)
        old_model = client.get(f"{API}/pipelines/{ref}/models/1")
        assert old_model.status_code == 200, (old_run["error"], old_run["steps"])
        old_sha = old_model.json()["sha256"]

        create(client, tmp_path)
        new_run = run_once(client)

        assert new_run["id"] > old_run["id"]
        assert new_run["pipeline"] == NAME and new_run["model_version"] == 1
        assert client.get(BASE).json()["archived_at"] is None
        assert [r["id"] for r in client.get(f"{BASE}/runs").json()["items"]] == [new_run["id"]]
        assert [r["id"] for r in client.get(f"{API}/pipelines/{ref}/runs").json()["items"]] == [
            old_run["id"]
        ]
        # Both histories keep their own version 1 and its file.
        assert client.get(f"{API}/pipelines/{ref}/models/1").json()["sha256"] == old_sha
        assert client.get(f"{API}/pipelines/{ref}/models/1/artifact").status_code == 200
        assert client.get(f"{BASE}/models/1/artifact").status_code == 200
        assert len(artifacts(settings)) == 2
        names = client.get(f"{API}/pipelines", params={"include_archived": True}).json()
        assert [p["ref"] for p in names["items"]] == [NAME, ref]
        assert client.post(f"{API}/pipelines", json=pipeline_spec()).status_code == 409


class TestPurge:
    def test_purge_deletes_the_artifacts_and_keeps_the_rows(
        self, client: Any, settings: Settings, tmp_path: Path
    ) -> None:
        create(client, tmp_path)
        run_once(client)
        ref = archive(client)
        archived = f"{API}/pipelines/{ref}"
        assert client.delete(archived).status_code == 409  # archived already: purge or nothing
        assert len(artifacts(settings)) == 1

        assert client.delete(archived, params={"purge": "true"}).status_code == 204

        assert artifacts(settings) == []
        [version] = client.get(f"{archived}/models").json()
        assert version["artifact_purged_at"] is not None
        gone = client.get(f"{archived}/models/1/artifact")
        assert gone.status_code == 404
        assert "its artifact was purged" in gone.json()["detail"]
        audit = client.get(f"{API}/audit", params={"action": "pipeline.purge"}).json()
        assert audit["items"][0]["detail"] == {"versions": [1]}

    def test_purge_of_a_live_pipeline_archives_it_too(
        self, client: Any, settings: Settings, tmp_path: Path
    ) -> None:
        create(client, tmp_path)
        run_once(client)
        assert client.delete(BASE, params={"purge": "true"}).status_code == 204
        assert artifacts(settings) == []
        assert client.get(BASE).status_code == 404

    def test_only_an_admin_deletes_or_purges(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path)
        key = client.post(f"{API}/keys", json={"name": "ops", "role": "operator"}).json()["key"]
        headers = {"Authorization": f"Bearer {key}"}
        response = client.delete(BASE, params={"purge": "true"}, headers=headers)
        assert response.status_code == 403
        assert client.get(BASE).json()["archived_at"] is None


@pytest.fixture(params=BACKENDS)
def migrated(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ids.db'}"
    else:
        url = create_pg_database()
    migrate.upgrade(url)
    engine = sa.create_engine(url)
    yield engine
    engine.dispose()
    if request.param != "sqlite":
        drop_pg_database(url)


NOW = "2026-01-01 00:00:00+00:00"
ROWS: dict[str, dict[str, Any]] = {
    "pipelines": {"name": "p", "spec": "{}", "paused": False, "webhook_secret": "s"},
    "runs": {"status": "completed", "trigger_kind": "manual", "trigger_reason": "manual"},
    "model_versions": {"stage": "candidate", "sha256": "0" * 64, "artifact_uri": "x"},
    "promotions": {"action": "promote", "to_version": 1, "actor": "a", "reason": "r"},
    "audit_log": {"actor": "a", "action": "x", "target": "t", "detail": "{}"},
}


def insert(engine: sa.Engine, table: str, **values: Any) -> int:
    metadata = sa.MetaData()
    rows = sa.Table(table, metadata, autoload_with=engine)
    defaults = {c.name: _default(c, values) for c in rows.columns if not c.nullable}
    defaults.pop("id", None)
    with engine.begin() as connection:
        result = connection.execute(rows.insert().values({**defaults, **values}))
        return int(result.inserted_primary_key[0])


def _default(column: sa.Column[Any], values: dict[str, Any]) -> Any:
    if isinstance(column.type, sa.DateTime):
        return sa.func.current_timestamp()
    if isinstance(column.type, sa.Boolean):
        return False
    if isinstance(column.type, sa.Integer):
        return 1
    return "{}" if isinstance(column.type, sa.JSON) else "x"


class TestIdsAreNeverReused:
    def test_the_newest_row_deleted_its_id_is_not_given_again(self, migrated: sa.Engine) -> None:
        pipeline = insert(migrated, "pipelines", **ROWS["pipelines"])
        owned = {"pipeline_id": pipeline}
        for table in ("runs", "model_versions", "promotions", "audit_log", "pipelines"):
            values = {**ROWS[table], **({} if table in ("audit_log", "pipelines") else owned)}
            if table == "pipelines":
                values["name"] = "q"
            if table == "model_versions":
                values["version"] = 1
            first = insert(migrated, table, **values)
            with migrated.begin() as connection:
                connection.execute(sa.text(f"DELETE FROM {table} WHERE id = :id"), {"id": first})
            if table == "model_versions":
                values["version"] = 2
            second = insert(migrated, table, **values)
            assert second > first, table


def test_upgrading_sqlite_keeps_every_row_and_rebuilds_with_autoincrement(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = migrate.alembic_config(url)
    command.upgrade(config, "0004")
    engine = sa.create_engine(url)
    pipeline = insert(engine, "pipelines", **ROWS["pipelines"])
    run = insert(engine, "runs", **ROWS["runs"], pipeline_id=pipeline)
    insert(engine, "run_steps", run_id=run, name="train", status="completed", detail="d")
    insert(engine, "model_versions", **ROWS["model_versions"], pipeline_id=pipeline, version=1)
    insert(engine, "promotions", **ROWS["promotions"], pipeline_id=pipeline)

    command.upgrade(config, "head")

    with engine.connect() as connection:
        counts = {
            table: connection.scalar(sa.text(f"SELECT count(*) FROM {table}"))
            for table in ("pipelines", "runs", "run_steps", "model_versions", "promotions")
        }
        ddl = dict(connection.execute(sa.text("SELECT name, sql FROM sqlite_master")).all())
        forced = connection.scalar(sa.text("SELECT forced FROM promotions"))
    engine.dispose()
    assert counts == dict.fromkeys(counts, 1)
    for table in ("pipelines", "runs", "model_versions", "promotions", "audit_log"):
        assert "AUTOINCREMENT" in ddl[table], table
    assert "archived_at IS NULL" in ddl["uq_pipelines_live_name"]
    assert "stage = 'production'" in ddl["uq_model_versions_one_production"]
    assert forced == 0
