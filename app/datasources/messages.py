"""Small text helpers shared by the loaders: error reasons and URLs safe to show."""

from __future__ import annotations

from urllib.parse import urlsplit

MASK = "***"


def first_line(exc: BaseException) -> str:
    """The first non-blank line of an exception's message, or its class name."""
    lines = (line.strip() for line in str(exc).splitlines())
    return next((line for line in lines if line), type(exc).__name__)


def redact_url(url: str) -> str:
    """The URL with any password in its user info replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    username = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{username}:{MASK}@{hostport}").geturl()
