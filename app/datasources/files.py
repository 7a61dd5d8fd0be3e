"""CSV and Parquet sources: a local file inside MLOPS_SOURCE_DIRS, an http(s) or an s3:// URL."""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pyarrow as pa

from app.core import s3
from app.core.errors import SourceError
from app.core.retry import RetryPolicy
from app.core.settings import Settings
from app.datasources.messages import first_line, redact_url
from app.datasources.remote import fetch
from app.spec.schema import CsvSource, ParquetSource

FileSource = CsvSource | ParquetSource
_LABELS = {"csv": "CSV", "parquet": "Parquet"}


def load_file(
    source: FileSource, settings: Settings, attempts: list[str] | None = None
) -> pd.DataFrame:
    """Read a CSV or Parquet source from the source directories or over http(s)."""
    if is_http_url(source.path):
        body = fetch(
            source.path,
            timeout_s=settings.http_source_timeout_s,
            max_bytes=settings.http_source_max_bytes,
            allow=settings.http_url_allow,
            policy=RetryPolicy.of(settings),
            attempts=attempts,
        )
        return _parse(source, io.BytesIO(body))
    if is_s3_url(source.path):
        return _parse(source, io.BytesIO(fetch_s3(source.path, settings)))
    if "://" in source.path:
        # s3://, file://… would otherwise be looked up as odd relative file names.
        raise SourceError(
            f"Unsupported data source URL {redact_url(source.path)}: "
            "use an http(s) or s3:// URL or a local path"
        )
    return _parse(source, resolve_local_path(source.path, settings))


def is_http_url(path: str) -> bool:
    """True for http:// and https:// URLs."""
    return "://" in path and urlsplit(path).scheme.lower() in ("http", "https")


def is_s3_url(path: str) -> bool:
    """True for s3://bucket/key URLs."""
    return "://" in path and urlsplit(path).scheme.lower() == "s3"


def fetch_s3(url: str, settings: Settings) -> bytes:
    """The object at `url`, through MLOPS_S3_ENDPOINT_URL and the standard AWS credentials."""
    try:
        bucket, key = s3.split(url)
        response = s3.client(settings.s3_endpoint_url).get_object(Bucket=bucket, Key=key)
        if int(response.get("ContentLength", 0)) > settings.http_source_max_bytes:
            response["Body"].close()
            raise SourceError(
                f"Data source too large: {url} is over the limit of "
                f"{settings.http_source_max_bytes} bytes (MLOPS_HTTP_SOURCE_MAX_BYTES)"
            )
        body: bytes = response["Body"].read()
    except SourceError:
        raise
    except Exception as exc:
        if s3.is_not_found(exc):
            raise SourceError(f"Data source not found: {url}") from exc
        raise SourceError(f"Could not fetch data source {url}: {first_line(exc)}") from exc
    return body


def resolve_local_path(raw: str, settings: Settings) -> Path:
    """The real path of `raw`: an existing file inside a source directory, outside our own."""
    for real in check_local_path(raw, settings):
        if real.is_file():
            return real
    raise SourceError(f"Data source not found: {raw}")


def check_local_path(raw: str, settings: Settings) -> list[Path]:
    """The real paths `raw` may name (it need not exist yet); SourceError if none is allowed.

    Checked when a spec is stored and again when it runs: a symlink may change in between.
    """
    roots = [root.resolve() for root in settings.source_dirs]
    # The service's own files (its SQLite database with webhook secrets, the artifacts) sit in
    # the working directory by default; a pipeline must never read them as data.
    private = [
        settings.data_dir.resolve(),
        settings.resolved_artifact_dir,
        *_local_store(settings),
        *_own_database(settings),
    ]
    given = Path(raw)
    candidates = [given] if given.is_absolute() else [root / given for root in roots]
    # Containment is checked before existence, so probing outside the roots learns nothing.
    reals = _real_paths(candidates)
    allowed = [real for real in reals if _inside(real, roots) and not _inside(real, private)]
    if allowed:
        return allowed
    if any(_inside(real, private) for real in reals):
        raise SourceError(
            f"Data source path not allowed: {raw} is inside the service's data directory "
            "(MLOPS_DATA_DIR: its database, artifacts and keys are never pipeline data)"
        )
    raise SourceError(
        f"Data source path not allowed: {raw} is outside the source directories (MLOPS_SOURCE_DIRS)"
    )


def _local_store(settings: Settings) -> list[Path]:
    """The artifact store's directory, when it is one."""
    where = settings.resolved_artifact_store
    if where == "db" or where.lower().startswith("s3://"):
        return []
    return [Path(urlsplit(where).path if where.startswith("file://") else where).resolve()]


def _own_database(settings: Settings) -> list[Path]:
    """The service's SQLite database and its journal files, wherever they are."""
    url = settings.resolved_database_url
    if not url.startswith("sqlite:///") or "\x00" in url:
        return []
    database = Path(url.removeprefix("sqlite:///").partition("?")[0]).resolve()
    return [
        database.with_name(database.name + suffix) for suffix in ("", "-wal", "-shm", "-journal")
    ]


def _real_paths(candidates: list[Path]) -> list[Path]:
    # A NUL byte makes the OS calls raise ValueError; such a path names no file anyway.
    return [path.resolve() for path in candidates if "\x00" not in str(path)]


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _parse(source: FileSource, data: Path | io.BytesIO) -> pd.DataFrame:
    try:
        if source.kind == "csv":
            # low_memory=False: one dtype per column instead of per chunk (and no DtypeWarning).
            return pd.read_csv(data, low_memory=False)
        return pd.read_parquet(data)
    except pd.errors.EmptyDataError:
        # A zero-byte CSV is empty data, not broken data: validation decides what that means.
        return pd.DataFrame()
    except (ValueError, OSError, pa.ArrowException) as exc:
        label = _LABELS[source.kind]
        shown = redact_url(source.path)
        raise SourceError(f"Could not read {label} {shown}: {first_line(exc)}") from exc
