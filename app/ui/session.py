"""The dashboard's session cookie: a signed, expiring cookie carrying a session token.

The token names a row of `dashboard_sessions` (app.auth.sessions): the server decides whether
it is live (not expired, not logged out) and looks its key up on every request, so logout and
revoking a key end it at once, even for a copy of the cookie. The cookie is signed (HMAC,
itsdangerous) with MLOPS_UI_SECRET or a random secret kept in the data directory, HttpOnly,
SameSite=Strict, and expires after MLOPS_UI_SESSION_S. A form's CSRF token is an HMAC of the
session token, so it needs no storage and is worthless without the session.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import secrets
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer

from app.core.settings import Settings

COOKIE = "mlops_ui"
LOGIN_COOKIE = "mlops_ui_login"
COOKIE_PATH = "/ui"
LOGIN_FORM_S = 3600


def load_secret(settings: Settings) -> bytes:
    """MLOPS_UI_SECRET, else the data dir's `ui-secret` file (made on first use, mode 600)."""
    if settings.ui_secret is not None:
        return settings.ui_secret.get_secret_value().encode()
    path = settings.data_dir / "ui-secret"
    if not path.exists():
        _write_private(path, secrets.token_urlsafe(32))
    return path.read_text().strip().encode()


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process made it first: use theirs
    with os.fdopen(fd, "w") as file:
        file.write(text)


def token_tag(token: str) -> str:
    """A short digest of the admin token, to notice that it changed."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


class Signer:
    """Signs and checks session and login-form cookies; derives CSRF tokens."""

    def __init__(self, secret: bytes, lifetime_s: float) -> None:
        self.lifetime_s = lifetime_s
        self._secret = secret
        self._session = URLSafeTimedSerializer(secret, salt="mlops-ui-session")
        self._login = URLSafeTimedSerializer(secret, salt="mlops-ui-login")

    def session_cookie(self, token: str) -> str:
        """The cookie value for the session `token`."""
        return self._session.dumps(token)

    def read_session(self, value: str | None) -> str | None:
        """The session token in a cookie value, or None if missing, forged or expired."""
        return _read(self._session, value, math.ceil(self.lifetime_s))

    def csrf(self, token: str) -> str:
        """The CSRF token of the session `token`'s forms."""
        return hmac.new(self._secret, b"csrf:" + token.encode(), hashlib.sha256).hexdigest()

    def login_cookie(self, csrf: str) -> str:
        """The cookie that carries the login form's CSRF token until the form is posted."""
        return self._login.dumps(csrf)

    def read_login(self, value: str | None) -> str | None:
        """The login form's CSRF token from its cookie, if valid."""
        return _read(self._login, value, LOGIN_FORM_S)


def _read(serializer: URLSafeTimedSerializer, value: str | None, max_age: int) -> str | None:
    if not value:
        return None
    try:
        loaded = serializer.loads(value, max_age=max_age)
    except BadSignature:
        return None
    return loaded if isinstance(loaded, str) else None


def new_csrf() -> str:
    """A fresh random token (the login form's CSRF token)."""
    return secrets.token_urlsafe(32)


def same(sent: str | None, expected: str) -> bool:
    """Whether the CSRF token sent matches, compared in constant time."""
    return sent is not None and hmac.compare_digest(sent.encode(), expected.encode())
