"""Webhook signatures: our timestamped `X-Mlops-Signature` and GitHub's `X-Hub-Signature-256`.

X-Mlops-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}." + body)>
X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>

The timestamp binds the signature to a moment, so a captured request cannot be replayed
after the tolerance; GitHub's form has no timestamp and relies on its delivery id instead.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from app.webhooks.errors import SignatureRefused

TOLERANCE_S = 300
MLOPS_HEADER = "X-Mlops-Signature"
GITHUB_HEADER = "X-Hub-Signature-256"


@dataclass(frozen=True)
class SignatureHeaders:
    mlops: str | None
    github: str | None


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The X-Mlops-Signature value for `body` sent at `timestamp` (unix seconds)."""
    return f"t={timestamp},v1={_hmac(secret, f'{timestamp}.'.encode() + body)}"


def verify(headers: SignatureHeaders, body: bytes, secrets: Sequence[str], now: datetime) -> None:
    """Return if one of `secrets` signed `body`; SignatureRefused saying why otherwise."""
    if headers.mlops is not None:
        timestamp, digests = _parse_mlops(headers.mlops)
        if abs(now.timestamp() - timestamp) > TOLERANCE_S:
            raise SignatureRefused(
                f"{MLOPS_HEADER} timestamp is outside the {TOLERANCE_S} s tolerance; "
                "sign each request when it is sent, and check the sender's clock"
            )
        _match(digests, f"{timestamp}.".encode() + body, secrets, MLOPS_HEADER)
    elif headers.github is not None:
        _match([_parse_github(headers.github)], body, secrets, GITHUB_HEADER)
    else:
        raise SignatureRefused(f"Missing signature: send {MLOPS_HEADER} or {GITHUB_HEADER}")


def _match(digests: list[str], message: bytes, secrets: Sequence[str], header: str) -> None:
    expected = [_hmac(secret, message) for secret in secrets]
    # Every pair is compared, so the time taken does not tell which secret came close.
    matches = [hmac.compare_digest(d, e) for d in digests for e in expected]
    if not any(matches):
        raise SignatureRefused(
            f"{header} does not match the body: signature mismatch "
            "(wrong secret, or the body changed after signing)"
        )


def _parse_mlops(value: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    digests: list[str] = []
    for part in value.split(","):
        name, _, field = part.strip().partition("=")
        if name == "t" and field.isascii() and field.isdigit():
            timestamp = int(field)
        elif name == "v1" and _is_hex_digest(field):
            digests.append(field.lower())
    if timestamp is None or not digests:
        raise SignatureRefused(
            f"Malformed {MLOPS_HEADER}: expected t=<unix seconds>,v1=<hex HMAC-SHA256>"
        )
    return timestamp, digests


def _parse_github(value: str) -> str:
    scheme, _, digest = value.strip().partition("=")
    if scheme != "sha256" or not _is_hex_digest(digest):
        raise SignatureRefused(f"Malformed {GITHUB_HEADER}: expected sha256=<hex HMAC-SHA256>")
    return digest.lower()


def _is_hex_digest(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdefABCDEF" for c in value)


def _hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
