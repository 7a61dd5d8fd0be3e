from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import AdminDep, SessionDep
from app.auth import audit
from app.core.time import utcnow
from app.ops import retention

router = APIRouter(tags=["operations"])
# A day at least: the newest runs hold the keys that make a scheduled tick fire once.
MIN_AGE_S = 86_400


class PruneRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    older_than_s: int = Field(ge=MIN_AGE_S, le=100 * 366 * 86_400, description="Age cut-off")


class PruneResult(BaseModel):
    before: str = Field(description="The cut-off (ISO 8601, UTC): older records went")
    runs: int
    data_batches: int
    observations: int


@router.post("/prune")
def prune(body: PruneRequest, actor: AdminDep, session: SessionDep) -> PruneResult:
    """Delete finished runs, data batches and observations older than the cut-off; runs that
    made a model version, model versions and artifacts stay."""
    before = utcnow() - timedelta(seconds=body.older_than_s)
    pruned = retention.prune(session=session, before=before)
    audit.record(
        session=session,
        actor=actor,
        action="prune",
        target="runs",
        detail={"before": before.isoformat(), **vars(pruned)},
    )
    return PruneResult(before=before.isoformat(), **vars(pruned))
