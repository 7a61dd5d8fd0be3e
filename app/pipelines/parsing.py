"""Turn a request body (JSON or YAML) into a validated PipelineSpec, or a 422 naming the field."""

from __future__ import annotations

import json
from typing import Any

import yaml
from pydantic import ValidationError

from app.core import outbound
from app.core.errors import InvalidSpec, SourceError, TooLarge, field_error
from app.core.problems import dotted, summary, validation_errors
from app.core.settings import Settings
from app.core.untrusted import problems, unreadable
from app.datasources.files import check_local_path, is_http_url
from app.datasources.sql_policy import check_query, source_url, sqlite_file
from app.spec.estimators import EstimatorError, resolve_estimator
from app.spec.schema import (
    CLASSIFICATION_METRICS,
    CsvSource,
    ParquetSource,
    PipelineSpec,
    SqlSource,
    WebhookTarget,
)

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
# A spec is a page of text; past this, parsing (YAML's is pure Python) is only a cost.
MAX_SPEC_BYTES = 1024 * 1024
MAX_ERRORS = 20
# The spec's tagged unions, by the shape of their path.
_TAGGED = frozenset({("source",), ("deployment", "target"), ("triggers", "*")})


class _SpecLoader(yaml.SafeLoader):
    """safe_load without aliases: `*name` can repeat a node a billion times once expanded."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not supported in a spec", mark
            )
        return super().compose_node(parent, index)


def decode_body(raw: bytes, content_type: str) -> Any:
    """Parse JSON or YAML by content type; a body that cannot be read is a 422 on `body`."""
    if len(raw) > MAX_SPEC_BYTES:
        raise TooLarge(f"A pipeline spec is at most {MAX_SPEC_BYTES} bytes; this is {len(raw)}")
    media = content_type.split(";")[0].strip().lower()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid("body", f"is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    try:
        if media in YAML_TYPES:
            return yaml.load(text, Loader=_SpecLoader)  # noqa: S506 (a SafeLoader)
        return json.loads(text)
    except yaml.YAMLError as exc:
        raise _invalid("body", f"invalid YAML: {_first_line(exc)}") from exc
    except RecursionError:
        raise _invalid("body", "is nested too deeply") from None
    # JSONDecodeError, and the ValueError for an integer of more than 4300 digits.
    except ValueError as exc:
        raise _invalid("body", unreadable(exc)) from exc


def parse_spec(document: Any, settings: Settings) -> PipelineSpec:
    """Validate shape (pydantic) and meaning (allow-list, metric vs estimator)."""
    if not isinstance(document, dict):
        raise _invalid("body", "must be a mapping with the pipeline spec fields")
    errors = [field_error(_loc(path, document), msg) for path, msg in problems(document)]
    errors = errors[:MAX_ERRORS]
    if errors:
        raise InvalidSpec(summary(errors), errors=errors)
    try:
        spec = PipelineSpec.model_validate(_whole_numbers_as_int(document))
    except ValidationError as exc:
        errors = validation_errors(list(exc.errors()))[:MAX_ERRORS]
        raise InvalidSpec(summary(errors), errors=errors) from exc
    check_semantics(spec, settings)
    return spec


def _whole_numbers_as_int(document: dict[str, Any]) -> dict[str, Any]:
    """1.0 as 1, as JSON Schema counts it an integer (the published schema says "integer").
    Not in `model`: an estimator's parameter may mean something else as a float
    (max_features=1.0 is every feature, 1 is one)."""
    return {k: v if k == "model" else _as_int(v) for k, v in document.items()}


def _as_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _as_int(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_int(v) for v in value]
    return value


def check_semantics(spec: PipelineSpec, settings: Settings) -> None:
    """Checks that need imports or settings: the estimator allow-list, params, metric kind."""
    if spec.features is not None and spec.target in spec.features:
        raise _invalid("features", f"the target {spec.target!r} cannot also be a feature")
    if isinstance(spec.source, SqlSource):
        _check_sql(spec.source, settings)
    _check_local_file(spec, settings)
    _check_urls(spec, settings.http_url_allow)
    try:
        resolved = resolve_estimator(spec.model.estimator, settings.allowed_estimators)
    except EstimatorError as exc:
        raise _invalid("model.estimator", str(exc)) from exc
    try:
        resolved.build(dict(spec.model.params))
    except EstimatorError as exc:
        raise _invalid("model.params", str(exc)) from exc
    is_classification_metric = spec.evaluation.metric in CLASSIFICATION_METRICS
    if is_classification_metric != (resolved.kind == "classifier"):
        raise _invalid(
            "evaluation.metric",
            f"{spec.evaluation.metric!r} does not apply to a {resolved.kind} "
            f"({spec.model.estimator})",
        )


def _check_sql(source: SqlSource, settings: Settings) -> None:
    """The database must be one the policy allows, and the query one SELECT."""
    try:
        source_url(source, settings)
    except SourceError as exc:
        field = "url" if source.url else "connection"
        raise _invalid(f"source.sql.{field}", exc.detail) from exc
    try:
        check_query(source.query)
    except SourceError as exc:
        raise _invalid("source.sql.query", exc.detail) from exc
    if source.url is not None and (database := sqlite_file(source.url)) is not None:
        _check_path("source.sql.url", database, settings)


def _check_local_file(spec: PipelineSpec, settings: Settings) -> None:
    """A local csv/parquet path must stay in MLOPS_SOURCE_DIRS (it may not exist yet)."""
    source = spec.source
    if isinstance(source, CsvSource | ParquetSource) and "://" not in source.path:
        _check_path(f"source.{source.kind}.path", source.path, settings)


def _check_path(field: str, raw: str, settings: Settings) -> None:
    try:
        check_local_path(raw, settings)
    except SourceError as exc:
        raise _invalid(field, exc.detail) from exc


def _check_urls(spec: PipelineSpec, allow: str | None) -> None:
    """The URLs the service would call for this pipeline must match MLOPS_HTTP_URL_ALLOW."""
    calls: list[tuple[str, str]] = []
    if isinstance(spec.source, CsvSource | ParquetSource) and is_http_url(spec.source.path):
        calls.append((f"source.{spec.source.kind}.path", spec.source.path))
    if isinstance(spec.deployment.target, WebhookTarget):
        calls.append(("deployment.target.webhook.url", spec.deployment.target.url))
    for field, url in calls:
        if not outbound.allowed(url, allow):
            raise _invalid(field, outbound.refusal(url))


def _loc(path: tuple[str, ...], document: Any) -> str:
    """A document path as pydantic names it: with the `kind` of each tagged union passed
    (`source.csv.path`, `triggers.0.cron.schedule`), so every error names fields alike."""
    parts: list[str] = []
    node = document
    for key in path:
        parts.append(key)
        node = node.get(key) if isinstance(node, dict) else _item(node, key)
        shape = tuple("*" if part.isdigit() else part for part in parts)
        if shape in _TAGGED and isinstance(node, dict) and isinstance(node.get("kind"), str):
            parts.append(node["kind"])
    return dotted(tuple(parts)) or "body"


def _item(node: Any, key: str) -> Any:
    return node[int(key)] if isinstance(node, list) and key.isdigit() else None


def _invalid(loc: str, msg: str) -> InvalidSpec:
    return InvalidSpec(f"{loc}: {msg}", errors=[field_error(loc, msg)])


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
