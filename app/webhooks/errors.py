"""The webhook's own refusals: DomainErrors, so the one problem+json handler serves them."""

from __future__ import annotations

from app.core.errors import DomainError


class SignatureRefused(DomainError):
    """The delivery is not signed with the pipeline's secret; nothing of it is kept."""

    status_code = 401
    title = "Invalid webhook signature"


class PayloadTooLarge(DomainError):
    status_code = 413
    title = "Payload too large"


class UnsupportedMediaType(DomainError):
    status_code = 415
    title = "Unsupported media type"
