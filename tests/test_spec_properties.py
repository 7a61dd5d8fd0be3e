"""Property tests for the spec parser: whatever comes in (random JSON-like trees, random YAML
text, mutations of a valid spec), it either parses to a valid spec or is refused with the
error that becomes a 422 naming a field; nothing else ever escapes, and over HTTP no input
gets a 5xx."""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.errors import InvalidInput, TooLarge
from app.core.settings import Settings
from app.pipelines.masking import masked, restored
from app.pipelines.parsing import decode_body, parse_spec
from app.spec.schema import PipelineSpec
from tests.factories import pipeline_spec

FIELDS = sorted(PipelineSpec.model_fields)
SECTION_FIELDS = sorted(
    {"kind", "path", "url", "query", "dataset", "window", "last_rows", "last_days", "column"}
    | {"estimator", "params", "min_rows", "metric", "mode", "target", "headers", "schedule"}
    | {"every_s", "operator", "threshold", "timezone", "max_attempts", "backoff_s", "method"}
)
KINDS = ["csv", "parquet", "sql", "sklearn", "ingested", "builtin", "webhook", "cron"]
KINDS += ["interval", "metric", "new_data", "drift", "iris", "auto", "manual", "skip"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(KINDS)
    | st.sampled_from(["sklearn.linear_model.Ridge", "0 0 * * *", "UTC", "../x", "a\x00b"])
)
keys = st.sampled_from(FIELDS) | st.sampled_from(SECTION_FIELDS) | st.text(max_size=8)
json_like = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=6),
    max_leaves=25,
)
documents = st.dictionaries(keys, json_like, max_size=10)


@pytest.fixture(scope="module")
def parser_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(source_dirs=[tmp_path_factory.mktemp("sources")], data_dir=Path("/nonexistent"))


def outcome(document: Any, parser_settings: Settings) -> PipelineSpec | InvalidInput:
    """The parsed spec, or the refusal; any other exception fails the test."""
    try:
        return parse_spec(document, parser_settings)
    except InvalidInput as refused:
        errors = refused.extra["errors"]
        assert errors, refused.detail
        for error in errors:
            assert isinstance(error["loc"], str) and error["loc"]
            assert isinstance(error["msg"], str) and error["msg"]
        assert refused.detail.startswith(errors[0]["loc"] + ": ")
        return refused


def check_valid(spec: PipelineSpec, parser_settings: Settings) -> None:
    """A spec that parsed is stored as JSON and read back the same; masking round-trips."""
    stored = json.loads(json.dumps(spec.model_dump(mode="json"), allow_nan=False))
    assert parse_spec(stored, parser_settings) == spec
    assert restored(masked(spec), spec) == spec


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parses_or_names_a_field(document: Any, parser_settings: Settings) -> None:
    result = outcome(document, parser_settings)
    if isinstance(result, PipelineSpec):
        check_valid(result, parser_settings)


@PROPERTY
@given(document=json_like)
def test_any_tree_parses_or_names_a_field(document: Any, parser_settings: Settings) -> None:
    parses_or_names_a_field(document, parser_settings)


@PROPERTY
@given(document=documents)
def test_any_mapping_parses_or_names_a_field(document: Any, parser_settings: Settings) -> None:
    parses_or_names_a_field(document, parser_settings)


VALID = pipeline_spec(
    "valid",
    triggers=[
        {"kind": "cron", "schedule": "0 3 * * 1-5", "timezone": "Europe/Paris"},
        {"kind": "metric", "metric": "accuracy", "operator": "<", "threshold": 0.8},
        {"kind": "drift", "threshold": 0.2},
    ],
    deployment={
        "mode": "manual",
        "target": {"kind": "webhook", "url": "https://u:pw@deploy.example/x?token=t"},
    },
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into the spec document, containers included."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


VALID_PATHS = paths(VALID)[1:]


@st.composite
def mutated_specs(draw: st.DrawFn) -> dict[str, Any]:
    """The valid spec with a few values replaced, keys dropped or keys added."""
    document = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(VALID_PATHS))
        parent = document
        for step in path[:-1]:
            try:
                parent = parent[step]
            except (KeyError, IndexError, TypeError):
                break
        else:
            _mutate(draw, parent, path[-1])
    return document


def _mutate(draw: st.DrawFn, parent: Any, key: Any) -> None:
    action = draw(st.sampled_from(["replace", "drop", "add"]))
    if isinstance(parent, dict) and action == "drop":
        parent.pop(key, None)
    elif isinstance(parent, dict) and action == "add":
        parent[draw(keys)] = draw(json_like)
    elif isinstance(parent, dict | list):
        with contextlib.suppress(IndexError, KeyError, TypeError):
            parent[key] = draw(json_like)


@PROPERTY
@given(document=mutated_specs())
def test_mutated_specs_parse_or_name_a_field(document: Any, parser_settings: Settings) -> None:
    result = outcome(document, parser_settings)
    if isinstance(result, PipelineSpec):
        check_valid(result, parser_settings)


def test_the_valid_spec_is_valid(parser_settings: Settings) -> None:
    assert isinstance(outcome(VALID, parser_settings), PipelineSpec)


YAML_ALPHABET = st.sampled_from([*"abcn01 :-[]{},&*!|>'\"#\n\t?%@`"])
yaml_words = st.lists(YAML_ALPHABET | st.sampled_from(["name", "model", "kind"]), max_size=60)


@PROPERTY
@given(
    text=st.one_of(
        st.text(YAML_ALPHABET, max_size=80),
        yaml_words.map("".join),
        json_like.map(lambda doc: yaml.safe_dump(doc, allow_unicode=True)),
        mutated_specs().map(yaml.safe_dump),
        st.binary(max_size=60).map(lambda raw: raw.decode("latin-1")),
    )
)
def test_any_yaml_text_parses_or_names_a_field(text: str, parser_settings: Settings) -> None:
    try:
        document = decode_body(text.encode(), "application/yaml")
    except InvalidInput as refused:
        assert refused.extra["errors"][0]["loc"] == "body"
        return
    result = outcome(document, parser_settings)
    if isinstance(result, PipelineSpec):
        check_valid(result, parser_settings)


@PROPERTY
@given(raw=st.binary(max_size=200) | json_like.map(lambda d: json.dumps(d).encode()))
def test_any_json_bytes_parse_or_name_a_field(raw: bytes, parser_settings: Settings) -> None:
    try:
        document = decode_body(raw, "application/json")
    except (InvalidInput, TooLarge):
        return
    outcome(document, parser_settings)


# ---------------------------------------------------------------- through HTTP

HTTP = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
bodies = st.one_of(
    documents.map(lambda d: (json.dumps(d).encode(), "application/json")),
    mutated_specs().map(lambda d: (json.dumps(d).encode(), "application/json")),
    mutated_specs().map(lambda d: (yaml.safe_dump(d).encode(), "application/yaml")),
    st.binary(max_size=100).map(lambda raw: (raw, "application/json")),
    st.text(YAML_ALPHABET, max_size=60).map(lambda t: (t.encode(), "application/yaml")),
)


@HTTP
@given(body=bodies)
def test_no_spec_gets_a_server_error(client: Any, body: tuple[bytes, str]) -> None:
    content, media = body
    for method, path in (("POST", "/api/v1/pipelines"), ("PUT", "/api/v1/pipelines/valid")):
        response = client.request(method, path, content=content, headers={"content-type": media})
        assert response.status_code in (200, 201, 409, 413, 422), response.text
        if response.status_code >= 400:
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["detail"]
