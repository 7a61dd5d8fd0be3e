"""Pipelines: create, read, replace, delete, pause and resume. Functions flush, never commit."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core import signing
from app.core.errors import Conflict, InvalidSpec, NotFound, StoredSpecInvalid, field_error
from app.core.problems import dotted
from app.core.time import utcnow
from app.pipelines import masking
from app.pipelines.models import Pipeline
from app.spec.identity import trigger_id
from app.spec.schema import SLUG, PipelineSpec


def get(*, session: Session, name: str) -> Pipeline:
    """The pipeline called `name`, or NotFound."""
    pipeline = find(session=session, name=name)
    if pipeline is None:
        raise NotFound(f"Pipeline {_shown(name)} does not exist")
    return pipeline


def find(*, session: Session, name: str) -> Pipeline | None:
    """The pipeline called `name`, if any."""
    # Only a slug can name a pipeline; anything else (a NUL byte PostgreSQL cannot even
    # compare, a 10 kB string) is answered without asking the database.
    if not SLUG.fullmatch(name):
        return None
    return session.scalars(select(Pipeline).where(Pipeline.name == name)).one_or_none()


def list_page(*, session: Session, limit: int, offset: int) -> tuple[list[Pipeline], int]:
    """Pipelines by name, one page, and the total count."""
    total = session.scalar(select(func.count()).select_from(Pipeline)) or 0
    rows = session.scalars(select(Pipeline).order_by(Pipeline.name).limit(limit).offset(offset))
    return list(rows), total


def create(*, session: Session, spec: PipelineSpec) -> Pipeline:
    """A new pipeline with a fresh webhook secret; Conflict if the name is taken."""
    if find(session=session, name=spec.name) is not None:
        raise Conflict(f"Pipeline {spec.name} already exists")
    spec = masking.restored(spec, None)  # a *** here stands for nothing: refused
    pipeline = Pipeline(
        name=spec.name,
        spec=spec.model_dump(mode="json"),
        webhook_secret=new_webhook_secret(),
    )
    session.add(pipeline)
    session.flush()
    return pipeline


def replace(*, session: Session, pipeline: Pipeline, spec: PipelineSpec) -> Pipeline:
    """Replace the spec; the name in the spec must be the pipeline's own."""
    if spec.name != pipeline.name:
        msg = (
            f"must match the pipeline being replaced ({pipeline.name!r}); renaming is not supported"
        )
        raise InvalidSpec(f"name: {msg}", errors=[field_error("name", msg)])
    # A spec sent back as GET showed it keeps the stored secrets (a stored spec that no longer
    # loads keeps none: the new one must say them in full).
    stored = stored_spec_or_none(pipeline)
    spec = masking.restored(spec, stored)
    new_spec = spec.model_dump(mode="json")
    if new_spec != pipeline.spec:
        if stored is None or _time_trigger_ids(spec) != _time_trigger_ids(stored):
            # A changed schedule starts counting now: editing it never fires a run by itself.
            pipeline.schedule_anchor_at = utcnow()
        pipeline.spec = new_spec
        _touch(pipeline)
    session.flush()
    return pipeline


def delete(*, session: Session, pipeline: Pipeline) -> None:
    """Delete a pipeline and its history (runs.ensure_idle first: never under an active run)."""
    session.delete(pipeline)
    session.flush()


def set_paused(
    *, session: Session, pipeline: Pipeline, paused: bool, replay: bool = False
) -> Pipeline:
    """Pause or resume the pipeline's triggers (manual runs stay possible).

    Resuming does not replay the ticks of the paused period unless `replay` is asked for;
    then the misfire policy decides what they become.
    """
    if pipeline.paused != paused:
        pipeline.paused = paused
        if not paused and not replay:
            pipeline.schedule_anchor_at = utcnow()
        _touch(pipeline)
        session.flush()
    return pipeline


def new_webhook_secret() -> str:
    """A fresh webhook secret: `whsec_` and 256 random bits in base64 (Standard Webhooks)."""
    return signing.new_secret()


def spec_of(pipeline: Pipeline) -> PipelineSpec:
    """The stored spec as a model; StoredSpecInvalid (409) if it was stored before a rule it
    breaks existed, with the field and what to do."""
    return parse_stored(pipeline.name, pipeline.spec)


def parse_stored(name: str, document: dict[str, Any]) -> PipelineSpec:
    """`document` (pipeline `name`'s stored spec) as a model; see spec_of."""
    try:
        return PipelineSpec.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise StoredSpecInvalid(
            f"Pipeline {name}'s stored spec no longer passes validation "
            f"({dotted(tuple(first['loc']))}: {first['msg']}); replace it with a valid spec "
            f"(PUT /api/v1/pipelines/{name}) or delete the pipeline"
        ) from exc


def stored_spec_or_none(pipeline: Pipeline) -> PipelineSpec | None:
    """The stored spec, or None if it no longer passes validation."""
    try:
        return spec_of(pipeline)
    except StoredSpecInvalid:
        return None


def _shown(name: str) -> str:
    """The name as typed, or escaped when it holds characters a person could not see or
    type as they are (control, invisible, right-to-left or look-alike characters)."""
    plain = name.isascii() and name.isprintable()
    return name[:100] if plain else ascii(name[:100])


def _time_trigger_ids(spec: PipelineSpec) -> set[str]:
    return {trigger_id(t) for t in spec.triggers if t.kind in ("cron", "interval")}


def _touch(pipeline: Pipeline) -> None:
    pipeline.generation += 1
    pipeline.updated_at = utcnow()
