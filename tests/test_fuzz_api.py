"""Property-based fuzzing of the whole OpenAPI schema (schemathesis), on SQLite and PostgreSQL:
valid and invalid requests to every operation, with the test client's admin key and with no
key. No answer is a 5xx; every answer has a status, content type and body its
operation declares; without a key, every route but the open ones answers 401.

Requests go through the `client` fixture (the app served in-process, started once per
test), so they carry whatever credentials that client sends by default. Bounded: a few
examples per operation, so the file runs in about half a minute per backend.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import TestClient
from tests.factories import pipeline_spec, wait_for_run

MAX_EXAMPLES = 15


SEED = "fuzz"


def config(mode: str) -> Any:
    return schemathesis.Config.from_dict(
        {
            # Credentials are the client's (its default headers), never generated.
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "mode": mode,
                "with-security-parameters": False,
            },
            # The coverage phase enumerates every boundary of every parameter: thousands of
            # requests. Fuzzing reaches the same code with a bounded budget.
            "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
            # Often name the seeded pipeline, its model and its run, so requests get past
            # "not found" into the code behind (random names still come the rest of the time).
            "dictionaries": {"names": {"values": [SEED]}, "ids": {"values": [1]}},
            "parameters": {
                "path.name": {"dictionary": "names", "probability": 0.6},
                "path.version": {"dictionary": "ids", "probability": 0.6},
                "path.run_id": {"dictionary": "ids", "probability": 0.6},
            },
        }
    )


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Routes anyone may call: liveness, readiness, and the webhook (its signature is the key).
OPEN = {("GET", "/healthz"), ("GET", "/readyz"), ("POST", "/api/v1/pipelines/{name}/data")}


def load(client: Any, request: pytest.FixtureRequest, mode: str) -> Any:
    # schemathesis (4.32) renames the running test through `node._nodeid`, which pytest 9
    # no longer has; give it one (it only changes how a failure is labelled).
    request.node._nodeid = request.node.nodeid
    seed(client)
    return schemathesis.openapi.from_dict(client.app.openapi(), config=config(mode))


def seed(client: Any) -> None:
    """A pipeline with a production model (version 1, made by run 1), a metric trigger and
    a drift trigger, so fuzzed requests reach runs, models, predictions and triggers."""
    spec = pipeline_spec(
        SEED,
        source={"kind": "sklearn", "dataset": "iris"},
        target="target",
        validation={"min_rows": 10},
        triggers=[
            {"kind": "metric", "metric": "accuracy", "operator": "<", "threshold": 0.5},
            {"kind": "drift", "threshold": 0.5, "min_rows": 5},
        ],
    )
    assert client.put(f"/api/v1/pipelines/{SEED}", json=spec).status_code in (200, 201)
    if client.get(f"/api/v1/pipelines/{SEED}/status").json()["production_version"] is None:
        run = wait_for_run(client, client.post(f"/api/v1/pipelines/{SEED}/runs").json()["id"])
        assert run["status"] == "completed", run


@pytest.fixture
def any_requests(client: Any, request: pytest.FixtureRequest) -> Any:
    """The schema, generating valid and invalid requests."""
    return load(client, request, "all")


schema = schemathesis.pytest.from_fixture("any_requests")


@pytest.fixture
def valid_requests(client: Any, request: pytest.FixtureRequest) -> Any:
    """The schema, generating only requests it calls valid."""
    return load(client, request, "positive")


valid_schema = schemathesis.pytest.from_fixture("valid_requests")


def send(client: Any, case: Case) -> httpx.Response:
    response = _send(client, case)
    if case.method.upper() == "DELETE" and response.status_code == 204:
        seed(client)  # put it back for the operations still to come
    return response


def _send(client: Any, case: Case) -> httpx.Response:
    """Send the case through our test client (the schemathesis transport would start a
    second copy of the app's lifespan)."""
    kwargs = case.as_transport_kwargs(base_url=str(client.base_url))
    data = kwargs.pop("data", None)
    content = data.encode() if isinstance(data, str) else data
    response: httpx.Response = client.request(
        kwargs["method"],
        kwargs["url"],
        params=kwargs.get("params"),
        headers=kwargs.get("headers"),
        content=content,
        json=kwargs.get("json"),
    )
    return response


# Generating strings for the published patterns (header names and values, URLs, slugs) is
# slow on a busy machine; the budget is the number of examples, not the time they take.
RELAXED = settings(suppress_health_check=[HealthCheck.too_slow])


@schema.parametrize()
@RELAXED
def test_with_the_clients_key(case: Case, client: Any) -> None:
    response = send(client, case)
    checks = [*CHECKS, negative_data_rejection]
    case.validate_response(response, checks=checks)


# The rules a JSON schema cannot state, by the field a 422 names: what the server has
# (installed estimators and their parameters, the model's features, time zones, files),
# or a grammar (crontab). Any other 422 to a request the schema calls valid is a rule
# missing from /openapi.json.
SEMANTIC = re.compile(
    r"(model\.estimator|model\.params.*|triggers\.\d+\.cron\.(schedule|timezone)|body\.instances.*"
    r"|source\..*|target|features|validation\.required_columns.*|.*\.column|window.*"
    # A forced promotion needs a reason: a rule across two fields.
    r"|body\.force)"
)


def semantic_only(response: httpx.Response) -> bool:
    """A 422 whose every error names a field in SEMANTIC."""
    errors = response.json().get("errors") or [{"loc": ""}]
    return all(SEMANTIC.fullmatch(str(error.get("loc", ""))) for error in errors)


@valid_schema.parametrize()
@RELAXED
def test_what_the_schema_calls_valid_is_accepted(case: Case, client: Any) -> None:
    """The published schema holds every rule the server applies to a request's shape: a
    request it calls valid is not refused with a 422, but for the rules in SEMANTIC (401,
    404 and 409 depend on state, not on the request)."""
    response = send(client, case)
    case.validate_response(response, checks=CHECKS)
    if response.status_code == 422 and not semantic_only(response):
        raise AssertionError(
            f"{case.method} {case.path}: valid by the schema, refused: {response.text}"
        )


@pytest.fixture
def anonymous(client: Any) -> Any:
    """A client of the same app sending no credentials."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = TestClient(client.app)
    other.headers.pop("Authorization", None)
    return other


@schema.parametrize()
@RELAXED
def test_without_a_key(case: Case, anonymous: Any) -> None:
    response = send(anonymous, case)
    case.validate_response(response, checks=CHECKS)
    if (case.method.upper(), case.path) not in OPEN:
        assert response.status_code == 401, (case.method, case.path, response.text)
        assert response.headers["content-type"] == "application/problem+json"


def test_a_body_that_is_not_json_without_a_key_is_401(anonymous: Any) -> None:
    response = anonymous.post(
        "/api/v1/pipelines/any/runs", content=b"{", headers={"content-type": "application/json"}
    )
    assert response.status_code == 401
