"""Model versions: register, read, list, and the current production version."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func, select, true
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
    refs = _production_refs(session, ModelVersion.pipeline_id == pipeline_id)
    return refs[0] if refs else None


def production_refs(*, session: Session) -> list[ModelRef]:
    """How to load every pipeline's production version, the latest promoted first."""
    return _production_refs(session, true())


def _production_refs(session: Session, where: ColumnElement[bool]) -> list[ModelRef]:
    """The production versions `where` selects, as the five columns a load needs: every
    /predict and every run asks, and a start asks for all pipelines at once, none of them for
    a version's metrics, params or fingerprint."""
    rows = session.execute(
        select(
            ModelVersion.pipeline_id,
            ModelVersion.version,
            ModelVersion.sha256,
            ModelVersion.artifact_uri,
            ModelVersion.features,
        )
        .where(ModelVersion.stage == PRODUCTION, where)
        .order_by(ModelVersion.promoted_at.desc().nulls_last(), ModelVersion.id.desc())
    )
    return [
        ModelRef(pipeline_id, version, sha256, uri, [str(f) for f in features])
        for pipeline_id, version, sha256, uri, features in rows
    ]


def largest_training_data(*, session: Session) -> int:
    """The most cells (rows x columns) any live pipeline's latest version was trained on; 0
    when no such version says (versions record their data's shape in data_fingerprint)."""
    latest = (
        select(ModelVersion.pipeline_id, func.max(ModelVersion.version).label("version"))
        .group_by(ModelVersion.pipeline_id)
        .subquery()
    )
    fingerprints = session.scalars(
        select(ModelVersion.data_fingerprint)
        .join(
            latest,
            (ModelVersion.pipeline_id == latest.c.pipeline_id)
            & (ModelVersion.version == latest.c.version),
        )
        .join(Pipeline, Pipeline.id == ModelVersion.pipeline_id)
        .where(Pipeline.archived_at.is_(None))
    )
    return max((_cells(fingerprint) for fingerprint in fingerprints), default=0)


def _cells(fingerprint: dict[str, Any]) -> int:
    rows, columns = fingerprint.get("rows"), fingerprint.get("columns")
    if not isinstance(rows, int) or not isinstance(columns, list):
        return 0
    return rows * len(columns)


def ledger(*, session: Session, pipeline: Pipeline) -> list[Promotion]:
    """Every promotion and rollback, newest first."""
    return list(
        session.scalars(
            select(Promotion)
            .where(Promotion.pipeline_id == pipeline.id)
            .order_by(Promotion.id.desc())
        )
    )
