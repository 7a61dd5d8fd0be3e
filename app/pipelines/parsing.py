"""Turn a request body (JSON or YAML) into a validated PipelineSpec, or a 422 naming the field."""

from __future__ import annotations

import json
from typing import Any

import yaml
from pydantic import ValidationError

from app.core.errors import InvalidSpec, field_error
from app.core.problems import summary, validation_errors
from app.core.settings import Settings
from app.pipelines.estimators import EstimatorError, resolve_estimator
from app.pipelines.spec import CLASSIFICATION_METRICS, PipelineSpec

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def decode_body(raw: bytes, content_type: str) -> Any:
    """Parse JSON or YAML by content type; syntax errors are a 422 on `body`."""
    media = content_type.split(";")[0].strip().lower()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid("body", f"is not UTF-8 text: {exc.reason}") from exc
    if media in YAML_TYPES:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise _invalid("body", f"invalid YAML: {_first_line(exc)}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _invalid("body", f"invalid JSON: {exc}") from exc


def parse_spec(document: Any, settings: Settings) -> PipelineSpec:
    """Validate shape (pydantic) and meaning (allow-list, metric vs estimator)."""
    if not isinstance(document, dict):
        raise _invalid("body", "must be a mapping with the pipeline spec fields")
    try:
        spec = PipelineSpec.model_validate(document)
    except ValidationError as exc:
        errors = validation_errors(list(exc.errors()))
        raise InvalidSpec(summary(errors), errors=errors) from exc
    check_semantics(spec, settings)
    return spec


def check_semantics(spec: PipelineSpec, settings: Settings) -> None:
    """Checks that need imports or settings: the estimator allow-list, params, metric kind."""
    if spec.features is not None and spec.target in spec.features:
        raise _invalid("features", f"the target {spec.target!r} cannot also be a feature")
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


def _invalid(loc: str, msg: str) -> InvalidSpec:
    return InvalidSpec(f"{loc}: {msg}", errors=[field_error(loc, msg)])


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
