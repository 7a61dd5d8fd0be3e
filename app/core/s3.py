"""One way to reach S3 (or any S3-compatible endpoint) for artifacts and file sources."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


def client(endpoint_url: str | None) -> Any:
    """A boto3 S3 client; credentials and region come from the standard AWS chain."""
    # Imported on first use: boto3 costs a second of start-up that most services never need.
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=endpoint_url or None)


def split(url: str) -> tuple[str, str]:
    """`s3://bucket/some/key` as (bucket, "some/key")."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "s3" or not parts.netloc:
        raise ValueError(f"not an s3://bucket/key URL: {url}")
    return parts.netloc, parts.path.lstrip("/")


def is_not_found(exc: Exception) -> bool:
    """True when boto3 says the bucket or key does not exist."""
    response = getattr(exc, "response", None)
    code = str((response or {}).get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound")
