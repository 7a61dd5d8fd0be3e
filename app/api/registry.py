from __future__ import annotations

from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Body
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from app.api.deps import OperatorDep, ReadSessionDep, Services, ServicesDep, ViewerDep
from app.auth.roles import Actor
from app.core.db import read_only_unit
from app.core.errors import InvalidInput, NotFound, field_error
from app.pipelines import service as pipelines
from app.registry import promotion, service
from app.registry.schemas import (
    ModelVersionRead,
    PredictRequest,
    PredictResponse,
    PromoteRequest,
    PromotionRead,
    RollbackRequest,
)
from app.registry.serving import LoadedModel

router = APIRouter(prefix="/pipelines/{name}", tags=["models"])


@router.get("/models")
def list_models(name: str, viewer: ViewerDep, session: ReadSessionDep) -> list[ModelVersionRead]:
    """Every model version, newest first."""
    pipeline = pipelines.get_readable(session=session, name=name)
    return [
        ModelVersionRead.model_validate(v)
        for v in service.list_versions(session=session, pipeline=pipeline)
    ]


@router.get("/models/{version}")
def get_model(
    name: str, version: int, viewer: ViewerDep, session: ReadSessionDep
) -> ModelVersionRead:
    """One model version: metrics, params, data fingerprint, stage."""
    pipeline = pipelines.get_readable(session=session, name=name)
    return ModelVersionRead.model_validate(
        service.get(session=session, pipeline=pipeline, version=version)
    )


@router.get("/models/{version}/artifact", response_class=Response)
def get_artifact(
    name: str, version: int, viewer: ViewerDep, session: ReadSessionDep, services: ServicesDep
) -> Response:
    """The version's artifact file (skops), verified against its sha256 first."""
    pipeline = pipelines.get_readable(session=session, name=name)
    row = service.get(session=session, pipeline=pipeline, version=version)
    if row.artifact_purged_at is not None:
        raise NotFound(
            f"Version {version} of {pipelines.ref_of(pipeline)}: its artifact was purged "
            f"at {row.artifact_purged_at.isoformat()}"
        )
    data = services.artifacts.read_verified(row.artifact_uri, row.sha256)
    return Response(
        data,
        media_type="application/octet-stream",
        headers={
            "X-Model-Sha256": row.sha256,
            "Content-Disposition": f'attachment; filename="{name}-v{version}.skops"',
        },
    )


def _request(
    services: Services, actor: Actor, reason: str, force: bool = False
) -> promotion.Request:
    return promotion.manual_request(
        settings=services.settings, actor=actor, reason=reason, force=force
    )


@router.post(
    "/models/{version}/promote",
    responses={
        409: {
            "description": "A gate rejected the version (send force and a reason), or it "
            "is already in production"
        },
        502: {"description": "The deploy target refused"},
    },
)
def promote_model(
    name: str,
    version: int,
    actor: OperatorDep,
    services: ServicesDep,
    body: Annotated[PromoteRequest | None, Body()] = None,
) -> PromotionRead:
    """Make a version the production model (runs the deploy target first); a version a gate
    rejected needs `force` and a reason."""
    reason = (
        body.reason if body and body.reason else None
    ) or f"manual promotion of version {version}"
    request = _request(services, actor, reason, force=bool(body and body.force))
    return promotion.promote(services.factory, name=name, version=version, request=request)


@router.post("/rollback", responses={502: {"description": "The deploy target refused"}})
def rollback_model(
    name: str,
    actor: OperatorDep,
    services: ServicesDep,
    body: Annotated[RollbackRequest | None, Body()] = None,
) -> PromotionRead:
    """Return production to the version that was live before the current one."""
    reason = (body.reason if body and body.reason else None) or "manual rollback"
    return promotion.rollback(
        services.factory, name=name, request=_request(services, actor, reason)
    )


@router.get("/promotions")
def list_promotions(name: str, viewer: ViewerDep, session: ReadSessionDep) -> list[PromotionRead]:
    """The promotion ledger, newest first."""
    pipeline = pipelines.get_readable(session=session, name=name)
    return [
        PromotionRead.model_validate(p) for p in service.ledger(session=session, pipeline=pipeline)
    ]


@router.post("/predict")
async def predict(
    name: str, body: PredictRequest, viewer: ViewerDep, services: ServicesDep
) -> PredictResponse:
    """Predictions from the production model (a read: viewer keys may call it)."""
    loaded = await run_in_threadpool(_production_model, services, name)
    predictions = await run_in_threadpool(_predict, loaded, body.instances)
    return PredictResponse(predictions=predictions, model_version=loaded.version)


def _production_model(services: Services, name: str) -> LoadedModel:
    # A short transaction: the model is loaded (once) and used with no transaction open.
    with read_only_unit(services.factory) as session:
        pipeline = pipelines.get(session=session, name=name)
        ref = service.production_ref(session=session, pipeline_id=pipeline.id)
    if ref is None:
        raise NotFound(f"Pipeline {name} has no production model yet")
    return services.models.get(ref)


def _predict(loaded: LoadedModel, instances: list[dict[str, Any]]) -> list[Any]:
    missing = sorted({f for f in loaded.features for row in instances if f not in row})
    if missing:
        uses = ", ".join(map(str, loaded.features))
        msg = f"missing feature(s) {', '.join(map(str, missing))}; the model uses {uses}"
        raise InvalidInput(f"instances: {msg}", errors=[field_error("body.instances", msg)])
    frame = pd.DataFrame(instances, columns=loaded.features)
    try:
        values = loaded.model.predict(frame)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            f"instances: {exc}", errors=[field_error("body.instances", str(exc))]
        ) from exc
    return [v.item() if hasattr(v, "item") else v for v in values]
