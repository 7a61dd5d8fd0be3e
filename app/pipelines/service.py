"""Pipelines: create, read, replace, archive, pause and resume. Functions flush, never commit."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select, true
from sqlalchemy.orm import Session

from app.auth import audit
from app.auth.roles import Actor
from app.core import signing
from app.core.db import MAX_ID, after_commit
from app.core.errors import Conflict, InvalidSpec, NotFound, StoredSpecInvalid, field_error
from app.core.problems import dotted
from app.core.time import utcnow
from app.pipelines import masking
from app.pipelines.models import Pipeline
from app.spec.identity import trigger_id
from app.spec.schema import SLUG, PipelineSpec

# An archived pipeline is named `name@id` (its id, shown in its `ref`); a bare name is the
# live pipeline of that name. The id tells apart histories that shared a name.
REF = re.compile(r"(?P<name>[a-z0-9-]{1,64})@(?P<id>[0-9]{1,10})")


def get(*, session: Session, name: str) -> Pipeline:
    """The live pipeline called `name`, or NotFound; Conflict for an archived one's ref."""
    pipeline = find(session=session, name=name)
    if pipeline is not None:
        return pipeline
    archived = _by_ref(session, name)
    if archived is not None:
        raise Conflict(
            f"Pipeline {ref_of(archived)} is archived: its history stays readable, "
            "but it never runs and cannot change"
        )
    raise missing(name)


def get_live(*, session: Session, name: str) -> Pipeline:
    """The live pipeline called `name`, or NotFound, saying nothing of archived ones (for
    callers that have not proven who they are yet)."""
    pipeline = find(session=session, name=name)
    if pipeline is None:
        raise missing(name)
    return pipeline


def missing(name: str) -> NotFound:
    """The error for a pipeline `name` that does not exist."""
    return NotFound(f"Pipeline {_shown(name)} does not exist")


def get_readable(*, session: Session, name: str) -> Pipeline:
    """The live pipeline `name`, or any pipeline, archived too, by its ref `name@id`."""
    pipeline = find(session=session, name=name) or _by_ref(session, name)
    if pipeline is None:
        raise missing(name)
    return pipeline


def find(*, session: Session, name: str) -> Pipeline | None:
    """The live pipeline called `name`, if any."""
    # Only a slug can name a pipeline; anything else (a NUL byte PostgreSQL cannot even
    # compare, a 10 kB string) is answered without asking the database.
    if not SLUG.fullmatch(name):
        return None
    return session.scalars(
        select(Pipeline).where(Pipeline.name == name, Pipeline.archived_at.is_(None))
    ).one_or_none()


def parse_ref(ref: str) -> tuple[str, int] | None:
    """The name and id in an archived pipeline's ref `name@id`, if `ref` is one."""
    match = REF.fullmatch(ref)
    if match is None or not SLUG.fullmatch(match["name"]) or int(match["id"]) > MAX_ID:
        return None
    return match["name"], int(match["id"])


def _by_ref(session: Session, ref: str) -> Pipeline | None:
    parsed = parse_ref(ref)
    pipeline = session.get(Pipeline, parsed[1]) if parsed is not None else None
    if pipeline is None or parsed is None or pipeline.name != parsed[0]:
        return None
    return pipeline


def ref_of(pipeline: Pipeline) -> str:
    """How to address the pipeline: its name while live, `name@id` once archived."""
    return pipeline.name if pipeline.archived_at is None else f"{pipeline.name}@{pipeline.id}"


def list_page(
    *,
    session: Session,
    limit: int,
    offset: int,
    include_archived: bool = False,
    name_contains: str = "",
) -> tuple[list[Pipeline], int]:
    """Pipelines by name (live before archived; those whose name contains `name_contains`),
    one page, and the total count."""
    where = Pipeline.name.contains(name_contains, autoescape=True) if name_contains else true()
    query = select(Pipeline).where(where)
    if not include_archived:
        query = query.where(Pipeline.archived_at.is_(None))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    order = (Pipeline.name, Pipeline.archived_at.is_not(None), Pipeline.id)
    rows = session.scalars(query.order_by(*order).limit(limit).offset(offset))
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


def archive(*, session: Session, pipeline: Pipeline) -> Pipeline:
    """Archive the pipeline (runs.ensure_idle first): it never fires again, its runs,
    versions, ledger and audit rows stay, and its name is free for a new pipeline."""
    pipeline.archived_at = utcnow()
    pipeline.paused = True
    _touch(pipeline)  # schedulers in every process notice and drop its jobs
    session.flush()
    return pipeline


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


def pause_or_resume(
    *,
    session: Session,
    name: str,
    actor: Actor,
    paused: bool,
    nudge: Callable[[], None],
    replay: bool = False,
) -> Pipeline:
    """set_paused on `actor`'s behalf, audited; `nudge` tells the scheduler once committed."""
    after_commit(session, nudge)
    pipeline = get(session=session, name=name)
    detail: dict[str, Any] = {"was_paused": pipeline.paused}
    if not paused:
        detail["replay"] = replay
    action = "pipeline.pause" if paused else "pipeline.resume"
    audit.record(
        session=session, actor=actor, action=action, target=f"pipelines/{name}", detail=detail
    )
    return set_paused(session=session, pipeline=pipeline, paused=paused, replay=replay)


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
