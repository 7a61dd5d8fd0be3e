"""Standard Webhooks signing (https://www.standardwebhooks.com/): `whsec_<base64>` secrets
whose base64 part is the HMAC key, and `v1,<base64>` signatures of `{id}.{timestamp}.{body}`.

Used both ways: to verify new-data requests signed in this form, and to sign the events the
service sends to its subscribers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


def new_secret() -> str:
    """A fresh secret: `whsec_` and 256 random bits in base64."""
    return f"{SECRET_PREFIX}{base64.b64encode(secrets.token_bytes(32)).decode()}"


def standard_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret (url-safe base64 of older secrets too)."""
    encoded = secret.removeprefix(SECRET_PREFIX).replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        return secret.encode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The base64 HMAC-SHA256 of one message, without the `v1,` prefix."""
    content = f"{message_id}.{timestamp}.".encode() + body
    return base64.b64encode(
        hmac.new(standard_key(secret), content, hashlib.sha256).digest()
    ).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value (`v1,<base64>`) for one message."""
    return f"v1,{signature(secret, message_id, timestamp, body)}"
