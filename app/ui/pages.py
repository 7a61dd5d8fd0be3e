"""The dashboard's pages: the pipeline list, a pipeline, a run (and its live fragment)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from app.core.db import MAX_OFFSET, read_only_unit
from app.core.errors import DomainError
from app.pipelines.models import Pipeline
from app.runs import service as runs
from app.ui import views
from app.ui.deps import Viewer, services_of, viewer_of
from app.ui.render import base, error, page, see_other

router = APIRouter(prefix="/ui", include_in_schema=False)
MAX_PAGE = MAX_OFFSET // views.PAGE_SIZE


def _login(request: Request) -> Response:
    return see_other(f"{base(request)}/login")


@router.get("")
def home(
    request: Request,
    q: Annotated[str, Query(max_length=64)] = "",
    page_number: Annotated[int, Query(alias="page", ge=1, le=MAX_PAGE)] = 1,
) -> Response:
    """Every pipeline (a page at a time) with its status, last and next run, production."""
    viewer = viewer_of(request)
    if viewer is None:
        return _login(request)
    with read_only_unit(services_of(request).factory) as session:
        shown = views.home(session=session, query=q.strip(), page=page_number)
        return page(request, "home.html", viewer, home=shown)


@router.get("/pipelines/{name}")
def pipeline(request: Request, name: str) -> Response:
    """One pipeline: charts, runs, versions, the ledger, next fires, actions."""
    viewer = viewer_of(request)
    if viewer is None:
        return _login(request)
    with read_only_unit(services_of(request).factory) as session:
        try:
            shown = views.pipeline_page(session=session, name=name)
        except DomainError as exc:
            return error(request, viewer, exc.status_code, exc.detail, "")
        return page(request, "pipeline.html", viewer, p=shown)


@router.get("/runs/{run_id}")
def run(request: Request, run_id: int) -> Response:
    """One run: its five steps (live while it goes), error and metrics."""
    return _run(request, run_id, "run.html")


@router.get("/runs/{run_id}/live")
def run_live(request: Request, run_id: int) -> Response:
    """The part of the run page that changes while the run goes (polled every second)."""
    return _run(request, run_id, "run_live.html")


def _run(request: Request, run_id: int, template: str) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return _login(request)
    with read_only_unit(services_of(request).factory) as session:
        try:
            found = runs.get(session=session, run_id=run_id)
        except DomainError as exc:
            return error(request, viewer, exc.status_code, exc.detail, "")
        owner = session.get(Pipeline, found.pipeline_id)
        return _run_page(request, viewer, template, views.run_row(found), owner)


def _run_page(
    request: Request, viewer: Viewer, template: str, row: views.RunRow, owner: Pipeline | None
) -> Response:
    name = owner.name if owner else ""
    return page(request, template, viewer, r=row, pipeline_name=name, steps=row.run.steps)
