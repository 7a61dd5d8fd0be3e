"""API keys and roles: every route but the few open ones needs a key, a key's role bounds
what it may do, keys are shown once and kept only as hashes, revocation bites on the very
next request; MLOPS_ADMIN_TOKEN and MLOPS_AUTH=disabled do what they say."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from pydantic import ValidationError
from sqlalchemy import create_engine, text

from app.auth.roles import Role
from app.core.settings import Settings
from app.main import create_app
from tests.conftest import TestClient
from tests.factories import churn_frame, pipeline_spec
from tests.server import ADMIN_TOKEN

API = "/api/v1"
KEY = re.compile(r"mlops_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")
PARAMS = {
    "name": "no-such-pipeline",
    "version": "1",
    "run_id": "999999",
    "key_id": "999999",
    "subscription_id": "999999",
}
# Authorization headers that must all be refused: a made-up key, a well-formed unknown one,
# the test admin token with a character added, another scheme, a scheme with no key.
WRONG = [
    "Bearer nonsense",
    "Bearer mlops_000000000000_" + "A" * 43,
    f"Bearer {ADMIN_TOKEN}x",
    "Basic dXNlcjpwYXNz",
    "Bearer",
]

# Open without a key: liveness, readiness, the docs, and the new-data webhook, whose
# per-pipeline HMAC signature is its credential.
OPEN = {
    ("GET", "/"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("POST", f"{API}/pipelines/{{name}}/data"),
}
# The dashboard: its own login (an API key opens a session cookie); pages need a session,
# and its forms the role the same action needs in the API (tests/test_ui.py).
DASHBOARD = {
    ("GET", "/ui/login"),
    ("POST", "/ui/login"),
    ("POST", "/ui/logout"),
    ("GET", "/ui"),
    ("GET", "/ui/pipelines/{name}"),
    ("GET", "/ui/runs/{run_id}"),
    ("GET", "/ui/runs/{run_id}/live"),
    ("POST", "/ui/pipelines/{name}/run"),
    ("POST", "/ui/pipelines/{name}/pause"),
    ("POST", "/ui/pipelines/{name}/resume"),
    ("POST", "/ui/pipelines/{name}/promote"),
    ("POST", "/ui/pipelines/{name}/rollback"),
    ("POST", "/ui/runs/{run_id}/cancel"),
}
# The least role each route needs. A new route fails test_every_route_declares_a_role until
# it is listed here: adding a route means deciding who may call it.
ROLES: dict[tuple[str, str], Role] = {
    ("GET", "/metrics"): Role.viewer,
    ("GET", f"{API}/pipelines"): Role.viewer,
    ("GET", f"{API}/pipelines/{{name}}"): Role.viewer,
    ("GET", f"{API}/pipelines/{{name}}/schedule"): Role.viewer,
    ("GET", f"{API}/pipelines/{{name}}/status"): Role.viewer,
    ("GET", f"{API}/pipelines/{{name}}/runs"): Role.viewer,
    ("GET", f"{API}/runs/{{run_id}}"): Role.viewer,
    ("GET", f"{API}/pipelines/{{name}}/models"): Role.viewer,
    ("GET", f"{API}/pipelines/{{name}}/models/{{version}}"): Role.viewer,
    ("GET", f"{API}/pipelines/{{name}}/models/{{version}}/artifact"): Role.viewer,
    ("GET", f"{API}/pipelines/{{name}}/promotions"): Role.viewer,
    ("POST", f"{API}/pipelines/{{name}}/predict"): Role.viewer,
    ("POST", f"{API}/pipelines/{{name}}/runs"): Role.operator,
    ("POST", f"{API}/runs/{{run_id}}/cancel"): Role.operator,
    ("POST", f"{API}/pipelines/{{name}}/metrics"): Role.operator,
    ("POST", f"{API}/pipelines/{{name}}/models/{{version}}/promote"): Role.operator,
    ("POST", f"{API}/pipelines/{{name}}/rollback"): Role.operator,
    ("POST", f"{API}/pipelines/{{name}}/pause"): Role.operator,
    ("POST", f"{API}/pipelines/{{name}}/resume"): Role.operator,
    ("POST", f"{API}/pipelines"): Role.admin,
    ("PUT", f"{API}/pipelines/{{name}}"): Role.admin,
    ("DELETE", f"{API}/pipelines/{{name}}"): Role.admin,
    ("POST", f"{API}/pipelines/{{name}}/webhook-secret/rotate"): Role.admin,
    ("POST", f"{API}/keys"): Role.admin,
    ("GET", f"{API}/keys"): Role.admin,
    ("DELETE", f"{API}/keys/{{key_id}}"): Role.admin,
    ("POST", f"{API}/prune"): Role.admin,
    ("GET", f"{API}/audit"): Role.admin,
    ("POST", f"{API}/subscriptions"): Role.admin,
    ("GET", f"{API}/subscriptions"): Role.admin,
    ("GET", f"{API}/subscriptions/{{subscription_id}}"): Role.admin,
    ("DELETE", f"{API}/subscriptions/{{subscription_id}}"): Role.admin,
    ("POST", f"{API}/subscriptions/{{subscription_id}}/rotate-secret"): Role.admin,
    ("GET", f"{API}/subscriptions/{{subscription_id}}/deliveries"): Role.admin,
}
# POSTs that change nothing: a prediction reads the production model, so the services that
# ask for predictions need no power to trigger, promote or roll back.
READS_BY_POST = {("POST", f"{API}/pipelines/{{name}}/predict")}


def routes(app: Any) -> set[tuple[str, str]]:
    """Every (method, path) the app serves, HEAD aside."""
    found = set()
    for context in iter_route_contexts(app.routes):
        for method in (context.methods or set()) - {"HEAD"}:
            found.add((method, str(context.path)))
    return found


def call(client: Any, method: str, path: str, key: str | None, **kwargs: Any) -> Any:
    """One request sending `key` as its bearer token, or no Authorization header at all."""
    return send(client, method, path, None if key is None else f"Bearer {key}", **kwargs)


def send(client: Any, method: str, path: str, authorization: str | None, **kwargs: Any) -> Any:
    """One request with exactly this Authorization header (or none); path params filled in."""
    request = client.build_request(method, path.format(**PARAMS), **kwargs)
    del request.headers["authorization"]
    if authorization is not None:
        request.headers["authorization"] = authorization
    return client.send(request)


def make_key(client: Any, role: str, name: str | None = None) -> dict[str, Any]:
    response = client.post(f"{API}/keys", json={"name": name or f"{role}-key", "role": role})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.request.url, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


class TestEveryRoute:
    def test_every_route_declares_a_role(self, client: Any) -> None:
        assert routes(client.app) == set(ROLES) | OPEN | DASHBOARD
        documented = {
            (method.upper(), path)
            for path, item in client.app.openapi()["paths"].items()
            for method in item
        }
        assert documented <= set(ROLES) | OPEN

    def test_mutating_routes_need_more_than_viewer(self) -> None:
        for route, role in ROLES.items():
            if route[0] != "GET" and route not in READS_BY_POST:
                assert role is not Role.viewer, route

    def test_no_key_or_a_wrong_key_is_401(self, client: Any) -> None:
        for method, path in ROLES:
            for authorization in [None, *WRONG]:
                response = send(client, method, path, authorization)
                body = assert_problem(response, 401)
                assert response.headers["www-authenticate"].startswith("Bearer"), path
                assert "key" in body["detail"]

    def test_viewer_is_refused_every_mutating_route(self, client: Any) -> None:
        viewer = make_key(client, "viewer")["key"]
        mutating = [r for r in ROLES if r[0] != "GET" and r not in READS_BY_POST]
        assert len(mutating) >= 13
        for method, path in mutating:
            body = assert_problem(call(client, method, path, viewer), 403)
            assert body["role"] == "viewer"
            assert body["required_role"] == ROLES[(method, path)]

    def test_each_route_refuses_the_roles_below_its_own_and_admits_its_own(
        self, client: Any
    ) -> None:
        keys = {role: make_key(client, role)["key"] for role in Role}
        for (method, path), needed in ROLES.items():
            for role, key in keys.items():
                status = call(client, method, path, key).status_code
                if role.allows(needed):
                    assert status not in (401, 403), (method, path, role)
                else:
                    assert status == 403, (method, path, role)

    def test_open_routes_answer_without_a_key(self, client: Any) -> None:
        for path in ["/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect"]:
            assert call(client, "GET", path, None).status_code == 200, path
        asset = "/static/swagger-ui/swagger-ui-bundle.js"
        assert call(client, "GET", asset, None).status_code == 200

    def test_data_webhook_needs_its_signature_not_a_key(self, client: Any) -> None:
        spec = pipeline_spec("signed", source={"kind": "ingested"})
        secret = client.post(f"{API}/pipelines", json=spec).json()["webhook_secret"]
        body = json.dumps({"records": churn_frame(5).to_dict(orient="records")}).encode()
        t = int(time.time())
        v1 = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        headers = {"content-type": "application/json", "x-mlops-signature": f"t={t},v1={v1}"}
        path = f"{API}/pipelines/signed/data"
        accepted = call(client, "POST", path, None, content=body, headers=headers)
        assert accepted.status_code == 202, accepted.text
        unsigned = call(client, "POST", path, None, content=body, headers={"x-a": "b"})
        assert assert_problem(unsigned, 401)["title"] == "Invalid webhook signature"


class TestRoles:
    def test_operator_runs_pipelines_but_does_not_change_them(self, client: Any) -> None:
        assert client.post(f"{API}/pipelines", json=pipeline_spec()).status_code == 201
        operator = make_key(client, "operator")["key"]
        name = "retrain-customer-model"
        assert call(client, "POST", f"{API}/pipelines/{name}/pause", operator).status_code == 200
        assert call(client, "POST", f"{API}/pipelines/{name}/resume", operator).status_code == 200
        observations = {"observations": [{"metric": "accuracy", "value": 0.9}]}
        posted = call(
            client, "POST", f"{API}/pipelines/{name}/metrics", operator, json=observations
        )
        assert posted.status_code == 202
        spec = pipeline_spec(description="changed by an operator")
        assert (
            call(client, "PUT", f"{API}/pipelines/{name}", operator, json=spec).status_code == 403
        )
        assert call(client, "DELETE", f"{API}/pipelines/{name}", operator).status_code == 403
        rotate = f"{API}/pipelines/{name}/webhook-secret/rotate"
        assert call(client, "POST", rotate, operator).status_code == 403
        assert call(client, "GET", f"{API}/keys", operator).status_code == 403

    def test_viewer_reads_but_does_not_act(self, client: Any) -> None:
        assert client.post(f"{API}/pipelines", json=pipeline_spec()).status_code == 201
        viewer = make_key(client, "viewer", "dashboard")
        base = f"{API}/pipelines/retrain-customer-model"
        assert call(client, "GET", f"{base}/status", viewer["key"]).status_code == 200
        assert call(client, "GET", "/metrics", viewer["key"]).status_code == 200
        body = assert_problem(call(client, "POST", f"{base}/runs", viewer["key"]), 403)
        expected = f"This needs the operator role; dashboard (key {viewer['id']}) has viewer"
        assert body["detail"] == expected


class TestKeys:
    def test_key_is_shown_once_and_stored_as_its_hash(self, client: Any, settings: Any) -> None:
        created = make_key(client, "operator", "ci-deployer")
        key = created["key"]
        assert KEY.fullmatch(key)
        assert {"id", "name", "role", "key"} <= created.keys()
        assert created["prefix"] == key[:18]
        listed = client.get(f"{API}/keys").json()["items"]
        assert listed == [{k: v for k, v in created.items() if k != "key"}]
        assert key not in json.dumps(listed)
        engine = create_engine(settings.database_url)
        with engine.connect() as connection:
            row = connection.execute(text("SELECT * FROM api_keys")).mappings().one()
        engine.dispose()
        assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
        assert not any(key in str(value) for value in row.values())

    def test_keys_carry_256_random_bits(self, client: Any) -> None:
        keys = {make_key(client, "viewer", f"k{i}")["key"] for i in range(5)}
        assert len(keys) == 5
        assert all(len(key.split("_", 2)[2]) == 43 for key in keys)  # 32 bytes, base64url

    def test_revocation_takes_effect_on_the_next_request(self, client: Any) -> None:
        created = make_key(client, "viewer", "leaked")
        assert call(client, "GET", f"{API}/pipelines", created["key"]).status_code == 200
        assert client.delete(f"{API}/keys/{created['id']}").status_code == 204
        refused = call(client, "GET", f"{API}/pipelines", created["key"])
        assert (
            assert_problem(refused, 401)["detail"]
            == f"API key {created['id']} (leaked) was revoked"
        )
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        listed = client.get(f"{API}/keys").json()["items"][0]
        assert listed["revoked_at"] is not None
        assert listed["revoked_by"] == "admin token (MLOPS_ADMIN_TOKEN)"
        assert client.delete(f"{API}/keys/{created['id']}").status_code == 204  # idempotent

    def test_the_last_active_admin_key_cannot_be_revoked(self, client: Any) -> None:
        first = make_key(client, "admin", "first-admin")
        refused = client.delete(f"{API}/keys/{first['id']}")
        assert "last active admin key" in assert_problem(refused, 409)["detail"]
        make_key(client, "admin", "second-admin")
        assert client.delete(f"{API}/keys/{first['id']}").status_code == 204

    def test_unknown_key_is_404_and_bad_requests_are_422(self, client: Any) -> None:
        assert_problem(client.delete(f"{API}/keys/424242"), 404)
        for body in [
            {"name": "a/b", "role": "viewer"},
            {"name": "ok", "role": "root"},
            {"name": "", "role": "viewer"},
            {"name": "ok", "role": "viewer", "extra": 1},
        ]:
            assert_problem(client.post(f"{API}/keys", json=body), 422)

    def test_last_use_is_recorded_without_a_write_per_request(self, client: Any) -> None:
        used, unused = make_key(client, "viewer", "used"), make_key(client, "viewer", "unused")
        for _ in range(3):
            assert call(client, "GET", f"{API}/pipelines", used["key"]).status_code == 200
        assert all(
            item["last_used_at"] is None for item in client.get(f"{API}/keys").json()["items"]
        )
        client.app.state.services.key_usage.flush()
        seen = {
            item["name"]: item["last_used_at"] for item in client.get(f"{API}/keys").json()["items"]
        }
        assert seen["used"] is not None
        assert seen["unused"] is None
        assert unused["id"] != used["id"]


def test_a_key_lookup_leaves_the_pooled_connection_as_the_engine_set_it(client: Any) -> None:
    # SQLite: the engine runs transactions itself (isolation_level None); a lookup that reset
    # its pooled connection to pysqlite's own handling would break SAVEPOINTs. PostgreSQL:
    # the lookup runs in autocommit, which must not stay on for the next user.
    engine = client.app.state.services.engine
    key = make_key(client, "viewer")["key"]
    engine.dispose()  # one pooled connection from here on: the lookup's
    assert call(client, "GET", f"{API}/pipelines", key).status_code == 200
    with engine.connect() as connection:
        dbapi = connection.connection.dbapi_connection
        if engine.dialect.name == "sqlite":
            assert dbapi.isolation_level is None
        else:
            assert dbapi.autocommit is False


class TestAdminToken:
    def test_configured_token_is_an_admin_without_a_row_or_a_file(
        self, client: Any, settings: Settings
    ) -> None:
        assert client.get(f"{API}/keys").json()["total"] == 0
        assert not (settings.data_dir / "admin-token").exists()
        created = make_key(client, "viewer")
        assert created["created_by"] == "admin token (MLOPS_ADMIN_TOKEN)"

    def test_a_short_token_is_refused_without_being_echoed(self) -> None:
        with pytest.raises(ValidationError) as caught:
            Settings(admin_token="hunter2-is-short")
        assert "at least 32 characters" in str(caught.value)
        assert "hunter2" not in str(caught.value)


class TestAuthDisabled:
    def test_every_request_is_an_anonymous_admin_and_each_start_warns(
        self, settings: Settings, caplog: pytest.LogCaptureFixture
    ) -> None:
        disabled = settings.model_copy(update={"auth": "disabled", "admin_token": None})
        for _ in range(2):
            caplog.clear()
            with caplog.at_level(logging.WARNING), TestClient(create_app(disabled)) as client:
                client.headers.pop("Authorization")
                response = client.post(f"{API}/keys", json={"name": "x", "role": "viewer"})
                assert response.status_code == 201
                assert response.json()["created_by"] == "anonymous (auth disabled)"
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert any("MLOPS_AUTH=disabled" in message for message in warnings)
        assert not (settings.data_dir / "admin-token").exists()


def test_unauthorized_answers_over_real_http(server: Any) -> None:
    """The 401 a real client sees: problem+json and a Bearer challenge, from uvicorn."""
    server.start()
    response = httpx.get(f"{server.url}{API}/pipelines")
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == 'Bearer realm="mlops"'
    with server.api() as api:
        assert api.get("/pipelines").status_code == 200
