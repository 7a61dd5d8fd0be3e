"""Promotion and rollback: deploy first, then switch production and write the ledger row in
one transaction, so a failed deploy never leaves a half-promoted model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, lazyload

from app.auth import audit
from app.auth.roles import Actor
from app.core.db import SessionFactory, read_only_unit, unit_of_work
from app.core.errors import Conflict
from app.core.faults import crash_point
from app.core.retry import RetryPolicy
from app.core.settings import Settings
from app.core.time import utcnow
from app.events import service as events
from app.pipelines import service as pipelines
from app.pipelines.models import Pipeline
from app.registry import service as registry
from app.registry.deploy import deploy
from app.registry.models import ModelVersion, Promotion
from app.registry.schemas import PromotionRead
from app.runs import transitions as t
from app.runs.models import Run
from app.spec.schema import BuiltinTarget, WebhookTarget

# Called in the promotion's transaction with what the deploy target said.
Fence = Callable[[Session, str], None]


@dataclass(frozen=True)
class Plan:
    pipeline_id: int
    pipeline_name: str
    action: str
    from_version: int | None
    to_version: int
    target: BuiltinTarget | WebhookTarget
    payload: dict[str, Any]
    # What the gate said of a version it rejected, when a person overrides it with force.
    overridden: str | None = None
    # Evidence the version carries into the ledger (production it could not compare with).
    carried: dict[str, Any] | None = None


@dataclass(frozen=True)
class Request:
    """Who asks for the change, why, and the gate evidence to keep in the ledger."""

    actor: Actor
    reason: str
    evidence: dict[str, Any]
    public_url: str
    url_allow: str | None = None  # MLOPS_HTTP_URL_ALLOW, for a webhook deploy target
    retry: RetryPolicy | None = None  # how a webhook deploy target is tried through a blip
    force: bool = False  # promote a version that a gate rejected


def manual_request(
    *, settings: Settings, actor: Actor, reason: str, force: bool = False
) -> Request:
    """A promotion or rollback asked for by a person, with the deploy settings it needs."""
    return Request(
        actor=actor,
        reason=reason,
        evidence={},
        public_url=settings.public_url,
        url_allow=settings.http_url_allow,
        force=force,
        retry=RetryPolicy.of(settings),
    )


def promote(
    factory: SessionFactory,
    *,
    name: str,
    version: int,
    request: Request,
    fence: Fence | None = None,
) -> PromotionRead:
    """Make `version` the production model of pipeline `name`."""
    with read_only_unit(factory) as session:
        pipeline = pipelines.get(session=session, name=name)
        target = registry.get(session=session, pipeline=pipeline, version=version)
        plan = _plan(session, pipeline, target, "promote", request)
    return _execute(factory, plan, request, fence)


def rollback(factory: SessionFactory, *, name: str, request: Request) -> PromotionRead:
    """Return production to the version that was live before the current one was promoted."""
    with read_only_unit(factory) as session:
        pipeline = pipelines.get(session=session, name=name)
        previous = _previous_version(session, pipeline)
        target = registry.get(session=session, pipeline=pipeline, version=previous)
        plan = _plan(session, pipeline, target, "rollback", request)
    return _execute(factory, plan, request, None)


def _execute(
    factory: SessionFactory, plan: Plan, request: Request, fence: Fence | None
) -> PromotionRead:
    # The deploy target is called with no transaction open: it may take seconds.
    detail = deploy(plan.target, plan.payload, request.url_allow, request.retry)
    with unit_of_work(factory) as session:
        if fence is not None:
            fence(session, detail)
        row = _switch(session, plan, request, detail)
        events.emit(session, EVENTS[plan.action], pipeline=plan.pipeline_name, data=_data(row))
        _audit(session, plan, request)
        read = PromotionRead.model_validate(row)
        crash_point("before_promotion_commit")
    return read


def _plan(
    session: Session, pipeline: Pipeline, target: ModelVersion, action: str, request: Request
) -> Plan:
    current = registry.production(session=session, pipeline_id=pipeline.id)
    if current is not None and current.version == target.version:
        raise Conflict(f"Version {target.version} of {pipeline.name} is already in production")
    # A rollback returns to a version that was production before: its gate was settled then.
    refusal = gate_refusal(session, target) if action == "promote" else None
    if refusal is not None and not request.force:
        raise Conflict(
            f"Version {target.version} of {pipeline.name} was rejected by its gate: {refusal} "
            '-- to promote it anyway, send {"force": true, "reason": "…"} '
            "(CLI: --force --reason …); the override is written in the ledger"
        )
    spec = pipelines.spec_of(pipeline)
    unscored = target.metrics.get("production_unscored")
    return Plan(
        pipeline_id=pipeline.id,
        pipeline_name=pipeline.name,
        action=action,
        from_version=current.version if current else None,
        to_version=target.version,
        target=spec.deployment.target,
        payload=_payload(pipeline, target, request.public_url),
        overridden=refusal,
        carried={"production_unscored": unscored} if unscored else None,
    )


def gate_refusal(session: Session, version: ModelVersion) -> str | None:
    """What a gate said of this version if it rejected it; None if it passed."""
    metrics = version.metrics or {}
    if "gate_passed" in metrics:
        return None if metrics["gate_passed"] else str(metrics.get("gate", "rejected"))
    # Versions recorded before the flag existed: their run says whether a gate rejected them.
    run = session.get(Run, version.run_id) if version.run_id is not None else None
    if run is not None and run.status == t.REJECTED:
        return run.error or "rejected"
    return None


def _switch(session: Session, plan: Plan, request: Request, detail: str) -> Promotion:
    # Every version is locked, so that two promotions of one pipeline queue and the second
    # sees the first's production; as rows of two columns, not as objects with their metrics
    # and params: a pipeline retrained for years has thousands of versions.
    stages = session.execute(
        select(ModelVersion.version, ModelVersion.stage)
        .where(ModelVersion.pipeline_id == plan.pipeline_id)
        .with_for_update()
    ).all()
    current = next((v for v, stage in stages if stage == registry.PRODUCTION), None)
    if current != plan.from_version:
        raise Conflict(
            f"Production changed to version {current} while deploying; nothing was changed, retry"
        )
    versions = {
        row.version: row
        for row in session.scalars(
            select(ModelVersion).where(
                ModelVersion.pipeline_id == plan.pipeline_id,
                ModelVersion.version.in_(
                    [plan.to_version, *([current] if current is not None else [])]
                ),
            )
        )
    }
    if current is not None:
        versions[current].stage = registry.ARCHIVED
        session.flush()  # the one-production index must see the old row leave first
    promoted = versions[plan.to_version]
    promoted.stage = registry.PRODUCTION
    promoted.promoted_at = utcnow()
    _approve_run(session, promoted.run_id)
    row = Promotion(
        pipeline_id=plan.pipeline_id,
        action=plan.action,
        from_version=plan.from_version,
        to_version=plan.to_version,
        actor=request.actor.label,
        reason=request.reason,
        evidence={**request.evidence, **(plan.carried or {}), "deploy": detail},
        forced=plan.overridden is not None,
        gate_reason=plan.overridden,
    )
    session.add(row)
    session.flush()
    return row


EVENTS = {"promote": "model.promoted", "rollback": "model.rolled_back"}


def _data(row: Promotion) -> dict[str, Any]:
    return {
        "version": row.to_version,
        "from_version": row.from_version,
        "run": row.evidence.get("run_id"),
        "reason": row.reason,
        "actor": row.actor,
    }


def _audit(session: Session, plan: Plan, request: Request) -> None:
    audit.record(
        session=session,
        actor=request.actor,
        action=f"model.{plan.action}",
        target=f"pipelines/{plan.pipeline_name}",
        detail={
            "from_version": plan.from_version,
            "to_version": plan.to_version,
            "reason": request.reason,
            **({"forced": True, "gate_reason": plan.overridden} if plan.overridden else {}),
        },
    )


def _approve_run(session: Session, run_id: int | None) -> None:
    run = session.get(Run, run_id, options=[lazyload(Run.steps)]) if run_id is not None else None
    if run is not None and run.status == t.AWAITING_APPROVAL:
        t.transition(session, run, t.COMPLETED)


def _previous_version(session: Session, pipeline: Pipeline) -> int:
    current = registry.production(session=session, pipeline_id=pipeline.id)
    if current is None:
        raise Conflict(f"Pipeline {pipeline.name} has no production version to roll back")
    previous = session.scalars(
        select(Promotion.from_version)
        .where(
            Promotion.pipeline_id == pipeline.id,
            Promotion.action == "promote",
            Promotion.to_version == current.version,
        )
        .order_by(Promotion.id.desc())
    ).first()
    if previous is None:
        raise Conflict(
            f"Pipeline {pipeline.name} has no earlier production version than "
            f"{current.version} to roll back to"
        )
    return previous


def _payload(pipeline: Pipeline, version: ModelVersion, public_url: str) -> dict[str, Any]:
    base = public_url.rstrip("/")
    return {
        "pipeline": pipeline.name,
        "version": version.version,
        "sha256": version.sha256,
        "estimator": version.estimator,
        "features": version.features,
        "metrics": version.metrics,
        "params": version.params,
        "run_id": version.run_id,
        "artifact_url": f"{base}/api/v1/pipelines/{pipeline.name}"
        f"/models/{version.version}/artifact",
    }
