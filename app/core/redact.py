"""Secrets kept out of what the service shows and logs: URLs with their passwords and
secret-sounding query parameters masked, and a log filter that applies it to httpx's logs."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

MASK = "***"
_SECRET_WORD = r"(?:token|key|apikey|secret|password|passwd|pwd|sig|signature|auth|credentials?)"  # noqa: S105
_SECRET_PARAM = re.compile(
    rf"((?:^|&)(?:[a-z0-9]*[_.-])*{_SECRET_WORD}(?:[_.-][a-z0-9]*)*=)[^&]*", re.I
)
# httpx logs every request's full URL at INFO ("HTTP Request: POST https://user:pw@…").
URL_LOGGERS = ("httpx", "httpcore")


def redact_url(url: str) -> str:
    """The URL with the password in its user info, and the values of secret-sounding query
    parameters (`?token=…`, `&api_key=…`), replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        if "@" not in url and "?" not in url:
            return url
        scheme, separator, _ = url.partition("://")
        return f"{scheme}{separator}{MASK}" if separator else MASK
    masked = parts
    if parts.password is not None:
        userinfo, _, hostport = parts.netloc.rpartition("@")
        username = userinfo.partition(":")[0]
        masked = parts._replace(netloc=f"{username}:{MASK}@{hostport}")
    masked = masked._replace(query=_SECRET_PARAM.sub(lambda m: m.group(1) + MASK, parts.query))
    return url if masked == parts else masked.geturl()


class RedactUrls(logging.Filter):
    """Masks every URL among a log record's arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        return True


def _redacted(arg: object) -> object:
    text = str(arg)
    return redact_url(text) if "://" in text and not isinstance(arg, int | float) else arg


def redact_url_logs() -> None:
    """Install RedactUrls on the loggers of the HTTP client (once, however often called)."""
    for name in URL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactUrls) for f in logger.filters):
            logger.addFilter(RedactUrls())
