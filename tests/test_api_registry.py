"""Registry API: versions with their evidence, verified artifacts, promotion through the
deploy target (never half-promoted), rollback, the ledger, manual approval, and /predict."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from app.core.db import read_only_unit
from app.main import create_app
from app.registry import service as registry
from tests.conftest import TestClient
from tests.factories import churn_frame, pipeline_spec, wait_for_run, write_csv
from tests.webhook_server import deploy_target

API = "/api/v1"
NAME = "retrain-customer-model"
BASE = f"{API}/pipelines/{NAME}"


def create(client: Any, tmp_path: Path, **overrides: Any) -> None:
    write_csv(tmp_path / "data" / "customers.csv", churn_frame())
    assert client.post(f"{API}/pipelines", json=pipeline_spec(**overrides)).status_code == 201


def run_once(client: Any) -> dict[str, Any]:
    response = client.post(f"{BASE}/runs")
    assert response.status_code == 202, response.text
    return wait_for_run(client, response.json()["id"])


def production_version(client: Any) -> int | None:
    version: int | None = client.get(f"{BASE}/status").json()["production_version"]
    return version


INSTANCES = [
    {"age": 70, "monthly_spend": 20.0, "plan": "basic"},
    {"age": 20, "monthly_spend": 90.0, "plan": "team"},
]


class TestVersions:
    def test_version_records_its_evidence(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path)
        run = run_once(client)
        version = client.get(f"{BASE}/models/1").json()
        assert version["stage"] == "production"
        assert version["run_id"] == run["id"]
        assert len(version["sha256"]) == 64
        assert version["data_fingerprint"]["rows"] == 300
        assert version["data_fingerprint"]["columns"] == ["age", "monthly_spend", "plan", "churned"]
        assert version["params"]["max_iter"] == 1000
        assert version["features"] == ["age", "monthly_spend", "plan"]
        assert version["metrics"]["candidate"] == run["metrics"]["candidate"]

    def test_artifact_download_matches_sha256(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path)
        run_once(client)
        response = client.get(f"{BASE}/models/1/artifact")
        assert response.status_code == 200
        digest = hashlib.sha256(response.content).hexdigest()
        assert (
            digest
            == response.headers["x-model-sha256"]
            == client.get(f"{BASE}/models/1").json()["sha256"]
        )

    def test_unknown_version_is_404(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path)
        response = client.get(f"{BASE}/models/7")
        assert response.status_code == 404
        assert response.json()["detail"] == f"Pipeline {NAME} has no model version 7"


class TestPromotionAndRollback:
    def test_promote_rollback_and_ledger(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path)
        run_once(client)
        run_once(client)  # ties production on the same data: min_improvement 0 passes
        assert production_version(client) == 2
        promoted = client.post(f"{BASE}/models/1/promote", json={"reason": "v2 misbehaves"})
        assert promoted.status_code == 200, promoted.text
        assert (promoted.json()["from_version"], promoted.json()["to_version"]) == (2, 1)
        assert production_version(client) == 1
        rolled = client.post(f"{BASE}/rollback").json()
        assert (rolled["action"], rolled["from_version"], rolled["to_version"]) == (
            "rollback",
            1,
            2,
        )
        assert production_version(client) == 2
        ledger = client.get(f"{BASE}/promotions").json()
        assert [(p["action"], p["from_version"], p["to_version"]) for p in ledger] == [
            ("rollback", 1, 2),
            ("promote", 2, 1),
            ("promote", 1, 2),
            ("promote", None, 1),
        ]
        assert ledger[1]["reason"] == "v2 misbehaves"
        assert ledger[1]["actor"] == "admin token (MLOPS_ADMIN_TOKEN)"
        assert ledger[3]["actor"] == "system"
        assert "candidate" in ledger[3]["evidence"]
        stages = [m["stage"] for m in client.get(f"{BASE}/models").json()]
        assert stages == ["production", "archived"]

    def test_promoting_the_production_version_is_409(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path)
        run_once(client)
        response = client.post(f"{BASE}/models/1/promote")
        assert response.status_code == 409
        assert "already in production" in response.json()["detail"]

    def test_rollback_without_history_is_409(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path)
        assert client.post(f"{BASE}/rollback").status_code == 409
        run_once(client)
        response = client.post(f"{BASE}/rollback")
        assert response.status_code == 409
        assert "no earlier production version" in response.json()["detail"]


class TestDeployTargets:
    def test_webhook_403_fails_the_run_and_keeps_production(
        self, client: Any, tmp_path: Path
    ) -> None:
        create(client, tmp_path)
        run_once(client)
        with deploy_target(status=403) as target:
            spec = pipeline_spec(
                deployment={"mode": "auto", "target": {"kind": "webhook", "url": target.url}}
            )
            assert client.put(BASE, json=spec).status_code == 200
            run = run_once(client)
            assert run["status"] == "failed"
            assert run["error"] == f"Deployment failed: 403 Forbidden from {target.url}"
            assert run["steps"][4]["status"] == "failed"
            assert production_version(client) == 1
            assert len(target.received) == 1
            # The target accepts now: the same version can be promoted by hand.
            target.status = 200
            promoted = client.post(f"{BASE}/models/2/promote")
            assert promoted.status_code == 200, promoted.text
            assert production_version(client) == 2
            payload = target.received[-1]
            assert payload["version"] == 2
            assert payload["artifact_url"].endswith(f"/api/v1/pipelines/{NAME}/models/2/artifact")
            assert payload["sha256"] == client.get(f"{BASE}/models/2").json()["sha256"]

    def test_manual_promotion_failing_deploy_is_502_and_changes_nothing(
        self, client: Any, tmp_path: Path
    ) -> None:
        create(client, tmp_path)
        run_once(client)
        run_once(client)
        with deploy_target(status=500) as target:
            spec = pipeline_spec(
                deployment={"mode": "auto", "target": {"kind": "webhook", "url": target.url}}
            )
            client.put(BASE, json=spec)
            response = client.post(f"{BASE}/models/1/promote")
        assert response.status_code == 502
        assert response.json()["detail"].startswith("Deployment failed: 500 Internal Server Error")
        assert production_version(client) == 2
        assert len(client.get(f"{BASE}/promotions").json()) == 2

    def test_unreachable_webhook_fails_with_a_plain_reason(
        self, client: Any, tmp_path: Path
    ) -> None:
        url = "http://127.0.0.1:9/deploy"
        create(
            client,
            tmp_path,
            deployment={"mode": "auto", "target": {"kind": "webhook", "url": url, "timeout_s": 2}},
        )
        run = run_once(client)
        assert run["status"] == "failed"
        assert run["error"].startswith(f"Deployment failed: could not reach {url}")
        assert production_version(client) is None

    def test_a_webhook_outside_the_url_pattern_is_never_called(
        self, client: Any, tmp_path: Path, settings: Any
    ) -> None:
        create(client, tmp_path)
        run_once(client)
        strict = settings.model_copy(update={"http_url_allow": r"https://deploy\.example\.com/.*"})
        with deploy_target() as target:
            spec = pipeline_spec(
                deployment={"mode": "auto", "target": {"kind": "webhook", "url": target.url}}
            )
            assert client.put(BASE, json=spec).status_code == 200
            # The operator sets the pattern later: stored pipelines still load, and runs stop
            # at the deploy step.
            with TestClient(create_app(strict)) as restarted:
                run = run_once(restarted)
                promoted = restarted.post(f"{BASE}/models/2/promote")
                rejected = restarted.put(BASE, json=spec)
            refusal = f"Deployment failed: {target.url} does not match MLOPS_HTTP_URL_ALLOW"
            assert (run["status"], run["error"]) == ("failed", refusal)
            assert (promoted.status_code, promoted.json()["detail"]) == (502, refusal)
            assert rejected.status_code == 422
            assert rejected.json()["errors"][0]["loc"] == "deployment.target.webhook.url"
            assert target.received == []
        assert production_version(client) == 1

    def test_manual_mode_awaits_approval_then_promotion_completes_the_run(
        self, client: Any, tmp_path: Path
    ) -> None:
        create(client, tmp_path, deployment={"mode": "manual"})
        run = run_once(client)
        assert run["status"] == "awaiting_approval"
        assert "waiting for approval" in run["steps"][4]["detail"]
        assert production_version(client) is None
        assert client.post(f"{BASE}/models/1/promote").status_code == 200
        assert client.get(f"{API}/runs/{run['id']}").json()["status"] == "completed"
        assert production_version(client) == 1


class TestPredict:
    def test_predictions_from_the_production_model(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path)
        run_once(client)
        response = client.post(f"{BASE}/predict", json={"instances": INSTANCES})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model_version"] == 1
        assert body["predictions"] == [1, 0]

    def test_new_production_version_is_served_after_promotion(
        self, client: Any, tmp_path: Path
    ) -> None:
        create(client, tmp_path)
        run_once(client)
        run_once(client)
        assert (
            client.post(f"{BASE}/predict", json={"instances": INSTANCES}).json()["model_version"]
            == 2
        )
        client.post(f"{BASE}/models/1/promote")
        assert (
            client.post(f"{BASE}/predict", json={"instances": INSTANCES}).json()["model_version"]
            == 1
        )

    def test_unknown_category_is_ignored(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path)
        run_once(client)
        rows = [{"age": 40, "monthly_spend": 50.0, "plan": "enterprise"}]
        assert client.post(f"{BASE}/predict", json={"instances": rows}).status_code == 200

    def test_missing_feature_is_422_naming_it(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path)
        run_once(client)
        response = client.post(f"{BASE}/predict", json={"instances": [{"age": 40}]})
        assert response.status_code == 422
        assert "monthly_spend" in response.json()["detail"]

    def test_no_production_model_is_404(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path)
        response = client.post(f"{BASE}/predict", json={"instances": INSTANCES})
        assert response.status_code == 404
        assert response.json()["detail"] == f"Pipeline {NAME} has no production model yet"

    def test_tampered_artifact_is_refused_when_loaded(
        self, client: Any, tmp_path: Path, settings: Any
    ) -> None:
        create(client, tmp_path)
        run_once(client)
        [artifact] = settings.resolved_artifact_dir.glob(f"{NAME}@*/v1.skops")
        artifact.write_bytes(artifact.read_bytes() + b"tampered")
        assert client.get(f"{BASE}/models/1/artifact").status_code == 409
        # A fresh process has to load the file, and refuses it.
        with TestClient(create_app(settings)) as restarted:
            response = restarted.post(f"{BASE}/predict", json={"instances": INSTANCES})
        assert response.status_code == 409
        assert "failed its sha256 check" in response.json()["detail"]


class TestLargestTrainingData:
    """What a start readies memory for (app.execution.worker.prepare_memory): the most cells
    any live pipeline's latest version was trained on."""

    def largest(self, client: Any) -> int:
        with read_only_unit(client.app.state.services.factory) as session:
            return registry.largest_training_data(session=session)

    def trained(self, client: Any, tmp_path: Path, name: str, rows: int) -> None:
        path = f"data/{name}.csv"
        write_csv(tmp_path / path, churn_frame(rows))
        source = {"kind": "csv", "path": path}
        spec = pipeline_spec(name, source=source)
        assert client.put(f"{API}/pipelines/{name}", json=spec).status_code in (200, 201)
        response = client.post(f"{API}/pipelines/{name}/runs")
        assert response.status_code == 202, response.text
        assert wait_for_run(client, response.json()["id"])["status"] == "completed"

    def test_the_latest_version_of_each_live_pipeline_counts(
        self, client: Any, tmp_path: Path
    ) -> None:
        assert self.largest(client) == 0  # no version yet
        self.trained(client, tmp_path, "small", 200)
        assert self.largest(client) == 200 * 4
        self.trained(client, tmp_path, "shrinking", 600)
        assert self.largest(client) == 600 * 4
        self.trained(client, tmp_path, "shrinking", 300)  # its latest version: 300 rows
        assert self.largest(client) == 300 * 4
        assert client.delete(f"{API}/pipelines/shrinking").status_code == 204  # archived
        assert self.largest(client) == 200 * 4
