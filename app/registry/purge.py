"""Purging an archived pipeline's artifacts: the version rows stay, their files go."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.db import after_commit
from app.core.time import utcnow
from app.pipelines.models import Pipeline
from app.registry.artifacts import ArtifactStore
from app.registry.models import ModelVersion

log = logging.getLogger(__name__)


def purge_artifacts(*, session: Session, pipeline: Pipeline, store: ArtifactStore) -> list[int]:
    """Mark every version's artifact purged; the files go once the transaction commits (a
    rolled-back purge deletes nothing). The version numbers purged."""
    versions = list(
        session.scalars(
            select(ModelVersion).where(
                ModelVersion.pipeline_id == pipeline.id, ModelVersion.artifact_purged_at.is_(None)
            )
        )
    )
    now = utcnow()
    for version in versions:
        version.artifact_purged_at = now
    session.flush()
    uris = [version.artifact_uri for version in versions]
    after_commit(session, lambda: _delete(store, uris))
    return sorted(version.version for version in versions)


def _delete(store: ArtifactStore, uris: list[str]) -> None:
    for uri in uris:
        try:
            store.delete(uri)
        except Exception as exc:  # the rows say purged; bytes left behind are only space
            log.warning("artifact %s could not be deleted: %s", uri, exc)
