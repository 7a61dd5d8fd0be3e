"""Swagger UI works with no internet access: /docs loads nothing from another host."""

import re
import warnings
from html.parser import HTMLParser

import pytest
from fastapi import FastAPI

from app.ops.docs import install_docs

with warnings.catch_warnings():
    # Starlette 1.10 warns at import when the TestClient runs on httpx rather than httpx2;
    # that is an environment choice, not something these tests are about.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

_EXTERNAL_URL = re.compile(r"(?:https?:)?//[\w.-]+", re.IGNORECASE)
_CSS_URL = re.compile(r"""url\(\s*['"]?([^'")]*)""", re.IGNORECASE)
# Paths the inline Swagger config loads: `url: '/openapi.json'`, the OAuth2 redirect, ...
_QUOTED_PATH = re.compile(r"""['"](/[^'"\s]*)['"]""")

_EXPECTED_TYPES = {
    ".js": "javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".json": "application/json",
    "oauth2-redirect": "text/html",
}


class _LinkedUrls(HTMLParser):
    """Collects every src and href value on a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in {"src", "href"} and value]


def _linked_urls(html: str) -> list[str]:
    parser = _LinkedUrls()
    parser.feed(html)
    return parser.urls + _CSS_URL.findall(html)


def _referenced_paths(html: str) -> set[str]:
    return set(_linked_urls(html)) | set(_QUOTED_PATH.findall(html))


def _expected_type(path: str) -> str:
    return next(kind for suffix, kind in _EXPECTED_TYPES.items() if path.endswith(suffix))


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI(title="mlops", docs_url=None, redoc_url=None)
    install_docs(app)
    return TestClient(app)


@pytest.fixture(scope="module")
def docs_html(client: TestClient) -> str:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html: str = response.text
    return html


class TestDocsPage:
    def test_links_only_same_origin_paths(self, docs_html: str) -> None:
        urls = _linked_urls(docs_html)
        assert urls, "the page should load its script, stylesheet and icon"
        for url in urls:
            assert url.startswith("/"), url
            assert not url.startswith("//"), url

    def test_mentions_no_other_host_anywhere(self, docs_html: str) -> None:
        # Covers the inline Swagger config too: spec URL, OAuth2 redirect, validator.
        assert _EXTERNAL_URL.findall(docs_html) == []

    def test_turns_off_the_online_spec_validator(self, docs_html: str) -> None:
        # Swagger UI's default would send the spec to validator.swagger.io.
        assert '"validatorUrl": null' in docs_html

    def test_loads_the_bundled_swagger_ui(self, docs_html: str) -> None:
        paths = _referenced_paths(docs_html)
        assert {
            "/static/swagger-ui/swagger-ui-bundle.js",
            "/static/swagger-ui/swagger-ui.css",
            "/static/swagger-ui/favicon-32x32.png",
            "/openapi.json",
            "/docs/oauth2-redirect",
        } <= paths

    def test_every_referenced_path_is_served(self, client: TestClient, docs_html: str) -> None:
        for path in sorted(_referenced_paths(docs_html)):
            response = client.get(path)
            assert response.status_code == 200, path
            assert _expected_type(path) in response.headers["content-type"], path

    def test_is_left_out_of_the_openapi_schema(self, client: TestClient) -> None:
        assert client.get("/openapi.json").json()["paths"] == {}


class TestAssets:
    def test_stylesheet_embeds_its_images(self, client: TestClient) -> None:
        css = client.get("/static/swagger-ui/swagger-ui.css").text
        urls = _CSS_URL.findall(css)
        assert urls
        assert all(url.startswith("data:") for url in urls)

    def test_oauth2_redirect_page_mentions_no_other_host(self, client: TestClient) -> None:
        response = client.get("/docs/oauth2-redirect")
        assert response.status_code == 200
        assert _EXTERNAL_URL.findall(response.text) == []


def test_behind_a_path_prefix_every_url_keeps_the_prefix() -> None:
    app = FastAPI(docs_url=None, redoc_url=None)
    install_docs(app)
    html = TestClient(app, root_path="/mlops").get("/docs").text
    paths = _referenced_paths(html)
    assert paths
    assert all(path.startswith("/mlops/") for path in paths), paths


def test_no_docs_when_the_app_publishes_no_schema() -> None:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    install_docs(app)
    assert TestClient(app).get("/docs").status_code == 404
