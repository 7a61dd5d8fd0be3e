"""Pipelines as GET responses show them, memoised on the stored values they are made from.

Parsing a stored spec, masking its secrets and rendering it as JSON cost far more than reading
the row. Each memo here is keyed on the row's own columns as read in the same request (the
spec's stored JSON text among them) and is a pure function of that key, so a hit returns
exactly what computing afresh would: a change made through any replica changes the key.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache

from sqlalchemy import Integer, Row, Text, bindparam, cast, func, select

from app.core.db import Reader
from app.pipelines import masking
from app.pipelines.models import Pipeline
from app.pipelines.schemas import PipelineRead
from app.pipelines.service import missing, parse_ref, parse_stored
from app.spec.schema import SLUG, PipelineSpec

MEMO_SIZE = 4096
# The spec as the database keeps it: the memo key, and what a miss parses.
SPEC_TEXT = cast(Pipeline.spec, Text).label("spec_text")
READ_COLUMNS = (
    Pipeline.id,
    Pipeline.name,
    Pipeline.paused,
    Pipeline.created_at,
    Pipeline.updated_at,
    Pipeline.archived_at,
    SPEC_TEXT,
)
LIVE = Pipeline.archived_at.is_(None)
# Built once: constructing a statement costs more than running one of these.
ONE = select(*READ_COLUMNS).where(Pipeline.name == bindparam("name"), LIVE)
BY_ID = select(*READ_COLUMNS).where(Pipeline.id == bindparam("id"))
LIMIT = bindparam("limit", type_=Integer)
OFFSET = bindparam("offset", type_=Integer)
PAGE = select(*READ_COLUMNS).where(LIVE).order_by(Pipeline.name).limit(LIMIT).offset(OFFSET)
# Live before archived within a name, archived ones oldest first.
PAGE_ALL = (
    select(*READ_COLUMNS)
    .order_by(Pipeline.name, Pipeline.archived_at.is_not(None), Pipeline.id)
    .limit(LIMIT)
    .offset(OFFSET)
)
COUNT = select(func.count()).select_from(Pipeline).where(LIVE)
COUNT_ALL = select(func.count()).select_from(Pipeline)


@lru_cache(maxsize=MEMO_SIZE)
def spec_from_text(name: str, text: str) -> PipelineSpec:
    """Pipeline `name`'s stored spec (its JSON text) as a model; shared: never mutate it."""
    return parse_stored(name, json.loads(text))


@lru_cache(maxsize=MEMO_SIZE)
def _read_json(
    key: tuple[int, str, bool, datetime, datetime, datetime | None], spec_text: str
) -> bytes:
    pipeline_id, name, paused, created_at, updated_at, archived_at = key
    spec = spec_from_text(name, spec_text)
    read = PipelineRead(
        name=name,
        ref=name if archived_at is None else f"{name}@{pipeline_id}",
        archived_at=archived_at,
        description=spec.description,
        paused=paused,
        spec=masking.masked(spec),
        created_at=created_at,
        updated_at=updated_at,
    )
    return read.model_dump_json().encode()


def read_json(row: Row[int, str, bool, datetime, datetime, datetime | None, str]) -> bytes:
    """The PipelineRead JSON of a row of READ_COLUMNS."""
    key = (row.id, row.name, row.paused, row.created_at, row.updated_at, row.archived_at)
    return _read_json(key, row.spec_text)


def one_json(*, session: Reader, name: str) -> bytes:
    """GET /pipelines/{name}'s body (an archived one by its ref `name@id`); NotFound if
    there is no such pipeline."""
    row = None
    if SLUG.fullmatch(name):
        row = session.execute(ONE, {"name": name}).one_or_none()
    elif (ref := parse_ref(name)) is not None:
        row = session.execute(BY_ID, {"id": ref[1]}).one_or_none()
        row = row if row is not None and row.name == ref[0] else None
    if row is None:
        raise missing(name)
    return read_json(row)


def page_json(*, session: Reader, limit: int, offset: int, include_archived: bool) -> bytes:
    """GET /pipelines' body: pipelines by name, one page, and the total count."""
    total = session.scalar(COUNT_ALL if include_archived else COUNT) or 0
    page = PAGE_ALL if include_archived else PAGE
    rows = session.execute(page, {"limit": limit, "offset": offset}).all()
    items = b",".join(read_json(row) for row in rows)
    tail = f'],"total":{total},"limit":{limit},"offset":{offset}}}'.encode()
    return b'{"items":[' + items + tail
