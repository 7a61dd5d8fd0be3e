"""The dashboard in a real browser (Debian's Chromium via Playwright) against a real
`mlops serve --demo` with authentication on: login, the pipeline list, the charts, "Run now",
roles, CSRF, session expiry and logout. No request may leave the machine (tests/browser.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser import demo_server
from tests.server import Server

DEMO = "breast-cancer-demo"
FINAL = ("completed", "failed", "rejected", "awaiting_approval", "cancelled")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = demo_server(tmp_path_factory)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def keys(server: Server) -> dict[str, str]:
    """An operator and a viewer key, made over the API as an admin would."""
    with server.api() as api:
        return {
            role: api.post("/keys", json={"name": f"{role}-browser", "role": role}).json()["key"]
            for role in ("operator", "viewer")
        }


def log_in(page: Page, server: Server, key: str) -> None:
    page.goto(f"{server.url}/ui")
    expect(page).to_have_url(f"{server.url}/ui/login")
    page.locator('input[name="key"]').fill(key)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{server.url}/ui")


def session_cookie(context: BrowserContext) -> dict[str, Any]:
    return next(dict(c) for c in context.cookies() if c["name"] == "mlops_ui")


def test_login_opens_a_session_and_lists_the_pipelines(
    page: Page, context: BrowserContext, server: Server, keys: dict[str, str]
) -> None:
    log_in(page, server, keys["operator"])
    cookie = session_cookie(context)
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    lifetime = datetime.fromtimestamp(cookie["expires"], UTC) - datetime.now(UTC)
    assert timedelta(hours=7, minutes=59) < lifetime <= timedelta(hours=8)
    row = page.locator(f'tr[data-pipeline="{DEMO}"]')
    expect(row.locator(".badge")).to_be_visible()
    expect(row.locator(".chip")).to_have_text(["cron"])
    expect(row).to_contain_text("03:00:00")  # next run of its 0 3 * * * trigger
    expect(page.locator(".who")).to_contain_text("operator-browser")


def test_a_wrong_key_stays_on_the_login_form(page: Page, server: Server) -> None:
    page.goto(f"{server.url}/ui/login")
    page.locator('input[name="key"]').fill("not-a-key")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("Invalid API key")
    page.goto(f"{server.url}/ui")
    expect(page).to_have_url(f"{server.url}/ui/login")


def test_run_now_makes_a_run_that_goes_live_to_its_end(
    page: Page, server: Server, keys: dict[str, str]
) -> None:
    log_in(page, server, keys["operator"])
    page.get_by_role("link", name=DEMO).click()
    page.get_by_role("button", name="Run now", exact=True).click()
    page.wait_for_url(f"{server.url}/ui/runs/*")
    run_id = int(page.url.rsplit("/", 1)[1])
    with server.api() as api:
        run = api.get(f"/runs/{run_id}").json()
    assert run["pipeline"] == DEMO
    assert run["trigger"]["kind"] == "manual"
    assert run["actor"].startswith("operator-browser (key ")
    # The page follows the run by itself (polling) until it ends.
    live = page.locator("#run-live")
    expect(live).to_have_attribute("data-status", "completed", timeout=60_000)
    expect(live.locator('[data-step="deploy"] .badge')).to_have_text("completed")
    expect(live.locator(".metrics")).to_contain_text("candidate")


def test_the_pipeline_page_draws_the_gate_chart_with_labelled_axes(
    page: Page, server: Server, keys: dict[str, str]
) -> None:
    _wait_for_a_version(server)
    log_in(page, server, keys["viewer"])
    page.goto(f"{server.url}/ui/pipelines/{DEMO}")
    chart = page.locator("#gate-chart svg.chart")
    expect(chart).to_be_visible()
    expect(chart.locator("text.x-label")).to_have_text("model version")
    expect(chart.locator("text.y-label")).to_have_text("accuracy on the holdout")
    expect(chart.locator("text.rule-label")).to_have_text("min_score 0.9")
    expect(chart.locator("circle.current")).to_have_count(1)
    expect(page.locator("table.versions")).to_contain_text("production")
    expect(page.locator("table.ledger")).to_contain_text("promote")


def test_the_monitored_metric_chart_shows_each_threshold(
    page: Page, server: Server, keys: dict[str, str]
) -> None:
    with server.api() as api:
        spec = api.get(f"/pipelines/{DEMO}").json()["spec"]
        spec["triggers"] = [
            *spec["triggers"],
            {"kind": "metric", "metric": "accuracy", "operator": "<", "threshold": 0.8},
            {
                "kind": "metric",
                "metric": "accuracy",
                "operator": "<",
                "threshold": 0.7,
                "aggregate": "min",
            },
        ]
        assert api.put(f"/pipelines/{DEMO}", json=spec).status_code == 200
        values = [{"metric": "accuracy", "value": 0.9 + i / 100} for i in range(5)]
        assert (
            api.post(f"/pipelines/{DEMO}/metrics", json={"observations": values}).status_code == 202
        )
    log_in(page, server, keys["viewer"])
    page.goto(f"{server.url}/ui/pipelines/{DEMO}")
    chart = page.locator(".metric-chart svg.chart")
    expect(chart.locator("circle")).to_have_count(5)
    expect(chart.locator("text.rule-label")).to_have_text(["mean < 0.8", "min < 0.7"])
    expect(chart.locator("text.x-label")).to_have_text("observed at (UTC)")
    expect(chart.locator("text.y-label")).to_have_text("accuracy")


def test_a_viewer_sees_no_action_and_a_forged_post_is_refused(
    page: Page, context: BrowserContext, server: Server, keys: dict[str, str]
) -> None:
    log_in(page, server, keys["viewer"])
    page.goto(f"{server.url}/ui/pipelines/{DEMO}")
    expect(page.locator("h1")).to_contain_text(DEMO)
    for name in ["Run now", "Pause", "Resume", "Promote", "Roll back", "Cancel"]:
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
    before = _runs(server)
    csrf = page.locator('form[action="/ui/logout"] input[name="csrf"]').input_value()
    response = context.request.post(
        f"{server.url}/ui/pipelines/{DEMO}/run", form={"csrf": csrf}, max_redirects=0
    )
    assert response.status == 403
    assert "needs the operator role" in response.text()
    assert _runs(server) == before


def test_a_post_without_the_csrf_token_is_refused(
    page: Page, context: BrowserContext, server: Server, keys: dict[str, str]
) -> None:
    log_in(page, server, keys["operator"])
    before = _runs(server)
    response = context.request.post(
        f"{server.url}/ui/pipelines/{DEMO}/pause", form={}, max_redirects=0
    )
    assert response.status == 403
    assert "CSRF" in response.text()
    with server.api() as api:
        assert api.get(f"/pipelines/{DEMO}").json()["paused"] is False
    assert _runs(server) == before


def test_logout_ends_the_session(
    page: Page, context: BrowserContext, server: Server, keys: dict[str, str]
) -> None:
    log_in(page, server, keys["operator"])
    copy = session_cookie(context)
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{server.url}/ui/login")
    page.goto(f"{server.url}/ui")
    expect(page).to_have_url(f"{server.url}/ui/login")
    context.add_cookies([copy])  # a copy kept from before: ended on the server too
    page.goto(f"{server.url}/ui")
    expect(page).to_have_url(f"{server.url}/ui/login")


def test_the_session_expires(
    tmp_path_factory: pytest.TempPathFactory, page: Page, context: BrowserContext
) -> None:
    short = demo_server(tmp_path_factory, MLOPS_UI_SESSION_S="3")
    try:
        assert short.token is not None
        log_in(page, short, short.token)
        copy = session_cookie(context)
        page.goto(f"{short.url}/ui/pipelines/{DEMO}")
        expect(page.locator("h1")).to_contain_text(DEMO)
        page.wait_for_timeout(4_500)
        page.goto(f"{short.url}/ui")
        expect(page).to_have_url(f"{short.url}/ui/login")
        context.add_cookies([copy])  # even if the browser had kept it, the server refuses it
        page.goto(f"{short.url}/ui")
        expect(page).to_have_url(f"{short.url}/ui/login")
    finally:
        short.stop()


def _runs(server: Server) -> int:
    with server.api() as api:
        total: int = api.get(f"/pipelines/{DEMO}/runs").json()["total"]
        return total


def _wait_for_a_version(server: Server) -> None:
    """A finished run with a version: the one "Run now" made, or a new one."""
    with server.api() as api:
        if api.get(f"/pipelines/{DEMO}/models").json():
            return
        run = api.post(f"/pipelines/{DEMO}/runs").json()
        deadline = datetime.now(UTC) + timedelta(seconds=60)
        while api.get(f"/runs/{run['id']}").json()["status"] not in FINAL:
            assert datetime.now(UTC) < deadline
            time.sleep(0.2)
