"""Outbound calls survive a blip: the deploy webhook and http(s) data sources try again
through 5xx, timeouts and reset connections, with backoff, and each attempt is written in the
step's detail; a 4xx is an answer and fails at once. Against a real local HTTP server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.core.settings import Settings
from tests.factories import churn_frame, pipeline_spec, wait_for_run, write_csv
from tests.webhook_server import DeployTarget, deploy_target

API = "/api/v1"
NAME = "retrain-customer-model"
BASE = f"{API}/pipelines/{NAME}"
UNAVAILABLE = "503 Service Unavailable"


def run_with(client: Any, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    write_csv(tmp_path / "data" / "customers.csv", churn_frame())
    response = client.put(BASE, json=pipeline_spec(**overrides))
    assert response.status_code in (200, 201), response.text
    triggered = client.post(f"{BASE}/runs")
    assert triggered.status_code == 202, triggered.text
    return wait_for_run(client, triggered.json()["id"])


def webhook(target: DeployTarget, timeout_s: float = 10) -> dict[str, Any]:
    return {
        "mode": "auto",
        "target": {"kind": "webhook", "url": target.url, "timeout_s": timeout_s},
    }


def step(run: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [s for s in run["steps"] if s["name"] == name]
    return found


class TestDeployWebhook:
    def test_two_503s_then_accepted(self, client: Any, tmp_path: Path) -> None:
        with deploy_target(script=[503, 503]) as target:
            run = run_with(client, tmp_path, deployment=webhook(target))
        assert run["status"] == "completed", run
        assert target.requests == 3
        assert step(run, "deploy")["detail"] == (
            f"version 1 promoted to production; accepted by {target.url} (200) "
            f"after 3 attempts (1: {UNAVAILABLE}; 2: {UNAVAILABLE}; 3: 200)"
        )
        assert client.get(f"{BASE}/status").json()["production_version"] == 1

    def test_a_reset_connection_and_a_timeout_are_tried_again(
        self, client: Any, tmp_path: Path
    ) -> None:
        with deploy_target(script=["reset", "slow"]) as target:
            target.slow_s = 1.5
            run = run_with(client, tmp_path, deployment=webhook(target, timeout_s=0.5))
        assert run["status"] == "completed", run
        detail = step(run, "deploy")["detail"]
        assert "after 3 attempts (1: could not connect: " in detail
        assert "2: no answer within 0.5 s; 3: 200)" in detail

    def test_a_target_that_stays_down_fails_the_run_listing_each_attempt(
        self, client: Any, tmp_path: Path
    ) -> None:
        with deploy_target(status=503) as target:
            run = run_with(client, tmp_path, deployment=webhook(target))
        assert run["status"] == "failed"
        attempts = "; ".join(f"{n}: {UNAVAILABLE}" for n in range(1, 5))
        expected = (
            f"Deployment failed: {UNAVAILABLE} from {target.url} (after 4 attempts: {attempts})"
        )
        assert run["error"] == expected
        assert step(run, "deploy")["status"] == "failed"
        assert target.requests == 4
        assert client.get(f"{BASE}/status").json()["production_version"] is None

    def test_a_4xx_after_a_blip_fails_at_once(self, client: Any, tmp_path: Path) -> None:
        with deploy_target(script=[502], status=403) as target:
            run = run_with(client, tmp_path, deployment=webhook(target))
        assert run["status"] == "failed"
        assert target.requests == 2
        assert run["error"] == (
            f"Deployment failed: 403 Forbidden from {target.url} "
            "(attempt 2; before it 1: 502 Bad Gateway)"
        )

    def test_the_number_of_attempts_is_the_operators(
        self, client: Any, settings: Settings, tmp_path: Path
    ) -> None:
        settings.outbound_attempts = 1
        with deploy_target(script=[503]) as target:
            run = run_with(client, tmp_path, deployment=webhook(target))
        assert run["error"] == f"Deployment failed: {UNAVAILABLE} from {target.url}"
        assert target.requests == 1

    def test_a_manual_promotion_retries_too_and_the_ledger_says_so(
        self, client: Any, tmp_path: Path
    ) -> None:
        run_with(client, tmp_path)
        assert client.post(f"{BASE}/runs").status_code == 202
        second = client.get(f"{BASE}/runs").json()["items"][0]
        wait_for_run(client, second["id"])
        with deploy_target(script=[500]) as target:
            spec = pipeline_spec(deployment=webhook(target))
            assert client.put(BASE, json=spec).status_code == 200
            promoted = client.post(f"{BASE}/models/1/promote")
        assert promoted.status_code == 200, promoted.text
        assert target.requests == 2
        [latest, *_] = client.get(f"{BASE}/promotions").json()
        assert "after 2 attempts (1: 500 Internal Server Error; 2: 200)" in str(latest)


class TestHttpSources:
    def test_two_502s_then_the_file(self, client: Any, tmp_path: Path) -> None:
        body = churn_frame().to_csv(index=False).encode()
        with deploy_target(script=[502, "reset"], body=body) as web:
            url = web.url.replace("/deploy", "/customers.csv")
            run = run_with(client, tmp_path, source={"kind": "csv", "path": url})
        assert run["status"] == "completed", run
        detail = step(run, "load_data")["detail"]
        assert detail.startswith(f"300 rows x 4 columns from csv {url} after 3 attempts (")
        assert "1: 502 Bad Gateway; 2: could not connect: " in detail
        assert detail.endswith("; 3: fetched)")

    def test_a_source_that_stays_down_fails_listing_each_attempt(
        self, client: Any, tmp_path: Path
    ) -> None:
        with deploy_target(status=500) as web:
            url = web.url.replace("/deploy", "/customers.csv")
            run = run_with(client, tmp_path, source={"kind": "csv", "path": url})
        assert run["status"] == "failed"
        assert run["error"].startswith(
            f"Data source unavailable: 500 Internal Server Error from {url}"
        )
        assert "(after 4 attempts: 1: 500 Internal Server Error; 2: " in run["error"]
        assert web.requests == 4

    def test_a_missing_file_is_not_asked_for_again(self, client: Any, tmp_path: Path) -> None:
        with deploy_target(status=404) as web:
            url = web.url.replace("/deploy", "/customers.csv")
            run = run_with(client, tmp_path, source={"kind": "csv", "path": url})
        assert run["error"] == f"Data source not found: {url}"
        assert web.requests == 1
