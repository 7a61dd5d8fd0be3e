"""Checks on a decoded, untrusted document (a JSON or YAML tree) before any model sees it:
plain JSON types only, bounded depth and size, finite numbers that fit 64 bits, and no NUL
character (PostgreSQL cannot store one)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

MAX_INT = 2**63 - 1
# For pydantic `pattern=`: text PostgreSQL can store (it has no NUL character).
STORABLE_TEXT = r"^[^\x00]*$"
# A header value as a client can send it: printable ASCII.
PRINTABLE_ASCII = r"^[\x20-\x7e]*$"
# Names (metric names, audit actions): printable ASCII, no space at either end. A homoglyph
# or an invisible character would silently make a second name that looks like the first.
IDENTIFIER = r"^[\x21-\x7e](?:[\x20-\x7e]{0,62}[\x21-\x7e])?$"
HTTP_URL = r"^https?://"
# What no URL holds: control characters and white space. Spelled out, because `\s` is three
# different sets in Python's re, in pydantic's Rust engine and in the ECMA-262 patterns that
# OpenAPI clients check with (they part on U+0085, U+FEFF and U+001C-U+001F).
NOT_IN_URL = r"\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
# An http(s) URL naming a host (a name or IPv4 address in ASCII; IDNA names as punycode),
# optionally a port, path, query: a pattern clients can check too.
HTTP_URL_WITH_HOST = (
    rf"^https?://(?:[^/?#@\[\]{NOT_IN_URL}]*@)?[A-Za-z0-9._~%!$&'()*+,;=-]+"
    rf"(?::[0-9]{{0,5}})?(?:[/?#][^{NOT_IN_URL}]*)?$"
)
# Any http(s) URL, the scheme in any case, for targets MLOPS_HTTP_URL_ALLOW checks further.
ANY_HTTP_URL = rf"^[hH][tT][tT][pP][sS]?://[^{NOT_IN_URL}]+$"
# What a pattern means, for error messages ("String should match pattern '^[^\x00]*$'"
# tells a person little).
PATTERN_HINTS = {
    STORABLE_TEXT: "must not contain a NUL character (\\u0000)",
    PRINTABLE_ASCII: "must be printable ASCII text",
    IDENTIFIER: "must be 1-64 printable ASCII characters, without a space at either end",
    HTTP_URL: "must be an http:// or https:// URL",
    HTTP_URL_WITH_HOST: "must be an http:// or https:// URL naming a host (no IPv6 literal)",
    ANY_HTTP_URL: "must be an http:// or https:// URL without white space or control characters",
}


@dataclass(frozen=True)
class Limits:
    max_depth: int = 32
    max_nodes: int = 200_000
    max_string: int = 100_000


def unreadable(exc: ValueError) -> str:
    """Why json.loads refused a text, for a person (no Python internals)."""
    if "integer string conversion" in str(exc):
        return "has an integer of more than 4300 digits"
    return f"is not valid JSON: {' '.join(str(exc).split())[:200]}"


Path = tuple[str, ...]


def problems(document: Any, limits: Limits | None = None) -> Iterator[tuple[Path, str]]:
    """(path of keys and indexes, why) for each value a JSON API cannot accept."""
    limits = limits or Limits()
    # Iterative, not recursive: a hostile depth must not exhaust Python's stack first.
    queue: list[tuple[Path, Any]] = [((), document)]
    for seen, (path, value) in enumerate(queue):
        if seen >= limits.max_nodes:
            yield (), f"has more than {limits.max_nodes} values"
            return
        if len(path) > limits.max_depth:
            yield path, f"is nested deeper than {limits.max_depth} levels"
            return
        reason = _scalar_problem(value, limits)
        if reason is not None:
            yield path, reason
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    yield path, f"has a key that is not a string: {str(key)[:40]!r}"
                elif "\x00" in key:
                    yield path, "has a key with a NUL character (\\u0000)"
                else:
                    queue.append(((*path, key), item))
        elif isinstance(value, list):
            queue.extend(((*path, str(i)), item) for i, item in enumerate(value))


def _scalar_problem(value: Any, limits: Limits) -> str | None:
    if value is None or isinstance(value, bool | dict | list):
        return None
    if isinstance(value, str):
        if "\x00" in value:
            return "contains a NUL character (\\u0000)"
        if len(value) > limits.max_string:
            return f"is longer than {limits.max_string} characters"
        return None
    if isinstance(value, int):
        return None if -MAX_INT <= value <= MAX_INT else "is an integer too large to store"
    if isinstance(value, float):
        return None if math.isfinite(value) else "must be a finite number (not NaN or Infinity)"
    return f"must be a string, number, boolean, null, list or mapping, not {type(value).__name__}"
