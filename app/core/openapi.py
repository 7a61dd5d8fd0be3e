"""The OpenAPI schema tells the truth about errors: every error answer is RFC 9457
problem+json (one `Problem` schema), any route may answer a 4xx, and FastAPI's default 422
schema (`HTTPValidationError`, a shape this API never sends) is replaced."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from app.core.untrusted import STORABLE_TEXT

PROBLEM = "application/problem+json"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; `errors` names each bad field of a 422.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {"loc": {"type": "string"}, "msg": {"type": "string"}},
            },
        },
    },
}
ANY_CLIENT_ERROR = {
    "description": "The request cannot be served as sent: the problem says why",
    "content": {PROBLEM: {"schema": PROBLEM_REF}},
}
_FASTAPI_ONLY = ("HTTPValidationError", "ValidationError")


def install_problem_schema(app: FastAPI) -> None:
    """Make `app.openapi()` document problem+json error answers."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()  # cached by FastAPI after the first call, so edited once
        if "Problem" not in schema.get("components", {}).get("schemas", {}):
            _document_problems(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _publish_storable_text(node: Any) -> None:
    """Every string of a body may not hold a NUL (the server refuses it: PostgreSQL cannot
    store one); say so on each string schema that has no pattern of its own."""
    if isinstance(node, dict):
        if node.get("type") == "string" and not node.keys() & {
            "pattern",
            "enum",
            "const",
            "format",
        }:
            node["pattern"] = STORABLE_TEXT
        for value in node.values():
            _publish_storable_text(value)
    elif isinstance(node, list):
        for value in node:
            _publish_storable_text(value)


def _document_problems(schema: dict[str, Any]) -> None:
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    _publish_storable_text(schemas)
    schemas["Problem"] = PROBLEM_SCHEMA
    for name in _FASTAPI_ONLY:
        schemas.pop(name, None)
    for operation in _operations(schema):
        responses = operation.setdefault("responses", {})
        for code, response in responses.items():
            if code[0] in "45":
                response["content"] = {PROBLEM: {"schema": PROBLEM_REF}}
        responses.setdefault("4XX", ANY_CLIENT_ERROR)


def _operations(schema: dict[str, Any]) -> list[dict[str, Any]]:
    methods = ("get", "put", "post", "delete", "patch")
    return [
        operation
        for item in schema.get("paths", {}).values()
        for method, operation in item.items()
        if method in methods
    ]
