"""Webhook signatures: ours, the Standard Webhooks form, and GitHub's `X-Hub-Signature-256`.

X-Mlops-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}." + body)>
webhook-id, webhook-timestamp, webhook-signature: v1,<base64 HMAC-SHA256(key, f"{id}.{t}." + body)>
  (Standard Webhooks; the key is the base64 part of the `whsec_` secret)
X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>

A timestamp binds a signature to a moment, so a captured request cannot be replayed after
the tolerance; within it, the replay key each form yields lets the service answer a replay as
it answered the first request. GitHub's form has no timestamp: its replay key is the body's
hash, the weaker guarantee that the README states.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from app.core import signing
from app.webhooks.errors import SignatureRefused

TOLERANCE_S = 300
MLOPS_HEADER = "X-Mlops-Signature"
GITHUB_HEADER = "X-Hub-Signature-256"
STANDARD_HEADER = "webhook-signature"


@dataclass(frozen=True)
class SignatureHeaders:
    mlops: str | None
    github: str | None
    webhook_id: str | None = None
    webhook_timestamp: str | None = None
    webhook_signature: str | None = None


@dataclass(frozen=True)
class Verified:
    """A verified request: what a replay of it would repeat, and the header to cite."""

    replay_key: str
    header: str


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The X-Mlops-Signature value for `body` sent at `timestamp` (unix seconds)."""
    return f"t={timestamp},v1={_hmac(secret, f'{timestamp}.'.encode() + body)}"


def verify(
    headers: SignatureHeaders, body: bytes, secrets: Sequence[str], now: datetime
) -> Verified:
    """The replay key if one of `secrets` signed `body`; SignatureRefused saying why otherwise."""
    body_sha256 = hashlib.sha256(body).hexdigest()
    if headers.webhook_signature is not None:
        return _verify_standard(headers, body, secrets, now)
    if headers.mlops is not None:
        timestamp, digests = _parse_mlops(headers.mlops)
        _fresh(timestamp, now, MLOPS_HEADER)
        _match(digests, f"{timestamp}.".encode() + body, secrets, MLOPS_HEADER)
        return Verified(f"{MLOPS_HEADER}:{timestamp}:{body_sha256}", MLOPS_HEADER)
    if headers.github is not None:
        _match([_parse_github(headers.github)], body, secrets, GITHUB_HEADER)
        return Verified(f"{GITHUB_HEADER}:{body_sha256}", GITHUB_HEADER)
    raise SignatureRefused(
        f"Missing signature: send {MLOPS_HEADER}, {STANDARD_HEADER} (Standard Webhooks) "
        f"or {GITHUB_HEADER}"
    )


def mismatch(header: str) -> SignatureRefused:
    """The refusal for a signature that no valid secret made."""
    return SignatureRefused(
        f"{header} does not match the body: signature mismatch "
        "(wrong secret, or the body changed after signing)"
    )


def _verify_standard(
    headers: SignatureHeaders, body: bytes, secrets: Sequence[str], now: datetime
) -> Verified:
    message_id, raw_time = headers.webhook_id, headers.webhook_timestamp
    if not message_id or raw_time is None or not (raw_time.isascii() and raw_time.isdigit()):
        raise SignatureRefused(
            f"Malformed Standard Webhooks headers: {STANDARD_HEADER} needs webhook-id and "
            "webhook-timestamp (unix seconds)"
        )
    timestamp = int(raw_time)
    _fresh(timestamp, now, "webhook-timestamp")
    signature = headers.webhook_signature or ""
    # Space-separated `v1,<base64>` entries: a sender rotating its secret signs with both.
    given = [part.removeprefix("v1,") for part in signature.split() if part.startswith("v1,")]
    expected = [signing.signature(secret, message_id, timestamp, body) for secret in secrets]
    if not any(hmac.compare_digest(g, e) for g in given for e in expected):
        raise mismatch(STANDARD_HEADER)
    # The id is signed: a sender's retry and an attacker's replay both carry it.
    return Verified(f"webhook-id:{message_id}", "webhook-id")


def _fresh(timestamp: int, now: datetime, header: str) -> None:
    if abs(now.timestamp() - timestamp) > TOLERANCE_S:
        raise SignatureRefused(
            f"{header} timestamp is outside the {TOLERANCE_S} s tolerance; "
            "sign each request when it is sent, and check the sender's clock"
        )


def _match(digests: list[str], message: bytes, secrets: Sequence[str], header: str) -> None:
    expected = [_hmac(secret, message) for secret in secrets]
    # Every pair is compared, so the time taken does not tell which secret came close.
    matches = [hmac.compare_digest(d, e) for d in digests for e in expected]
    if not any(matches):
        raise mismatch(header)


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
