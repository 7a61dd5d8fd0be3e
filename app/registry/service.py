"""Model versions: register, read, list, and the current production version."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.db import MAX_ID
from app.core.errors import NotFound
from app.pipelines.models import Pipeline
from app.registry.artifacts import StoredArtifact
from app.registry.models import ModelVersion, Promotion
from app.registry.serving import ModelRef

CANDIDATE = "candidate"
PRODUCTION = "production"
ARCHIVED = "archived"


def next_version(*, session: Session, pipeline_id: int) -> int:
    """The number the pipeline's next version gets (1, 2, 3…)."""
    latest = session.scalar(
        select(func.max(ModelVersion.version)).where(ModelVersion.pipeline_id == pipeline_id)
    )
    return (latest or 0) + 1


def register(
    *,
    session: Session,
    pipeline_id: int,
    version: int,
    run_id: int,
    artifact: StoredArtifact,
    facts: dict[str, Any],
) -> ModelVersion:
    """Record a trained model as a candidate version."""
    row = ModelVersion(
        pipeline_id=pipeline_id,
        version=version,
        run_id=run_id,
        stage=CANDIDATE,
        sha256=artifact.sha256,
        artifact_uri=artifact.uri,
        estimator=facts["estimator"],
        metrics=facts["metrics"],
        params=facts["params"],
        data_fingerprint=facts["data_fingerprint"],
        features=facts["features"],
        reference=facts.get("reference", {}),
    )
    session.add(row)
    session.flush()
    return row


def get(*, session: Session, pipeline: Pipeline, version: int) -> ModelVersion:
    """One version of the pipeline's model, or NotFound."""
    if not 1 <= version <= MAX_ID:
        raise NotFound(f"Pipeline {pipeline.name} has no model version {version}")
    row = session.scalars(
        select(ModelVersion).where(
            ModelVersion.pipeline_id == pipeline.id, ModelVersion.version == version
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"Pipeline {pipeline.name} has no model version {version}")
    return row


def list_versions(*, session: Session, pipeline: Pipeline) -> list[ModelVersion]:
    """All versions, newest first."""
    return list(
        session.scalars(
            select(ModelVersion)
            .where(ModelVersion.pipeline_id == pipeline.id)
            .order_by(ModelVersion.version.desc())
        )
    )


def production(*, session: Session, pipeline_id: int) -> ModelVersion | None:
    """The production version, if there is one."""
    return session.scalars(
        select(ModelVersion).where(
            ModelVersion.pipeline_id == pipeline_id, ModelVersion.stage == PRODUCTION
        )
    ).one_or_none()


def production_number(*, session: Session, pipeline_id: int) -> int | None:
    """The production version's number, if there is one (without loading the row)."""
    return session.scalar(
        select(ModelVersion.version).where(
            ModelVersion.pipeline_id == pipeline_id, ModelVersion.stage == PRODUCTION
        )
    )


def production_ref(*, session: Session, pipeline_id: int) -> ModelRef | None:
    """How to load the production version, if there is one."""
    row = production(session=session, pipeline_id=pipeline_id)
    return None if row is None else _ref(row)


def production_refs(*, session: Session) -> list[ModelRef]:
    """How to load every pipeline's production version, the latest promoted first."""
    rows = session.scalars(
        select(ModelVersion)
        .where(ModelVersion.stage == PRODUCTION)
        .order_by(ModelVersion.promoted_at.desc().nulls_last(), ModelVersion.id.desc())
    )
    return [_ref(row) for row in rows]


def _ref(row: ModelVersion) -> ModelRef:
    features = [str(f) for f in row.features]
    return ModelRef(row.pipeline_id, row.version, row.sha256, row.artifact_uri, features)


def ledger(*, session: Session, pipeline: Pipeline) -> list[Promotion]:
    """Every promotion and rollback, newest first."""
    return list(
        session.scalars(
            select(Promotion)
            .where(Promotion.pipeline_id == pipeline.id)
            .order_by(Promotion.id.desc())
        )
    )
