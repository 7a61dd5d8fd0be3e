"""The audit log: every change to pipelines, runs, models, webhook secrets and keys is recorded
with the key that made it (or `system`), newest first, and never with a secret in it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.auth.audit import masked
from tests.factories import churn_frame, pipeline_spec, wait_for_run, write_csv

API = "/api/v1"
NAME = "retrain-customer-model"
BASE = f"{API}/pipelines/{NAME}"


class As:
    """Requests sent with one API key."""

    def __init__(self, client: Any, role: str, name: str) -> None:
        created = client.post(f"{API}/keys", json={"name": name, "role": role}).json()
        self.client, self.id, self.key = client, created["id"], created["key"]
        self.headers = {"Authorization": f"Bearer {self.key}"}

    def __call__(self, method: str, path: str, status: int, **kwargs: Any) -> Any:
        response = self.client.request(method, path, headers=self.headers, **kwargs)
        assert response.status_code == status, response.text
        return response.json() if response.content else None


def audit_log(client: Any, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get(f"{API}/audit", params=params).json()["items"]
    return items


def run(as_: As, name: str = NAME) -> dict[str, Any]:
    started = as_("POST", f"{API}/pipelines/{name}/runs", 202)
    return wait_for_run(as_.client, started["id"])


def test_each_change_is_recorded_with_the_key_that_made_it(client: Any, tmp_path: Path) -> None:
    write_csv(tmp_path / "data" / "customers.csv", churn_frame())
    admin, ops = As(client, "admin", "platform"), As(client, "operator", "on-call")
    secret = admin("POST", f"{API}/pipelines", 201, json=pipeline_spec())["webhook_secret"]
    admin("PUT", BASE, 200, json=pipeline_spec(description="nightly"))
    rotated = admin("POST", f"{BASE}/webhook-secret/rotate", 200)["webhook_secret"]
    ops("POST", f"{BASE}/pause", 200)
    ops("POST", f"{BASE}/resume", 200)
    first, _ = run(ops), run(ops)  # each auto-deploys: promotions by `system`
    ops("POST", f"{BASE}/models/1/promote", 200, json={"reason": "v2 misbehaves"})
    ops("POST", f"{BASE}/rollback", 200)
    manual = pipeline_spec("needs-approval", deployment={"mode": "manual"})
    admin("POST", f"{API}/pipelines", 201, json=manual)
    waiting = run(ops, "needs-approval")
    ops("POST", f"{API}/runs/{waiting['id']}/cancel", 202)
    admin("DELETE", f"{API}/pipelines/needs-approval", 204)
    admin("DELETE", f"{API}/keys/{ops.id}", 204)

    entries = audit_log(client, limit=500)
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)
    seen = [(e["action"], e["actor"], e["actor_key_id"], e["target"]) for e in reversed(entries)]
    platform, on_call = ("platform", admin.id), ("on-call", ops.id)
    assert seen == [
        ("key.create", "admin token (MLOPS_ADMIN_TOKEN)", None, f"keys/{admin.id}"),
        ("key.create", "admin token (MLOPS_ADMIN_TOKEN)", None, f"keys/{ops.id}"),
        ("pipeline.create", *platform, f"pipelines/{NAME}"),
        ("pipeline.replace", *platform, f"pipelines/{NAME}"),
        ("webhook_secret.rotate", *platform, f"pipelines/{NAME}"),
        ("pipeline.pause", *on_call, f"pipelines/{NAME}"),
        ("pipeline.resume", *on_call, f"pipelines/{NAME}"),
        ("run.trigger", *on_call, f"pipelines/{NAME}"),
        ("model.promote", "system", None, f"pipelines/{NAME}"),
        ("run.trigger", *on_call, f"pipelines/{NAME}"),
        ("model.promote", "system", None, f"pipelines/{NAME}"),
        ("model.promote", *on_call, f"pipelines/{NAME}"),
        ("model.rollback", *on_call, f"pipelines/{NAME}"),
        ("pipeline.create", *platform, "pipelines/needs-approval"),
        ("run.trigger", *on_call, "pipelines/needs-approval"),
        ("run.cancel", *on_call, f"runs/{waiting['id']}"),
        ("pipeline.delete", *platform, "pipelines/needs-approval"),
        ("key.revoke", *platform, f"keys/{ops.id}"),
    ]
    details = {e["action"]: e["detail"] for e in reversed(entries)}
    assert details["pipeline.replace"] == {"changed": ["description"]}
    assert details["run.trigger"]["reason"] == "manual"
    assert entries[-8]["detail"]["run_id"] == first["id"]
    assert details["model.rollback"] == {
        "from_version": 1,
        "to_version": 2,
        "reason": "manual rollback",
    }
    dumped = json.dumps(entries)
    for secret_value in (secret, rotated, admin.key, ops.key):
        assert secret_value not in dumped


def test_the_ledger_names_the_key_that_promoted(client: Any, tmp_path: Path) -> None:
    write_csv(tmp_path / "data" / "customers.csv", churn_frame())
    client.post(f"{API}/pipelines", json=pipeline_spec())
    ops = As(client, "operator", "release-bot")
    run(ops)
    run(ops)
    ops("POST", f"{BASE}/models/1/promote", 200)
    ledger = client.get(f"{BASE}/promotions").json()
    assert [p["actor"] for p in ledger] == [f"release-bot (key {ops.id})", "system", "system"]
    runs = client.get(f"{BASE}/runs").json()["items"]
    assert {r["actor"] for r in runs} == {f"release-bot (key {ops.id})"}


def test_the_log_is_paginated_newest_first_and_filters_by_action(client: Any) -> None:
    for i in range(5):
        client.post(f"{API}/keys", json={"name": f"k{i}", "role": "viewer"})
    client.post(f"{API}/pipelines", json=pipeline_spec())
    page = client.get(f"{API}/audit", params={"limit": 2, "offset": 1}).json()
    assert (page["total"], page["limit"], page["offset"]) == (6, 2, 1)
    assert [e["detail"]["name"] for e in page["items"]] == ["k4", "k3"]
    keys_only = client.get(f"{API}/audit", params={"action": "key.create"}).json()
    assert keys_only["total"] == 5


def test_secret_sounding_fields_are_masked() -> None:
    detail = {
        "changed": ["deployment"],
        "webhook_secret": "whsec_abc",
        "target": {"url": "https://deploy", "headers": {"Authorization": "Bearer x"}},
        "items": [{"api_key": "k", "name": "n"}],
    }
    assert masked(detail) == {
        "changed": ["deployment"],
        "webhook_secret": "***",
        "target": {"url": "https://deploy", "headers": "***"},
        "items": [{"api_key": "***", "name": "n"}],
    }
