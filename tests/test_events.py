"""Notifications per the Standard Webhooks specification: admin subscriptions, events
written in the transaction of the change they report, delivered after commit to a real local
receiver, verified with the reference `standardwebhooks` package, retried with backoff
through a blip (the same webhook-id on every attempt), a 410 disabling the subscription, and a
dead receiver never delaying a run."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from app.core.db import make_engine, make_session_factory, unit_of_work
from app.core.settings import Settings
from app.events import delivery
from app.events import service as events
from app.events.schemas import EVENT_TYPES, SubscriptionCreate
from app.main import create_app
from tests.conftest import TestClient
from tests.factories import churn_frame, pipeline_spec, wait_for_run, write_csv
from tests.test_webhooks import moved_clock
from tests.webhook_server import DeployTarget, deploy_target

__all__ = ["moved_clock"]  # the fixture, imported to be used here

API = "/api/v1"
NAME = "retrain-customer-model"
BASE = f"{API}/pipelines/{NAME}"


@pytest.fixture
def fast_events(settings: Settings) -> Settings:
    """Deliveries looked for every 0.1 s, retried after about 0.05 s."""
    settings.event_poll_s = 0.1
    settings.event_backoff_s = 0.05
    settings.event_max_backoff_s = 0.2
    settings.event_timeout_s = 2
    settings.public_url = "https://mlops.example.com/"
    return settings


@pytest.fixture
def app_client(fast_events: Settings) -> Any:
    with TestClient(create_app(fast_events)) as client:
        yield client


def subscribe(client: Any, url: str, **fields: Any) -> dict[str, Any]:
    response = client.post(f"{API}/subscriptions", json={"url": url, "events": ["*"], **fields})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def run_pipeline(client: Any, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    write_csv(tmp_path / "data" / "customers.csv", churn_frame())
    response = client.put(BASE, json=pipeline_spec(**overrides))
    assert response.status_code in (200, 201), response.text
    triggered = client.post(f"{BASE}/runs")
    assert triggered.status_code == 202, triggered.text
    return wait_for_run(client, triggered.json()["id"])


def wait_for(predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def types_received(target: DeployTarget) -> list[str]:
    return [body.get("type", "") for body in target.received]


def verified(target: DeployTarget, secret: str) -> list[dict[str, Any]]:
    """Every request the receiver got, checked with the reference library."""
    checker = Webhook(secret)
    return [checker.verify(body, headers) for headers, body in target.raw]


class TestSubscriptionsApi:
    def test_create_shows_the_secret_once(self, app_client: Any) -> None:
        created = subscribe(
            app_client, "https://hooks.example.com/x", events=["run.failed"], pipelines=[NAME]
        )
        assert created["secret"].startswith("whsec_")
        assert len(Webhook(created["secret"])._whsecret) == 32  # the base64 part is the key
        assert created["events"] == ["run.failed"] and created["pipelines"] == [NAME]
        assert created["format"] == "standard" and created["enabled"] is True
        one = app_client.get(f"{API}/subscriptions/{created['id']}").json()
        assert "secret" not in one and one["url"] == "https://hooks.example.com/x"
        listed = app_client.get(f"{API}/subscriptions").json()
        assert listed["total"] == 1 and "secret" not in listed["items"][0]

    def test_rotate_and_delete(self, app_client: Any) -> None:
        created = subscribe(app_client, "https://hooks.example.com/x")
        url = f"{API}/subscriptions/{created['id']}"
        rotated = app_client.post(f"{url}/rotate-secret")
        assert rotated.status_code == 200
        assert rotated.json()["secret"].startswith("whsec_")
        assert rotated.json()["secret"] != created["secret"]
        assert app_client.delete(url).status_code == 204
        assert app_client.get(url).status_code == 404
        assert app_client.get(f"{url}/deliveries").status_code == 404
        actions = [e["action"] for e in app_client.get(f"{API}/audit").json()["items"]]
        assert {"subscription.create", "subscription.rotate_secret"} <= set(actions)
        assert "subscription.delete" in actions

    @pytest.mark.parametrize(
        ("body", "loc"),
        [
            ({"url": "ftp://x", "events": ["*"]}, "url"),
            ({"url": "https://x", "events": ["run.exploded"]}, "events.0"),
            ({"url": "https://x", "events": []}, "events"),
            ({"url": "https://x", "events": ["*"], "format": "teams"}, "format"),
            ({"url": "https://x", "events": ["*"], "pipelines": ["Not A Slug"]}, "pipelines.0"),
            ({"url": "https://x", "events": ["*"], "secret": "mine"}, "secret"),
        ],
    )
    def test_bad_fields_are_named(self, app_client: Any, body: dict[str, Any], loc: str) -> None:
        response = app_client.post(f"{API}/subscriptions", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["loc"] == f"body.{loc}"
        assert app_client.get(f"{API}/subscriptions").json()["total"] == 0

    def test_the_url_allow_pattern_applies(self, app_client: Any, fast_events: Settings) -> None:
        fast_events.http_url_allow = r"https://hooks\.example\.com/.*"
        refused = app_client.post(
            f"{API}/subscriptions", json={"url": "http://169.254.169.254/x", "events": ["*"]}
        )
        assert refused.status_code == 422
        assert refused.json()["errors"][0] == {
            "loc": "body.url",
            "msg": "http://169.254.169.254/x does not match MLOPS_HTTP_URL_ALLOW",
        }
        subscribe(app_client, "https://hooks.example.com/ok")

    def test_only_admins(self, app_client: Any) -> None:
        key = app_client.post(f"{API}/keys", json={"name": "ops", "role": "operator"}).json()
        headers = {"Authorization": f"Bearer {key['key']}"}
        response = app_client.get(f"{API}/subscriptions", headers=headers)
        assert response.status_code == 403


class TestDelivery:
    def test_a_run_is_heard_and_verified_with_the_reference_library(
        self, app_client: Any, tmp_path: Path
    ) -> None:
        with deploy_target() as receiver:
            secret = subscribe(app_client, receiver.url)["secret"]
            run = run_pipeline(app_client, tmp_path)
            assert run["status"] == "completed", run
            wait_for(lambda: len(receiver.received) >= 2)
        assert sorted(types_received(receiver)) == ["model.promoted", "run.completed"]
        bodies = {body["type"]: body for body in verified(receiver, secret)}
        completed = bodies["run.completed"]
        assert set(completed) == {"type", "timestamp", "data"}
        assert datetime.fromisoformat(completed["timestamp"]).utcoffset() is not None
        data = completed["data"]
        assert data["pipeline"] == NAME and data["run"] == run["id"] and data["version"] == 1
        assert data["reason"] == "manual"
        assert data["links"]["run"] == f"https://mlops.example.com/api/v1/runs/{run['id']}"
        assert data["links"]["version"] == f"https://mlops.example.com{BASE}/models/1"
        promoted = bodies["model.promoted"]["data"]
        assert promoted["version"] == 1 and promoted["from_version"] is None
        headers = receiver.raw[0][0]
        assert headers["webhook-id"].startswith("msg_")
        assert headers["webhook-signature"].startswith("v1,")

    def test_filters_by_event_and_pipeline(self, app_client: Any, tmp_path: Path) -> None:
        with deploy_target() as mine, deploy_target() as other, deploy_target() as failures:
            subscribe(app_client, mine.url, events=["run.completed"], pipelines=[NAME])
            subscribe(app_client, other.url, pipelines=["another-pipeline"])
            subscribe(app_client, failures.url, events=["run.failed"])
            run_pipeline(app_client, tmp_path)
            wait_for(lambda: mine.received)
            time.sleep(0.5)
        assert types_received(mine) == ["run.completed"]
        assert other.received == [] and failures.received == []

    def test_a_failed_run_and_a_rollback(self, app_client: Any, tmp_path: Path) -> None:
        with deploy_target() as receiver:
            secret = subscribe(app_client, receiver.url)["secret"]
            run_pipeline(app_client, tmp_path)
            assert wait_for_run(app_client, app_client.post(f"{BASE}/runs").json()["id"])
            assert app_client.post(f"{BASE}/rollback").status_code == 200
            failed = run_pipeline(app_client, tmp_path, source={"kind": "csv", "path": "nope.csv"})
            assert failed["status"] == "failed"
            wait_for(lambda: "run.failed" in types_received(receiver))
            wait_for(lambda: "model.rolled_back" in types_received(receiver))
        bodies = verified(receiver, secret)
        [rolled] = [b["data"] for b in bodies if b["type"] == "model.rolled_back"]
        assert rolled["version"] == 1 and rolled["from_version"] == 2
        [broken] = [b["data"] for b in bodies if b["type"] == "run.failed"]
        assert broken["reason"] == "Data source not found: nope.csv"
        assert broken["run"] == failed["id"]

    def test_a_blip_is_retried_with_the_same_webhook_id(
        self, app_client: Any, tmp_path: Path
    ) -> None:
        with deploy_target(script=[503, "reset"]) as receiver:
            created = subscribe(app_client, receiver.url, events=["run.completed"])
            run_pipeline(app_client, tmp_path)
            wait_for(lambda: len(receiver.raw) >= 3)
            log_url = f"{API}/subscriptions/{created['id']}/deliveries"
            [delivery] = wait_for(
                lambda: [d for d in app_client.get(log_url).json()["items"] if d["delivered_at"]]
            )
        ids = {headers["webhook-id"] for headers, _ in receiver.raw}
        assert len(ids) == 1 and delivery["message_id"] in ids
        assert delivery["status"] == "delivered" and delivery["attempts"] == 3
        assert delivery["last_status_code"] == 200 and delivery["next_attempt_at"] is None
        # The receiver took the last one: it verifies like the first would have.
        headers, body = receiver.raw[-1]
        Webhook(created["secret"]).verify(body, headers)

    def test_a_dead_receiver_is_retried_and_shown_in_the_log(
        self, app_client: Any, tmp_path: Path
    ) -> None:
        created = subscribe(app_client, "http://127.0.0.1:9/dead", events=["run.completed"])
        started = time.monotonic()
        run = run_pipeline(app_client, tmp_path)
        assert run["status"] == "completed"
        assert time.monotonic() - started < 30
        log_url = f"{API}/subscriptions/{created['id']}/deliveries"
        [delivery] = wait_for(
            lambda: [d for d in app_client.get(log_url).json()["items"] if d["attempts"] >= 2]
        )
        assert delivery["status"] == "pending"
        assert delivery["last_error"].startswith("could not connect")
        assert delivery["last_status_code"] is None
        assert delivery["next_attempt_at"] is not None

    def test_410_disables_the_subscription(self, app_client: Any, tmp_path: Path) -> None:
        with deploy_target(status=410) as receiver:
            created = subscribe(app_client, receiver.url, events=["run.completed"])
            run_pipeline(app_client, tmp_path)
            url = f"{API}/subscriptions/{created['id']}"
            wait_for(lambda: not app_client.get(url).json()["enabled"])
            run_pipeline(app_client, tmp_path)
            time.sleep(0.5)
        shown = app_client.get(url).json()
        assert shown["disabled_reason"].startswith(f"410 Gone from {receiver.url}")
        assert len(receiver.raw) == 1
        [delivery] = app_client.get(f"{url}/deliveries").json()["items"]
        assert delivery["status"] == "failed" and delivery["last_status_code"] == 410

    def test_another_4xx_is_not_retried(self, app_client: Any, tmp_path: Path) -> None:
        with deploy_target(status=400) as receiver:
            created = subscribe(app_client, receiver.url, events=["run.completed"])
            run_pipeline(app_client, tmp_path)
            log_url = f"{API}/subscriptions/{created['id']}/deliveries"
            wait_for(lambda: app_client.get(log_url).json()["items"][0]["status"] == "failed")
            time.sleep(0.3)
        assert len(receiver.raw) == 1

    def test_slack_format_posts_text(self, app_client: Any, tmp_path: Path) -> None:
        with deploy_target() as slack:
            subscribe(app_client, slack.url, events=["run.completed"], format="slack")
            run = run_pipeline(app_client, tmp_path)
            wait_for(lambda: slack.received)
        [message] = slack.received
        assert list(message) == ["text"]
        assert message["text"].startswith(
            f"[mlops] run.completed: pipeline {NAME}, run {run['id']}"
        )
        assert f"<https://mlops.example.com/ui/runs/{run['id']}|open>" in message["text"]

    def test_new_data_fires_and_is_heard_with_its_reason(
        self, app_client: Any, tmp_path: Path
    ) -> None:
        spec = pipeline_spec(
            NAME,
            source={"kind": "ingested"},
            triggers=[{"kind": "new_data", "min_rows": 50}],
        )
        created = app_client.post(f"{API}/pipelines", json=spec)
        assert created.status_code == 201, created.text
        webhook_secret = created.json()["webhook_secret"]
        with deploy_target() as receiver:
            secret = subscribe(app_client, receiver.url, events=["trigger.fired"])["secret"]
            body = json.dumps({"records": churn_frame(60).to_dict(orient="records")}).encode()
            now = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "webhook-id": "msg_batch_1",
                "webhook-timestamp": str(now),
                "webhook-signature": Webhook(webhook_secret).sign(
                    "msg_batch_1", datetime.fromtimestamp(now), body.decode()
                ),
            }
            [run_id] = app_client.post(f"{BASE}/data", content=body, headers=headers).json()[
                "fired"
            ]
            wait_for(lambda: receiver.received)
        [fired] = verified(receiver, secret)
        assert fired["type"] == "trigger.fired"
        assert fired["data"]["run"] == run_id
        assert fired["data"]["reason"] == "new data: 60 rows >= 50"
        assert fired["data"]["trigger"] == {"kind": "new_data", "reason": "new data: 60 rows >= 50"}


def test_pending_deliveries_survive_a_restart(fast_events: Settings, tmp_path: Path) -> None:
    with deploy_target(status=503) as receiver:
        with TestClient(create_app(fast_events)) as first:
            created = subscribe(first, receiver.url, events=["run.completed"])
            run_pipeline(first, tmp_path)
            # A whole run first (load, train, score), on a machine the suite keeps busy.
            wait_for(lambda: receiver.raw, timeout=90)
        # Stopped while the receiver was down: the delivery waits in the database.
        receiver.status = 200
        with TestClient(create_app(fast_events)) as second:
            log_url = f"{API}/subscriptions/{created['id']}/deliveries"
            [delivery] = wait_for(
                lambda: [d for d in second.get(log_url).json()["items"] if d["delivered_at"]]
            )
    assert delivery["attempts"] >= 2
    assert len({headers["webhook-id"] for headers, _ in receiver.raw}) == 1
    Webhook(created["secret"]).verify(receiver.raw[-1][1], receiver.raw[-1][0])


def test_every_event_type_is_documented() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for event_type in EVENT_TYPES:
        assert f"`{event_type}`" in readme


def test_replicas_share_the_outbox_without_sending_twice(fast_events: Settings) -> None:
    """Three delivery jobs at once (as three replicas would run them) send each event once."""
    engine = make_engine(fast_events.resolved_database_url)
    factory = make_session_factory(engine)
    with deploy_target() as receiver:
        with unit_of_work(factory) as session:
            events.create(
                session=session,
                body=SubscriptionCreate(url=receiver.url, events=["*"]),
                url_allow=None,
                by="test",
            )
            for n in range(40):
                events.emit(session, "drift.detected", pipeline=NAME, data={"reason": f"#{n}"})
        start = threading.Barrier(3)

        def replica() -> None:
            start.wait()
            delivery.deliver_due(factory, fast_events)

        threads = [threading.Thread(target=replica) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    engine.dispose()
    ids = [headers["webhook-id"] for headers, _ in receiver.raw]
    assert len(ids) == len(set(ids)) == 40


def test_old_finished_events_are_forgotten(fast_events: Settings, moved_clock: Any) -> None:
    engine = make_engine(fast_events.resolved_database_url)
    factory = make_session_factory(engine)
    with deploy_target() as receiver:
        with unit_of_work(factory) as session:
            row = events.create(
                session=session,
                body=SubscriptionCreate(url=receiver.url, events=["*"]),
                url_allow=None,
                by="test",
            )
            events.emit(session, "drift.detected", pipeline=NAME, data={"reason": "delivered"})
        delivery.deliver_due(factory, fast_events)
        assert len(receiver.raw) == 1
        with unit_of_work(factory) as session:
            events.emit(session, "drift.detected", pipeline=NAME, data={"reason": "waiting"})
    moved_clock(timedelta(seconds=fast_events.event_keep_s + 60))
    delivery.prune(factory, fast_events)
    with unit_of_work(factory) as session:
        log, total = events.deliveries(session=session, row=row, limit=10, offset=0)
    engine.dispose()
    # The delivered one is gone; the one still pending stays until it is sent or given up.
    assert total == 1 and log[0].status == "pending"
