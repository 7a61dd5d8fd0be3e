"""Small text helpers shared by the loaders: error reasons and URLs safe to show."""

from __future__ import annotations

from app.core.redact import MASK, redact_url

__all__ = ["MASK", "first_line", "redact_url"]


def first_line(exc: BaseException) -> str:
    """The first non-blank line of an exception's message, or its class name."""
    lines = (line.strip() for line in str(exc).splitlines())
    return next((line for line in lines if line), type(exc).__name__)
