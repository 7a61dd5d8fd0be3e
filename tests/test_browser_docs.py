"""Swagger UI in a real browser: it renders the OpenAPI 3.1 schema, every operation is on the
page, and "Authorize" + "Try it out" call the running service with an API key."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser import demo_server
from tests.server import Server

METHODS = {"get", "put", "post", "delete", "patch"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = demo_server(tmp_path_factory)
    yield started
    started.stop()


def _operations(server: Server) -> set[tuple[str, str]]:
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert schema["openapi"].startswith("3.1")
    return {
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method in METHODS
    }


def _rendered(page: Page) -> set[tuple[str, str]]:
    blocks = page.locator(".opblock .opblock-summary")
    methods = blocks.locator(".opblock-summary-method").all_inner_texts()
    paths = blocks.locator(".opblock-summary-path").all_inner_texts()
    return {
        (m.strip(), p.strip().replace("\u200b", "")) for m, p in zip(methods, paths, strict=True)
    }


def test_renders_every_operation(page: Page, server: Server) -> None:
    page.goto(f"{server.url}/docs")
    expect(page.locator(".opblock").first).to_be_visible()
    assert page.locator(".errors-wrapper").count() == 0
    assert "Unable to render" not in page.content()
    expected = _operations(server)
    assert page.locator(".opblock").count() == len(expected)
    assert _rendered(page) == expected


def _authorize(page: Page, key: str) -> None:
    page.locator("button.authorize").first.click()
    modal = page.locator(".modal-ux")
    modal.locator("input").first.fill(key)
    modal.locator("button.modal-btn.authorize").click()
    modal.locator("button.btn-done").click()


STATUS_OPERATION = "#operations-pipelines-pipeline_status_api_v1_pipelines__name__status_get"


def _execute_status(page: Page) -> Locator:
    """Open GET …/{name}/status, "Try it out" for the demo pipeline, "Execute"; the answer."""
    operation = page.locator(STATUS_OPERATION)
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator('tr[data-param-name="name"] input').fill("breast-cancer-demo")
    operation.locator("button.execute").click()
    return operation.locator(".live-responses-table tbody tr.response")


def test_try_it_out_calls_the_service_with_the_key(page: Page, server: Server) -> None:
    page.goto(f"{server.url}/docs")
    assert server.token is not None
    _authorize(page, server.token)
    answer = _execute_status(page)
    expect(answer.locator(".response-col_status")).to_have_text("200")
    expect(answer.locator(".response-col_description")).to_contain_text(
        '"name": "breast-cancer-demo"'
    )


def test_try_it_out_without_authorizing_is_refused(page: Page, server: Server) -> None:
    page.goto(f"{server.url}/docs")
    answer = _execute_status(page)
    expect(answer.locator(".response-col_status")).to_contain_text("401")
    expect(answer.locator(".response-col_description")).to_contain_text("needs an API key")
