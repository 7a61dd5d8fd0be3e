from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from app.api.deps import OperatorDep, Services, ServicesDep, SessionDep
from app.auth.roles import Actor
from app.monitoring import service
from app.monitoring.schemas import MetricEvaluationRead, ObservationsAccepted, ObservationsPost
from app.pipelines import service as pipelines
from app.triggers import metric

router = APIRouter(tags=["monitoring"])


@router.post(
    "/pipelines/{name}/metrics",
    status_code=status.HTTP_202_ACCEPTED,
    responses={404: {"description": "No such pipeline"}},
)
async def post_metrics(
    name: str,
    body: ObservationsPost,
    actor: OperatorDep,
    session: SessionDep,
    services: ServicesDep,
) -> ObservationsAccepted:
    """Record observations about the production model and judge its metric triggers at once."""
    # Not a sync route (as the new-data webhook): FastAPI validates a sync route's answer on
    # one more pool thread before the session commits, while a breach holds the pipeline's
    # lock. Here all database work is one pool call and the answer is checked on the loop.
    return await run_in_threadpool(_record_and_judge, name, body, actor, session, services)


def _record_and_judge(
    name: str, body: ObservationsPost, actor: Actor, session: Session, services: Services
) -> ObservationsAccepted:
    pipeline = pipelines.get(session=session, name=name)
    version = service.production_version(session=session, pipeline=pipeline)
    accepted = service.record(
        session=session, pipeline=pipeline, version=version, observations=body.observations
    )
    evaluations = metric.evaluate_after_ingest(
        session,
        pipeline,
        {item.metric for item in body.observations},
        version=version,
        dispatch=services.executor.submit,
        actor=actor.label,
    )
    return ObservationsAccepted(
        accepted=accepted,
        fired=[e.run_id for e in evaluations if e.run_id is not None],
        evaluations=[MetricEvaluationRead.model_validate(e) for e in evaluations],
    )
