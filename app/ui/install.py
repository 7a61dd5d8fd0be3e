"""Mount the dashboard on the app: its pages, forms, static assets and session signer."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app.core.settings import Settings
from app.ui import actions, login, pages
from app.ui.session import Signer, load_secret

STATIC = Path(__file__).parent / "static"


def install_ui(app: FastAPI, settings: Settings) -> None:
    """Serve the dashboard under /ui (the app's state must hold its services)."""
    app.state.ui_signer = Signer(load_secret(settings), settings.ui_session_s)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    app.include_router(login.router)
    app.include_router(pages.router)
    app.include_router(actions.router)
