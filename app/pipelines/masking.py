"""Secrets inside a spec: passwords in URLs, secret query parameters, deploy-target headers.

Responses show them masked (`***`). A spec sent back exactly as it was shown keeps the stored
secrets: a header whose value is `***`, or a URL equal to the masked form of the stored one,
means "unchanged". Any other `***` stands for a secret the server does not have: a 422.
"""

from __future__ import annotations

from typing import Any

from app.core.errors import InvalidSpec, field_error
from app.core.redact import MASK, redact_url
from app.spec.schema import PipelineSpec

# (section, field) pairs that hold a URL, by dotted path in the spec document.
_URL_FIELDS = (("source", "path"), ("source", "url"), ("deployment.target", "url"))
_HEADERS = ("deployment.target", "headers")


def masked(spec: PipelineSpec) -> PipelineSpec:
    """The spec as responses show it: every secret replaced by ***."""
    document = spec.model_dump(mode="json")
    for section, name in _URL_FIELDS:
        values = _section(document, section)
        if isinstance(values.get(name), str):
            values[name] = redact_url(values[name])
    headers = _section(document, _HEADERS[0]).get(_HEADERS[1])
    if isinstance(headers, dict):
        for header in headers:
            headers[header] = MASK
    return PipelineSpec.model_validate(document)


def restored(spec: PipelineSpec, stored: PipelineSpec | None) -> PipelineSpec:
    """`spec` with each value shown masked put back from `stored`; 422 on an unknown ***."""
    document = spec.model_dump(mode="json")
    previous = stored.model_dump(mode="json") if stored is not None else {}
    errors: list[dict[str, str]] = []
    for section, name in _URL_FIELDS:
        problem = _restore_url(_section(document, section), _section(previous, section), name)
        if problem is not None:
            errors.append(field_error(_loc(document, section, name), problem))
    errors += _restore_headers(document, previous)
    if errors:
        raise InvalidSpec(f"{errors[0]['loc']}: {errors[0]['msg']}", errors=errors)
    return spec if document == spec.model_dump(mode="json") else _valid(document)


def _restore_url(values: dict[str, Any], previous: dict[str, Any], name: str) -> str | None:
    url, old = values.get(name), previous.get(name)
    if not isinstance(url, str) or MASK not in url:
        return None
    if isinstance(old, str) and url == redact_url(old):
        values[name] = old
        return None
    return (
        f"has {MASK} where a secret was shown masked; send the full URL, "
        "or the URL exactly as shown to keep the stored one"
    )


def _restore_headers(document: dict[str, Any], previous: dict[str, Any]) -> list[dict[str, str]]:
    section, name = _HEADERS
    sent, old = _section(document, section).get(name), _section(previous, section).get(name)
    headers: dict[str, Any] = sent if isinstance(sent, dict) else {}
    known: dict[str, Any] = old if isinstance(old, dict) else {}
    errors: list[dict[str, str]] = []
    for header, value in headers.items():
        if value != MASK:
            continue
        if header in known:
            headers[header] = known[header]
        else:
            msg = f"is {MASK}, which keeps a stored value, but this header has none; send it"
            errors.append(field_error(f"{_loc(document, section, name)}.{header}", msg))
    return errors


def _section(document: dict[str, Any], dotted: str) -> dict[str, Any]:
    """The mapping at a dotted path (the document's own, so writes land), or an empty one."""
    current: Any = document
    for key in dotted.split("."):
        current = current.get(key) if isinstance(current, dict) else None
    return current if isinstance(current, dict) else {}


def _loc(document: dict[str, Any], section: str, name: str) -> str:
    """The field's path as pydantic names it, with the union's kind: `source.sql.url`."""
    kind = _section(document, section).get("kind")
    return f"{section}.{kind}.{name}" if isinstance(kind, str) else f"{section}.{name}"


def _valid(document: dict[str, Any]) -> PipelineSpec:
    return PipelineSpec.model_validate(document)
