"""Hostile input: every request below gets a clear 4xx (problem+json naming the field or the
value) and changes nothing in the database, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import Select, Table, create_engine, select

from app.core.settings import Settings
from app.tables import Base
from tests.factories import pipeline_spec

API = "/api/v1"
NAME = "hostile"
BASE = f"{API}/pipelines/{NAME}"
JSON = {"content-type": "application/json"}
YAML = {"content-type": "application/yaml"}
# Rows that change on every request, whatever it asks (when a key was last used), and the
# /metrics roll-up, which a housekeeping job keeps (run_rollups, runs.rolled_up).
VOLATILE = {"api_keys", "run_rollups"}
VOLATILE_COLUMNS = {"rolled_up"}


@dataclass(frozen=True)
class Case:
    """One hostile request and what it must get: a status and the field (or a fragment of
    the detail) that the problem names."""

    method: str
    path: str
    status: int
    names: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))


def spec_json(**overrides: Any) -> bytes:
    return json.dumps(pipeline_spec(overrides.pop("name", "another"), **overrides)).encode()


def snapshot(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (but key usage), to compare before and after a request."""
    engine = create_engine(str(settings.database_url))
    with engine.connect() as connection:
        rows = {
            table.name: sorted(map(tuple, connection.execute(_stable(table))), key=repr)
            for table in Base.metadata.sorted_tables
            if table.name not in VOLATILE
        }
    engine.dispose()
    return rows


def _stable(table: Table) -> Select[Any]:
    return select(*(column for column in table.columns if column.name not in VOLATILE_COLUMNS))


@pytest.fixture
def existing(client: Any, settings: Settings) -> Iterator[dict[str, Any]]:
    """A pipeline with a run, so refused requests have state to leave alone."""
    spec = pipeline_spec(NAME, source={"kind": "sklearn", "dataset": "iris"}, target="target")
    spec["validation"] = {"min_rows": 10}
    created = client.post(f"{API}/pipelines", json=spec)
    assert created.status_code == 201, created.text
    run = client.post(f"{BASE}/runs")
    assert run.status_code == 202
    deadline = time.monotonic() + 60
    while client.get(f"{API}/runs/{run.json()['id']}").json()["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield created.json()


def check(client: Any, settings: Settings, cases: dict[str, Case]) -> None:
    """Send each case; collect every way one falls short, and fail once with all of them."""
    failures: list[str] = []
    for label, case in cases.items():
        before = snapshot(settings)
        response = client.request(case.method, case.path, content=case.body, headers=case.headers)
        problem = _problem(response)
        named = case.names in {e.get("loc") for e in problem.get("errors", [])} or (
            case.names in str(problem.get("detail", ""))
        )
        if response.status_code != case.status or not named:
            failures.append(f"{label}: {response.status_code} {response.text[:300]}")
        if snapshot(settings) != before:
            failures.append(f"{label}: the database changed")
    assert failures == []


def _problem(response: Any) -> dict[str, Any]:
    if response.headers.get("content-type") != "application/problem+json":
        return {}
    body: dict[str, Any] = response.json()
    return body


# ---------------------------------------------------------------- sizes and shapes


def test_oversized_bodies_are_refused_unread(client: Any, settings: Settings) -> None:
    settings.max_body_bytes = 100_000
    big = b'{"name": "' + b"x" * 200_000 + b'"}'
    cases = {
        "body over MLOPS_MAX_BODY_BYTES": Case(
            "POST", f"{API}/pipelines", 413, "MLOPS_MAX_BODY_BYTES", big
        ),
        "metrics body over the limit": Case(
            "POST", f"{BASE}/metrics", 413, "limit of 100000 bytes", big
        ),
    }
    check(client, settings, cases)
    # Without a Content-Length (chunked), the bytes read are counted.
    chunks = iter([big[:50_000], big[50_000:]])
    response = client.post(f"{API}/pipelines", content=chunks, headers=JSON)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


def test_hostile_specs_are_refused(client: Any, settings: Settings, existing: Any) -> None:
    post = f"{API}/pipelines"
    many = [{"kind": "interval", "every_s": 60 + i} for i in range(10_000)]
    deep_params = {"C": json.loads("[" * 200 + "]" * 200)}
    cases = {
        "100k [": Case("POST", post, 422, "body", b"[" * 100_000),
        "100k {": Case("POST", post, 422, "body", b'{"a":' * 100_000),
        "nested 200 deep in params": Case(
            "POST", post, 422, "nested deeper than 32", spec_json(model={"params": deep_params})
        ),
        "YAML 5000 [": Case("POST", post, 422, "body", b"[" * 5000, YAML),
        "YAML alias bomb": Case("POST", post, 422, "aliases", _alias_bomb(), YAML),
        "YAML python tag": Case(
            "POST", post, 422, "body", b"name: !!python/object/apply:os.system [id]", YAML
        ),
        "YAML binary": Case("POST", post, 422, "description", _yaml_spec("!!binary aGk="), YAML),
        "huge JSON (2 MB)": Case(
            "POST", post, 413, "at most 1048576 bytes", spec_json(features=["f"] * 400_000)
        ),
        "non-UTF-8 JSON": Case("POST", post, 422, "body", b'{"name": "caf\xe9"}'),
        "UTF-16 JSON": Case("POST", post, 422, "body", spec_json().decode().encode("utf-16")),
        "non-UTF-8 YAML": Case("POST", post, 422, "body", b"name: caf\xe9\n", YAML),
        "integer of 5000 digits": Case(
            "POST", post, 422, "more than 4300 digits", b'{"name": ' + b"9" * 5000 + b"}"
        ),
        "integer past 64 bits": Case(
            "POST", post, 422, "validation.min_rows", spec_json(validation={"min_rows": 10**30})
        ),
        "NaN threshold": Case("POST", post, 422, "triggers.0.metric.threshold", _nan_trigger()),
        "Infinity interval": Case(
            "POST", post, 422, "triggers.0.interval.every_s", _inf_interval()
        ),
        "10,000 triggers": Case("POST", post, 422, "triggers", spec_json(triggers=many)),
        "negative last_rows": Case(
            "POST", post, 422, "source.csv.window.last_rows", _window(last_rows=-5)
        ),
        "negative last_days": Case(
            "POST", post, 422, "source.csv.window.last_days", _window(last_days=-1)
        ),
        "negative metric window": Case(
            "POST", post, 422, "triggers.0.metric.window", _metric(window=-1)
        ),
        "NUL in description": Case("POST", post, 422, "description", spec_json(description="a\0b")),
        "NUL in a params key": Case(
            "POST", post, 422, "model.params", spec_json(model={"params": {"C\0": 1}})
        ),
        "CRLF in a deploy header": Case(
            "POST", post, 422, "deployment.target.webhook.headers", _deploy_header("a\r\nb")
        ),
        "deploy URL without a host": Case(
            "POST", post, 422, "deployment.target.webhook.url", _deploy_url("http://")
        ),
        "metric name with a zero-width space": Case(
            "POST", post, 422, "triggers.0.metric.metric", _metric(metric="acc\u200buracy")
        ),
    }
    check(client, settings, cases)


TRICKY_NAMES = [
    "../etc",
    "a/b",
    "a\\b",
    "..",
    "retrain\n",
    "retrain\x00",
    "r\u0435train",  # a Cyrillic small ie for the e
    "retrain\u202e",  # right-to-left override
    "re\u200btrain",  # zero-width space
    "\uff52etrain",  # fullwidth r
    "retrain ",
    "",
    "x" * 65,
    "-retrain",
]


def test_names_with_tricks_are_refused(client: Any, settings: Settings, existing: Any) -> None:
    cases = {
        repr(name): Case("POST", f"{API}/pipelines", 422, "name", spec_json(name=name))
        for name in TRICKY_NAMES
    }
    check(client, settings, cases)


def test_names_with_tricks_name_no_pipeline(client: Any, settings: Settings, existing: Any) -> None:
    cases = {
        "NUL": Case("GET", f"{API}/pipelines/a%00b", 404, r"Pipeline 'a\x00b' does not exist"),
        "RTL": Case("GET", f"{API}/pipelines/%E2%80%AEabc", 404, r"'\u202eabc'"),
        "homoglyph": Case("GET", f"{API}/pipelines/h%D0%BEstile", 404, r"'h\u043estile'"),
        "dot-dot": Case("GET", f"{API}/pipelines/..%2F..%2Fetc%2Fpasswd", 404, "Not Found"),
        "10k chars": Case("GET", f"{API}/pipelines/{'a' * 10_000}", 404, "does not exist"),
        "NUL to delete": Case("DELETE", f"{API}/pipelines/{NAME}%00", 404, "does not exist"),
        "NUL to trigger": Case("POST", f"{API}/pipelines/{NAME}%00/runs", 404, "does not exist"),
    }
    check(client, settings, cases)


# ---------------------------------------------------------------- other endpoints


def test_hostile_metrics_are_refused(client: Any, settings: Settings, existing: Any) -> None:
    url = f"{BASE}/metrics"

    def observation(value: str, metric: str = '"accuracy"') -> bytes:
        return f'{{"observations": [{{"metric": {metric}, "value": {value}}}]}}'.encode()

    many = json.dumps({"observations": [{"metric": "a", "value": 1}] * 10_001}).encode()
    value = "body.observations.0.value"
    metric = "body.observations.0.metric"
    cases = {
        "NaN": Case("POST", url, 422, value, observation("NaN")),
        "Infinity": Case("POST", url, 422, value, observation("Infinity")),
        "-Infinity": Case("POST", url, 422, value, observation("-Infinity")),
        "1e999": Case("POST", url, 422, value, observation("1e999")),
        "a string": Case("POST", url, 422, value, observation('"0.5"')),
        "integer of 5000 digits": Case(
            "POST", url, 422, "more than 4300 digits", observation("9" * 5000)
        ),
        "NUL in the metric name": Case("POST", url, 422, metric, observation("1", '"a\\u0000"')),
        "RTL in the metric name": Case("POST", url, 422, metric, observation("1", '"a\\u202e"')),
        "homoglyph metric name": Case(
            "POST", url, 422, metric, observation("1", '"\\u0430ccuracy"')
        ),
        "10,001 observations": Case("POST", url, 422, "body.observations", many),
        "non-UTF-8": Case("POST", url, 422, "body", b'{"observations": "\xff"}'),
        "100k [": Case("POST", url, 422, "body", b"[" * 100_000),
    }
    check(client, settings, cases)


def test_hostile_runs_and_predictions_are_refused(
    client: Any, settings: Settings, existing: Any
) -> None:
    runs = f"{BASE}/runs"
    cases = {
        "NUL in the reason": Case("POST", runs, 422, "body.reason", b'{"reason": "a\\u0000"}'),
        "newline in Idempotency-Key": Case(
            "POST", runs, 422, "header.idempotency-key", None, {"Idempotency-Key": "a\nb"}
        ),
        "NUL in Idempotency-Key": Case(
            "POST", runs, 422, "header.idempotency-key", None, {"Idempotency-Key": "a\x00b"}
        ),
        "run id past 64 bits": Case("GET", f"{API}/runs/{10**30}", 404, "does not exist"),
        "negative run id": Case("GET", f"{API}/runs/-1", 404, "does not exist"),
        "cancel a run past 64 bits": Case(
            "POST", f"{API}/runs/{2**63}/cancel", 404, "does not exist"
        ),
        "version past 64 bits": Case("GET", f"{BASE}/models/{10**30}", 404, "no model version"),
        "huge offset": Case("GET", f"{runs}?offset={10**30}", 422, "query.offset"),
        "negative count": Case("GET", f"{BASE}/schedule?count=-1", 422, "query.count"),
        "predict 100k [": Case("POST", f"{BASE}/predict", 422, "body", b"[" * 100_000),
        "predict 10,001 rows": Case(
            "POST", f"{BASE}/predict", 422, "body.instances", _instances(10_001)
        ),
        "NUL in the promote reason": Case(
            "POST", f"{BASE}/models/1/promote", 422, "body.reason", b'{"reason": "\\u0000"}'
        ),
    }
    check(client, settings, cases)


def test_hostile_webhook_bodies_are_refused(
    client: Any, settings: Settings, existing: dict[str, Any]
) -> None:
    secret = existing["webhook_secret"]

    def signed(body: bytes, content_type: str) -> Case:
        t = int(time.time())
        digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        headers = {"content-type": content_type, "x-mlops-signature": f"t={t},v1={digest}"}
        return Case("POST", f"{BASE}/data", 422, "body", body, headers)

    cases = {
        "non-UTF-8 CSV": signed(b"sepal length (cm),target\n5.1,caf\xe9\n", "text/csv"),
        "non-UTF-8 JSON": signed(b'{"records": [{"target": "caf\xe9"}]}', "application/json"),
        "100k [ JSON": signed(b"[" * 100_000, "application/json"),
    }
    check(client, settings, cases)


# ---------------------------------------------------------------- bodies


def _yaml_spec(description: str) -> bytes:
    spec = pipeline_spec("another")
    spec["description"] = "PLACEHOLDER"
    return json.dumps(spec).replace('"PLACEHOLDER"', description).encode()


def _alias_bomb() -> bytes:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return ("\n".join(lines) + "\nname: bomb\nmodel: {params: {C: *a9}}\n").encode()


def _nan_trigger() -> bytes:
    trigger = {"kind": "metric", "metric": "accuracy", "operator": "<", "threshold": float("nan")}
    return spec_json(triggers=[trigger])


def _inf_interval() -> bytes:
    return spec_json(triggers=[{"kind": "interval", "every_s": float("inf")}])


def _metric(**fields: Any) -> bytes:
    trigger = {"kind": "metric", "metric": "accuracy", "operator": "<", "threshold": 0.8}
    return spec_json(triggers=[{**trigger, **fields}])


def _window(**window: Any) -> bytes:
    return spec_json(source={"kind": "csv", "path": "data/customers.csv", "window": window})


def _deploy_header(value: str) -> bytes:
    target = {"kind": "webhook", "url": "https://deploy.example/x", "headers": {"X-A": value}}
    return spec_json(deployment={"target": target})


def _deploy_url(url: str) -> bytes:
    return spec_json(deployment={"target": {"kind": "webhook", "url": url}})


def _instances(count: int) -> bytes:
    return json.dumps({"instances": [{"sepal length (cm)": 5.1}] * count}).encode()
