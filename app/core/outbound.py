"""Which URLs the service itself may call: http(s) data sources and deploy webhooks.

Any, unless the operator sets MLOPS_HTTP_URL_ALLOW: a regular expression every such URL must
match in full, redirects included. A service that sits next to internal systems sets it to
the hosts pipelines are meant to reach, so that a pipeline's author cannot make the service
call a cloud metadata endpoint or an internal admin API on their behalf.
"""

from __future__ import annotations

import re

from app.core.redact import redact_url

SETTING = "MLOPS_HTTP_URL_ALLOW"


def allowed(url: str, pattern: str | None) -> bool:
    """True if the service may call `url` under the operator's pattern (None: any URL)."""
    return pattern is None or re.fullmatch(pattern, url) is not None


def refusal(url: str) -> str:
    """Why `url` may not be called, in words (its secrets masked)."""
    return f"{redact_url(url)} does not match {SETTING}"
