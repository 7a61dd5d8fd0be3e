"""The published API says what the server enforces: `Allow` lists every method a path takes,
and /openapi.json carries the spec rules the server applies (so a client generated from it
agrees with the server); an integer the schema accepts (1.0) is accepted."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import pipeline_spec


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/api/v1/pipelines", "GET, POST"),
        ("DELETE", "/api/v1/pipelines", "GET, POST"),
        ("OPTIONS", "/api/v1/keys", "GET, POST"),
        ("POST", "/api/v1/pipelines/any", "DELETE, GET, PUT"),
        ("OPTIONS", "/api/v1/pipelines/any/runs", "GET, POST"),
    ],
)
def test_405_allows_every_method_of_the_path(
    client: Any, method: str, path: str, allowed: str
) -> None:
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["Allow"] == allowed
    assert response.json()["detail"] == (
        f"Method {method} is not allowed on {path}; allowed: {allowed}"
    )


def schemas(client: Any) -> dict[str, Any]:
    found: dict[str, Any] = client.get("/openapi.json").json()["components"]["schemas"]
    return found


def test_the_spec_rules_are_published(client: Any) -> None:
    published = schemas(client)
    spec = published["PipelineSpec"]["properties"]
    assert spec["name"]["pattern"] == "^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
    assert (spec["name"]["minLength"], spec["name"]["maxLength"]) == (1, 64)
    assert (spec["features"]["minItems"], spec["features"]["uniqueItems"]) == (1, True)
    assert published["BuiltinTarget"]["required"] == ["kind"]
    assert published["WebhookTarget"]["required"] == ["kind", "url"]
    assert "r2" in published["Evaluation"]["properties"]["metric"]["enum"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "Not-A-Slug"),
        ("features", []),
        ("features", ["a", "a"]),
        ("deployment", {"target": {}}),
    ],
)
def test_what_the_schema_refuses_the_server_refuses(client: Any, field: str, value: Any) -> None:
    spec = {**pipeline_spec("rules"), field: value}
    response = client.post("/api/v1/pipelines", json=spec)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"].startswith(field)


def test_a_whole_float_is_an_integer(client: Any) -> None:
    spec = {**pipeline_spec("whole"), "max_runs_per_day": 3.0}
    response = client.post("/api/v1/pipelines", json=spec)
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["max_runs_per_day"] == 3
