"""The artifact stores beyond a local directory, and choosing one from the settings.

`db` keeps artifacts as ordered chunks in the SQL database (nothing extra to run, and every
process that reaches the database reaches them); `s3://bucket/prefix` keeps them in a bucket.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import Engine, delete, insert, select

from app.core import s3
from app.core.db import make_engine
from app.core.settings import Settings
from app.registry.artifacts import BlobArtifactStore, LocalArtifactStore, missing
from app.registry.models import ArtifactChunk

CHUNK_BYTES = 1 << 20  # one row per MiB: no database is asked for one huge value


class DatabaseArtifactStore(BlobArtifactStore):
    """Artifacts as chunk rows in the SQL database the service already uses."""

    def __init__(self, url: str, engine: Engine | None = None) -> None:
        self.url = url
        self._engine = engine

    def __getstate__(self) -> dict[str, Any]:
        # A training process opens its own connection: engines do not cross processes.
        return {"url": self.url, "_engine": None}

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.url)
        return self._engine

    def write(self, uri: str, data: bytes) -> None:
        """Replace the artifact's chunks in one transaction: readers see old or new."""
        rows = [
            {"uri": uri, "seq": seq, "data": data[start : start + CHUNK_BYTES]}
            for seq, start in enumerate(range(0, max(len(data), 1), CHUNK_BYTES))
        ]
        with self.engine.begin() as connection:
            connection.execute(delete(ArtifactChunk).where(ArtifactChunk.uri == uri))
            for row in rows:
                connection.execute(insert(ArtifactChunk), row)

    def read(self, uri: str) -> bytes:
        """The chunks in order, streamed a row at a time."""
        query = (
            select(ArtifactChunk.data).where(ArtifactChunk.uri == uri).order_by(ArtifactChunk.seq)
        )
        with self.engine.connect() as connection:
            result = connection.execution_options(stream_results=True, yield_per=1).execute(query)
            chunks = [bytes(chunk) for chunk in result.scalars()]
        if not chunks:
            raise missing(uri)
        return b"".join(chunks)

    def remove(self, uri: str) -> None:
        """Delete the artifact's chunks."""
        with self.engine.begin() as connection:
            connection.execute(delete(ArtifactChunk).where(ArtifactChunk.uri == uri))


class S3ArtifactStore(BlobArtifactStore):
    """Artifacts as objects under `s3://bucket/prefix/`."""

    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None) -> None:
        self.bucket, self.prefix, self.endpoint_url = bucket, prefix.strip("/"), endpoint_url
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None}

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = s3.client(self.endpoint_url)
        return self._client

    def key(self, uri: str) -> str:
        return f"{self.prefix}/{uri}" if self.prefix else uri

    def write(self, uri: str, data: bytes) -> None:
        """One PUT: S3 shows readers the old object or the new one, never half."""
        self.client.put_object(Bucket=self.bucket, Key=self.key(uri), Body=data)

    def read(self, uri: str) -> bytes:
        """The object's bytes."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key(uri))
        except Exception as exc:
            if s3.is_not_found(exc):
                raise missing(uri) from exc
            raise
        body: bytes = response["Body"].read()
        return body

    def remove(self, uri: str) -> None:
        """Delete the object (S3 answers a missing key as deleted)."""
        self.client.delete_object(Bucket=self.bucket, Key=self.key(uri))


def open_store(settings: Settings, engine: Engine | None = None) -> BlobArtifactStore:
    """The store MLOPS_ARTIFACT_STORE names: a directory or file:// URL, `db` or s3://."""
    where = settings.resolved_artifact_store
    if where == "db":
        return DatabaseArtifactStore(settings.resolved_database_url, engine)
    scheme = urlsplit(where).scheme.lower()
    if scheme == "s3":
        bucket, prefix = s3.split(where)
        return S3ArtifactStore(bucket, prefix, settings.s3_endpoint_url)
    if scheme == "file":
        return LocalArtifactStore(Path(unquote(urlsplit(where).path)))
    return LocalArtifactStore(Path(where))
