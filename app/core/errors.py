"""Domain errors. Services raise these; one handler turns them into RFC 9457 problem+json."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class DomainError(Exception):
    status_code = 400
    title = "Bad request"
    # Response headers the error calls for (e.g. WWW-Authenticate on a 401).
    headers: Mapping[str, str] = {}

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}


class NotFound(DomainError):
    status_code = 404
    title = "Not found"


class Conflict(DomainError):
    status_code = 409
    title = "Conflict"


class StoredSpecInvalid(Conflict):
    """A pipeline's stored spec fails today's validation: an older release accepted it."""


class Unauthorized(DomainError):
    """No credential, or one that is wrong or revoked (RFC 9110 section 15.5.2)."""

    status_code = 401
    title = "Unauthorized"

    def __init__(self, detail: str, *, invalid: bool = False) -> None:
        super().__init__(detail)
        # RFC 6750: say the token was refused, so clients know not to retry it as it is.
        challenge = 'Bearer realm="mlops"' + (', error="invalid_token"' if invalid else "")
        self.headers = {"WWW-Authenticate": challenge}


class Forbidden(DomainError):
    """A valid credential whose role is too small for the route."""

    status_code = 403
    title = "Forbidden"


class InvalidInput(DomainError):
    """A request value is wrong; `errors` names each field path and why."""

    status_code = 422
    title = "Invalid input"

    def __init__(self, detail: str, *, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail, extra={"errors": errors or []})


class InvalidSpec(InvalidInput):
    title = "Invalid pipeline spec"


class ArtifactError(DomainError):
    """An artifact is missing, tampered with, or holds types that are not trusted."""

    status_code = 409
    title = "Artifact refused"


class DeploymentFailed(DomainError):
    status_code = 502
    title = "Deployment failed"


class TooLarge(DomainError):
    """A request body over its size limit; it was not read (RFC 9110 section 15.5.14)."""

    status_code = 413
    title = "Payload too large"


class SourceError(DomainError):
    """The data source could not be read; the message is one a person can act on."""

    status_code = 422
    title = "Data source error"


def field_error(loc: str, msg: str) -> dict[str, str]:
    """One entry of a 422's `errors` list."""
    return {"loc": loc, "msg": msg}
