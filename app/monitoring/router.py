from __future__ import annotations

from fastapi import APIRouter, status

from app.deps import OperatorDep, ServicesDep, SessionDep
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
def post_metrics(
    name: str,
    body: ObservationsPost,
    actor: OperatorDep,
    session: SessionDep,
    services: ServicesDep,
) -> ObservationsAccepted:
    """Record observations about the production model and judge its metric triggers at once."""
    pipeline = pipelines.get(session=session, name=name)
    accepted = service.record(session=session, pipeline=pipeline, observations=body.observations)
    evaluations = metric.evaluate_after_ingest(
        session,
        pipeline,
        {item.metric for item in body.observations},
        dispatch=services.executor.submit,
        actor=actor.label,
    )
    return ObservationsAccepted(
        accepted=accepted,
        fired=[e.run_id for e in evaluations if e.run_id is not None],
        evaluations=[MetricEvaluationRead.model_validate(e) for e in evaluations],
    )
