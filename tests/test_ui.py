"""The dashboard over HTTP (in-process, SQLite and PostgreSQL): login and its cookie, CSRF,
roles as in the API, logout and expiry ending the session, and the pipeline list at scale.
The same behaviours in a real browser: tests/test_browser_ui.py."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from sqlalchemy import create_engine, insert

from app.core.settings import Settings
from app.main import create_app
from app.pipelines.models import Pipeline
from tests.conftest import TestClient
from tests.factories import pipeline_spec
from tests.server import ADMIN_TOKEN
from tests.test_auth import make_key

API = "/api/v1"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def login(client: Any, key: str) -> Any:
    """Post the login form as a browser would (its CSRF token from the form page)."""
    form = client.get("/ui/login")
    assert form.status_code == 200
    csrf = CSRF.search(form.text)
    assert csrf is not None
    return client.post(
        "/ui/login", data={"csrf": csrf.group(1), "key": key}, follow_redirects=False
    )


def csrf_of(client: Any, path: str = "/ui") -> str:
    found = CSRF.search(client.get(path).text)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


def runs_of(client: Any, name: str) -> int:
    total: int = client.get(f"{API}/pipelines/{name}/runs").json()["total"]
    return total


@pytest.fixture
def pipeline(client: Any) -> str:
    assert client.post(f"{API}/pipelines", json=pipeline_spec("churn")).status_code == 201
    return "churn"


class TestLogin:
    def test_pages_need_a_session(self, client: Any) -> None:
        for path in ["/ui", "/ui/pipelines/churn", "/ui/runs/1", "/ui/runs/1/live"]:
            response = client.get(path, follow_redirects=False)
            assert response.status_code == 303, path
            assert response.headers["location"] == "/ui/login"

    def test_the_form_takes_an_api_key_in_a_password_field_named_key(self, client: Any) -> None:
        html = client.get("/ui/login").text
        assert re.search(r'<input id="key" name="key" type="password"', html)

    def test_a_key_opens_a_signed_httponly_strict_expiring_session(self, client: Any) -> None:
        response = login(client, ADMIN_TOKEN)
        assert response.status_code == 303
        assert response.headers["location"] == "/ui"
        cookie = next(
            c for c in response.headers.get_list("set-cookie") if c.startswith("mlops_ui=")
        )
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"httponly", "max-age", "path"} <= attributes
        assert "samesite=strict" in cookie.lower()
        assert "Max-Age=28800" in cookie  # MLOPS_UI_SESSION_S, 8 h by default
        assert client.get("/ui").status_code == 200

    def test_a_wrong_key_is_refused(self, client: Any) -> None:
        response = login(client, "mlops_000000000000_" + "A" * 43)
        assert response.status_code == 401
        assert "Invalid API key" in response.text
        assert client.get("/ui", follow_redirects=False).status_code == 303

    def test_the_login_form_needs_its_csrf_token(self, client: Any) -> None:
        client.get("/ui/login")
        response = client.post("/ui/login", data={"key": ADMIN_TOKEN}, follow_redirects=False)
        assert response.status_code == 403
        assert client.get("/ui", follow_redirects=False).status_code == 303

    def test_a_forged_cookie_is_no_session(self, client: Any) -> None:
        client.cookies.set("mlops_ui", "eyJmb3JnZWQiOnRydWV9.abc.def", path="/ui")
        assert client.get("/ui", follow_redirects=False).status_code == 303


class TestSessionEnds:
    def test_logout_ends_it_even_for_a_copy_of_the_cookie(self, client: Any) -> None:
        login(client, ADMIN_TOKEN)
        copy = client.cookies.get("mlops_ui")
        response = client.post("/ui/logout", data={"csrf": csrf_of(client)}, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/ui/login"
        assert client.get("/ui", follow_redirects=False).status_code == 303
        client.cookies.set("mlops_ui", copy, path="/ui")
        assert client.get("/ui", follow_redirects=False).status_code == 303

    def test_revoking_the_key_ends_its_sessions(self, client: Any) -> None:
        key = make_key(client, "operator")
        login(client, key["key"])
        assert client.get("/ui").status_code == 200
        assert client.delete(f"{API}/keys/{key['id']}").status_code in (200, 204)
        assert client.get("/ui", follow_redirects=False).status_code == 303

    def test_it_expires_after_mlops_ui_session_s(self, settings: Settings) -> None:
        short = settings.model_copy(update={"ui_session_s": 1.0})
        with TestClient(create_app(short)) as client:
            assert login(client, ADMIN_TOKEN).status_code == 303
            copy = client.cookies.get("mlops_ui")
            assert client.get("/ui").status_code == 200
            time.sleep(2.1)
            client.cookies.set("mlops_ui", copy, path="/ui")  # a browser would have dropped it
            assert client.get("/ui", follow_redirects=False).status_code == 303


class TestActions:
    def test_run_now_makes_a_manual_run_by_the_logged_in_key(
        self, client: Any, pipeline: str
    ) -> None:
        key = make_key(client, "operator", "night-shift")
        login(client, key["key"])
        csrf = csrf_of(client, f"/ui/pipelines/{pipeline}")
        response = client.post(
            f"/ui/pipelines/{pipeline}/run", data={"csrf": csrf}, follow_redirects=False
        )
        assert response.status_code == 303
        run_id = int(response.headers["location"].rsplit("/", 1)[1])
        run = client.get(f"{API}/runs/{run_id}").json()
        assert run["trigger"] == {"kind": "manual", "reason": "manual"}
        assert run["actor"] == f"night-shift (key {key['id']})"
        audit = client.get(f"{API}/audit", params={"action": "run.trigger"}).json()["items"]
        assert audit[0]["actor"] == "night-shift"

    def test_a_post_without_the_csrf_token_is_refused(self, client: Any, pipeline: str) -> None:
        login(client, ADMIN_TOKEN)
        for data in [{}, {"csrf": "x" * 64}]:
            response = client.post(f"/ui/pipelines/{pipeline}/run", data=data)
            assert response.status_code == 403
            assert "CSRF" in response.text
        assert runs_of(client, pipeline) == 0

    def test_a_viewer_sees_no_action_and_is_refused_one(self, client: Any, pipeline: str) -> None:
        login(client, make_key(client, "viewer")["key"])
        html = client.get(f"/ui/pipelines/{pipeline}").text
        assert "Run now" not in html
        assert f"/ui/pipelines/{pipeline}/pause" not in html
        csrf = csrf_of(client)  # the viewer's own token: only the role is missing
        for action in ["run", "pause", "resume", "rollback", "promote"]:
            response = client.post(f"/ui/pipelines/{pipeline}/{action}", data={"csrf": csrf})
            assert response.status_code == 403, action
            assert "needs the operator role" in response.text
        assert client.post("/ui/runs/1/cancel", data={"csrf": csrf}).status_code == 403
        assert runs_of(client, pipeline) == 0
        assert client.get(f"{API}/pipelines/{pipeline}").json()["paused"] is False

    def test_pause_and_resume_are_audited_as_in_the_api(self, client: Any, pipeline: str) -> None:
        login(client, ADMIN_TOKEN)
        csrf = csrf_of(client)
        client.post(f"/ui/pipelines/{pipeline}/pause", data={"csrf": csrf})
        assert client.get(f"{API}/pipelines/{pipeline}").json()["paused"] is True
        client.post(f"/ui/pipelines/{pipeline}/resume", data={"csrf": csrf})
        assert client.get(f"{API}/pipelines/{pipeline}").json()["paused"] is False
        actions = [e["action"] for e in client.get(f"{API}/audit").json()["items"]]
        assert actions[:2] == ["pipeline.resume", "pipeline.pause"]

    def test_a_refused_action_says_why_and_changes_nothing(
        self, client: Any, pipeline: str
    ) -> None:
        login(client, ADMIN_TOKEN)
        csrf = csrf_of(client)
        response = client.post(f"/ui/pipelines/{pipeline}/rollback", data={"csrf": csrf})
        assert response.status_code == 409
        assert "has no production version to roll back" in response.text
        response = client.post(
            f"/ui/pipelines/{pipeline}/promote", data={"csrf": csrf, "version": "x"}
        )
        assert response.status_code == 422
        assert "version: must be a version number" in response.text


def test_without_auth_the_dashboard_needs_no_login(settings: Settings) -> None:
    open_settings = settings.model_copy(update={"auth": "disabled"})
    with TestClient(create_app(open_settings)) as client:
        assert client.get("/ui").status_code == 200
        assert "Run now" not in client.get("/ui").text  # the list has no action buttons
        client.post(f"{API}/pipelines", json=pipeline_spec("open"))
        csrf = csrf_of(client, "/ui/pipelines/open")
        response = client.post("/ui/pipelines/open/run", data={"csrf": csrf})
        assert response.status_code == 200  # followed to the run page
        assert runs_of(client, "open") == 1


class TestPipelineList:
    def test_shows_status_production_paused_and_trigger_kinds(
        self, client: Any, pipeline: str
    ) -> None:
        triggers = [{"kind": "interval", "every_s": 3600}, {"kind": "new_data", "min_rows": 10}]
        client.post(f"{API}/pipelines", json=pipeline_spec("timed", triggers=triggers))
        login(client, ADMIN_TOKEN)
        html = client.get("/ui").text
        row = html[html.index('data-pipeline="timed"') :].split("</tr>")[0]
        assert "never run" in row
        assert '<span class="chip">interval</span><span class="chip">new_data</span>' in row

    def test_10k_pipelines_page_and_filter_by_name_quickly(
        self, client: Any, settings: Settings
    ) -> None:
        spec = pipeline_spec("x")
        rows = [
            {
                "name": f"bulk-{i:05d}",
                "spec": {**spec, "name": f"bulk-{i:05d}"},
                "webhook_secret": "s",
            }
            for i in range(10_000)
        ]
        engine = create_engine(settings.resolved_database_url)
        with engine.begin() as connection:
            connection.execute(insert(Pipeline), rows)
        engine.dispose()
        login(client, ADMIN_TOKEN)
        started = time.monotonic()
        last = client.get("/ui", params={"page": 200})
        took = time.monotonic() - started
        assert last.status_code == 200
        assert last.text.count('data-pipeline="') == 50
        assert "Page 200 of 200" in last.text
        assert took < 3, took
        found = client.get("/ui", params={"q": "bulk-0999"}).text
        assert found.count('data-pipeline="') == 10  # bulk-09990 … bulk-09999
        assert client.get("/ui", params={"q": "%"}).text.count('data-pipeline="') == 0
