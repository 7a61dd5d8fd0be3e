"""Pipelines API: create (JSON and YAML), read, replace, delete, pause/resume, status, and
clear 422s that name the field for every bad spec, with nothing stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.orm import Session

from app.core.db import unit_of_work
from app.core.settings import Settings
from app.main import create_app
from app.pipelines import service as pipelines
from app.pipelines.models import Pipeline
from app.runs import service as runs
from tests.conftest import TestClient
from tests.factories import churn_frame, pipeline_spec, wait_for_run, write_csv

API = "/api/v1"


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


class TestCreate:
    def test_json_spec_creates_pipeline_and_shows_secret_once(self, client: Any) -> None:
        response = client.post(f"{API}/pipelines", json=pipeline_spec())
        assert response.status_code == 201
        body = response.json()
        assert body["name"] == "retrain-customer-model"
        assert body["webhook_secret"].startswith("whsec_")
        assert body["spec"]["model"]["params"] == {"max_iter": 1000}
        again = client.get(f"{API}/pipelines/retrain-customer-model").json()
        assert "webhook_secret" not in again

    def test_yaml_spec_is_accepted(self, client: Any) -> None:
        text = yaml.safe_dump(pipeline_spec(name="from-yaml"))
        response = client.post(
            f"{API}/pipelines", content=text, headers={"content-type": "application/yaml"}
        )
        assert response.status_code == 201, response.text
        assert response.json()["spec"]["source"] == {
            "kind": "csv",
            "path": "data/customers.csv",
            "window": None,
        }

    def test_duplicate_name_is_409(self, client: Any) -> None:
        client.post(f"{API}/pipelines", json=pipeline_spec())
        body = problem(client.post(f"{API}/pipelines", json=pipeline_spec()), 409)
        assert body["detail"] == "Pipeline retrain-customer-model already exists"

    def test_defaults_fill_optional_sections(self, client: Any) -> None:
        spec = {
            "name": "minimal",
            "source": {"kind": "sklearn", "dataset": "iris"},
            "target": "target",
            "model": {"estimator": "sklearn.tree.DecisionTreeClassifier"},
        }
        body = client.post(f"{API}/pipelines", json=spec).json()
        assert body["spec"]["concurrency"] == "skip"
        assert body["spec"]["evaluation"]["metric"] == "accuracy"
        assert body["spec"]["deployment"] == {"mode": "auto", "target": {"kind": "builtin"}}


BAD_SPECS: list[tuple[str, dict[str, Any], str, str]] = [
    ("os.system", {"model": {"estimator": "os.system"}}, "model.estimator", "not an allowed"),
    ("eval", {"model": {"estimator": "builtins.eval"}}, "model.estimator", "not an allowed"),
    (
        "private",
        {"model": {"estimator": "sklearn.ensemble._forest.RandomForestClassifier"}},
        "model.estimator",
        "private",
    ),
    (
        "not-estimator",
        {"model": {"estimator": "sklearn.utils.shuffle"}},
        "model.estimator",
        "not a scikit-learn estimator",
    ),
    (
        "unknown-param",
        {
            "model": {
                "estimator": "sklearn.linear_model.LogisticRegression",
                "params": {"n_trees": 3},
            }
        },
        "model.params",
        "n_trees",
    ),
    (
        "bad-param-value",
        {"model": {"estimator": "sklearn.linear_model.LogisticRegression", "params": {"C": -1}}},
        "model.params",
        "C",
    ),
    ("unknown-metric", {"evaluation": {"metric": "auc"}}, "evaluation.metric", "unknown metric"),
    ("regression-metric", {"evaluation": {"metric": "rmse"}}, "evaluation.metric", "classifier"),
    (
        "holdout-zero",
        {"evaluation": {"holdout_fraction": 0}},
        "evaluation.holdout_fraction",
        "greater than 0",
    ),
    (
        "holdout-large",
        {"evaluation": {"holdout_fraction": 0.95}},
        "evaluation.holdout_fraction",
        "less than or equal to 0.9",
    ),
    ("empty-name", {"name": ""}, "name", "slug"),
    ("not-slug", {"name": "Retrain Model!"}, "name", "slug"),
    ("path-name", {"name": "../etc"}, "name", "slug"),
    ("unknown-field", {"schedule": "daily"}, "schedule", "Extra inputs"),
    (
        "unknown-nested",
        {"validation": {"min_rows": 1, "max_rows": 5}},
        "validation.max_rows",
        "Extra inputs",
    ),
    ("bad-source-kind", {"source": {"kind": "ftp", "path": "x"}}, "source", "kind"),
    (
        "bad-trigger-op",
        {
            "triggers": [
                {"kind": "metric", "metric": "accuracy", "operator": "!=", "threshold": 0.8}
            ]
        },
        "triggers.0.metric.operator",
        "'<'",
    ),
    ("target-is-feature", {"features": ["age", "churned"]}, "features", "cannot also be a feature"),
    (
        "bad-window",
        {"source": {"kind": "csv", "path": "a.csv", "window": {"last_rows": -5}}},
        "source.csv.window.last_rows",
        "greater than 0",
    ),
]


class TestOutboundUrlPattern:
    def test_urls_the_service_would_call_must_match_it(self, settings: Settings) -> None:
        strict = settings.model_copy(update={"http_url_allow": r"https://data\.example\.com/.*"})
        source = {"kind": "csv", "path": "http://169.254.169.254/latest/meta-data/x.csv"}
        hook = {"kind": "webhook", "url": "https://admin.internal/hook"}
        with TestClient(create_app(strict)) as client:
            refused_source = problem(
                client.post(f"{API}/pipelines", json=pipeline_spec(source=source)), 422
            )
            deployment = {"mode": "auto", "target": hook}
            refused_hook = problem(
                client.post(f"{API}/pipelines", json=pipeline_spec(deployment=deployment)), 422
            )
            assert client.get(f"{API}/pipelines").json()["total"] == 0
            fine = {"kind": "csv", "path": "https://data.example.com/customers.csv"}
            assert (
                client.post(f"{API}/pipelines", json=pipeline_spec(source=fine)).status_code == 201
            )
        assert refused_source["errors"] == [
            {
                "loc": "source.csv.path",
                "msg": "http://169.254.169.254/latest/meta-data/x.csv does not match "
                "MLOPS_HTTP_URL_ALLOW",
            }
        ]
        assert refused_hook["errors"][0]["loc"] == "deployment.target.webhook.url"


class TestInvalidSpecs:
    @pytest.mark.parametrize(
        ("case", "override", "loc", "message"), BAD_SPECS, ids=[c[0] for c in BAD_SPECS]
    )
    def test_bad_spec_is_422_naming_the_field_and_stores_nothing(
        self, client: Any, case: str, override: dict[str, Any], loc: str, message: str
    ) -> None:
        body = problem(client.post(f"{API}/pipelines", json=pipeline_spec(**override)), 422)
        locs = [e["loc"] for e in body["errors"]]
        assert any(loc in found for found in locs), (locs, body)
        assert message.lower() in body["detail"].lower() + str(body["errors"]).lower()
        assert client.get(f"{API}/pipelines").json()["total"] == 0

    def test_invalid_yaml_is_422_on_body(self, client: Any) -> None:
        response = client.post(
            f"{API}/pipelines",
            content="name: [unclosed",
            headers={"content-type": "application/yaml"},
        )
        body = problem(response, 422)
        assert body["errors"][0]["loc"] == "body"
        assert "invalid YAML" in body["detail"]

    def test_non_mapping_body_is_422(self, client: Any) -> None:
        body = problem(client.post(f"{API}/pipelines", json=[1, 2]), 422)
        assert "mapping" in body["detail"]


class TestReadReplaceDelete:
    def test_get_unknown_is_404_problem(self, client: Any) -> None:
        body = problem(client.get(f"{API}/pipelines/nope"), 404)
        assert body["detail"] == "Pipeline nope does not exist"

    def test_list_is_paginated_by_name(self, client: Any) -> None:
        for name in ("b-pipe", "a-pipe", "c-pipe"):
            client.post(f"{API}/pipelines", json=pipeline_spec(name=name))
        page = client.get(f"{API}/pipelines", params={"limit": 2}).json()
        assert [p["name"] for p in page["items"]] == ["a-pipe", "b-pipe"]
        assert page["total"] == 3

    def test_put_creates_then_replaces(self, client: Any) -> None:
        url = f"{API}/pipelines/retrain-customer-model"
        created = client.put(url, json=pipeline_spec())
        assert created.status_code == 201
        assert created.json()["webhook_secret"].startswith("whsec_")
        changed = pipeline_spec(description="changed")
        response = client.put(url, json=changed)
        assert response.status_code == 200
        assert response.json()["description"] == "changed"
        assert "webhook_secret" not in response.json()

    def test_put_with_other_name_is_422(self, client: Any) -> None:
        client.put(f"{API}/pipelines/retrain-customer-model", json=pipeline_spec())
        body = problem(
            client.put(f"{API}/pipelines/retrain-customer-model", json=pipeline_spec(name="other")),
            422,
        )
        assert body["errors"][0]["loc"] == "name"

    def test_rejected_replace_keeps_old_spec(self, client: Any) -> None:
        url = f"{API}/pipelines/retrain-customer-model"
        client.put(url, json=pipeline_spec())
        problem(client.put(url, json=pipeline_spec(model={"estimator": "os.system"})), 422)
        assert client.get(url).json()["spec"]["model"]["estimator"].endswith("LogisticRegression")

    def test_delete(self, client: Any) -> None:
        client.post(f"{API}/pipelines", json=pipeline_spec())
        assert client.delete(f"{API}/pipelines/retrain-customer-model").status_code == 204
        problem(client.get(f"{API}/pipelines/retrain-customer-model"), 404)


class TestPauseAndStatus:
    def test_status_of_new_pipeline_is_never_run(self, client: Any) -> None:
        client.post(f"{API}/pipelines", json=pipeline_spec())
        status = client.get(f"{API}/pipelines/retrain-customer-model/status").json()
        assert status == {
            "name": "retrain-customer-model",
            "status": "never_run",
            "last_run_at": None,
            "error": None,
            "next_run_at": None,
            "production_version": None,
            "active_run_id": None,
        }

    def test_pause_and_resume(self, client: Any) -> None:
        client.post(f"{API}/pipelines", json=pipeline_spec())
        base = f"{API}/pipelines/retrain-customer-model"
        assert client.post(f"{base}/pause").json()["paused"] is True
        assert client.get(f"{base}/status").json()["status"] == "paused"
        assert client.post(f"{base}/resume").json()["paused"] is False
        assert client.get(f"{base}/status").json()["status"] == "never_run"

    def test_status_of_unknown_pipeline_is_404(self, client: Any) -> None:
        body = problem(client.get(f"{API}/pipelines/nope/status"), 404)
        assert body["detail"] == "Pipeline nope does not exist"


CRON_ERRORS = [
    ("0 24 * * *", "hour: 24 is out of range 0-23"),
    ("* * 0 0 *", "day of month: 0 is out of range 1-31"),
    ("0 0 0 * *", "day of month: 0 is out of range 1-31"),
    ("0 0 * * * *", "expected 5 fields"),
    ("every day", "expected 5 fields"),
    ("61 * * * *", "minute: 61 is out of range 0-59"),
]


class TestCronTriggers:
    @pytest.mark.parametrize(("schedule", "message"), CRON_ERRORS, ids=[c[0] for c in CRON_ERRORS])
    def test_invalid_cron_is_422_naming_the_field(
        self, client: Any, schedule: str, message: str
    ) -> None:
        spec = pipeline_spec(triggers=[{"kind": "cron", "schedule": schedule}])
        body = problem(client.post(f"{API}/pipelines", json=spec), 422)
        assert body["errors"][0]["loc"] == "triggers.0.cron.schedule"
        assert message in body["errors"][0]["msg"]

    def test_unknown_time_zone_is_422(self, client: Any) -> None:
        spec = pipeline_spec(
            triggers=[{"kind": "cron", "schedule": "0 0 * * *", "timezone": "Mars/Base"}]
        )
        body = problem(client.post(f"{API}/pipelines", json=spec), 422)
        assert body["errors"][0]["loc"] == "triggers.0.cron.timezone"

    def test_schedule_lists_next_fire_times_in_the_zone(self, client: Any) -> None:
        trigger = {"kind": "cron", "schedule": "30 2 * * *", "timezone": "Europe/Paris"}
        client.post(f"{API}/pipelines", json=pipeline_spec(triggers=[trigger]))
        runs = client.get(f"{API}/pipelines/retrain-customer-model/schedule", params={"count": 2})
        first, second = runs.json()["next_runs"]
        assert first[11:16] in ("00:30", "01:30")  # 02:30 Paris is 00:30 or 01:30 UTC
        assert second[11:16] in ("00:30", "01:30")
        status = client.get(f"{API}/pipelines/retrain-customer-model/status").json()
        assert status["next_run_at"] == first


class TestStoredSpecThatNoLongerLoads:
    """A spec an older release stored, which today's rules refuse: the API says which
    pipeline and field, the others work, and a PUT repairs it."""

    STALE = (
        "Pipeline other's stored spec no longer passes validation (evaluation.holdout_fraction:"
        " Input should be less than or equal to 0.9); replace it with a valid spec"
        " (PUT /api/v1/pipelines/other) or delete the pipeline"
    )

    @staticmethod
    def break_spec(session: Session) -> Pipeline:
        pipeline = pipelines.get(session=session, name="other")
        stale = dict(pipeline.spec)
        stale["evaluation"] = {**stale["evaluation"], "holdout_fraction": 0.95}
        pipeline.spec = stale
        return pipeline

    def test_reads_and_triggers_name_it_and_a_put_repairs_it(self, client: Any) -> None:
        for name in ("retrain-customer-model", "other"):
            assert client.post(f"{API}/pipelines", json=pipeline_spec(name=name)).status_code == 201
        with unit_of_work(client.app.state.services.factory) as session:
            self.break_spec(session)
        for method, path in [
            ("GET", "/pipelines"),
            ("GET", "/pipelines/other"),
            ("GET", "/pipelines/other/status"),
            ("POST", "/pipelines/other/runs"),
        ]:
            assert problem(client.request(method, f"{API}{path}"), 409)["detail"] == self.STALE
        assert client.get(f"{API}/pipelines/other/runs").json()["total"] == 0
        assert client.get(f"{API}/pipelines/retrain-customer-model").status_code == 200
        assert (
            client.put(f"{API}/pipelines/other", json=pipeline_spec(name="other")).status_code
            == 200
        )
        assert client.get(f"{API}/pipelines").json()["total"] == 2

    def test_a_queued_run_fails_at_once_with_the_reason(self, client: Any) -> None:
        assert client.post(f"{API}/pipelines", json=pipeline_spec(name="other")).status_code == 201
        services = client.app.state.services
        with unit_of_work(services.factory) as session:
            pipeline = self.break_spec(session)
            fire = runs.Fire(kind="manual", reason="manual")
            run_id = runs.fire(
                session=session, pipeline=pipeline, fire=fire, dispatch=services.executor.submit
            ).id
        run = wait_for_run(client, run_id)
        assert (run["status"], run["error"]) == ("failed", f"Cannot start: {self.STALE}")
        assert {step["status"] for step in run["steps"]} == {"skipped"}

    def test_a_run_whose_estimator_left_the_allow_list_fails_at_once(
        self, client: Any, settings: Settings, tmp_path: Path
    ) -> None:
        write_csv(tmp_path / "data" / "customers.csv", churn_frame())
        assert client.post(f"{API}/pipelines", json=pipeline_spec()).status_code == 201
        narrower = settings.model_copy(update={"allowed_estimators": ["sklearn.tree."]})
        with TestClient(create_app(narrower)) as restarted:
            queued = restarted.post(f"{API}/pipelines/retrain-customer-model/runs")
            run = wait_for_run(restarted, queued.json()["id"])
        assert (run["status"], run["error"]) == (
            "failed",
            "Cannot start: 'sklearn.linear_model.LogisticRegression' is not an allowed estimator"
            " (allowed: sklearn.tree.*)",
        )
