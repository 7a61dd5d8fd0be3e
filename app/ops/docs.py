"""Swagger UI 5 (reads OpenAPI 3.1) served from files vendored in this package, so /docs works
with no internet. scripts/vendor_swagger_ui.sh refreshes them from npm's swagger-ui-dist."""

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_PATH = "/static/swagger-ui"
DOCS_PATH = "/docs"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
ASSETS = Path(__file__).parent / "swagger_ui"

# Swagger UI otherwise sends the spec to validator.swagger.io and shows the verdict as a badge:
# a request off the machine, and a leak of the API's description.
_OFFLINE_PARAMETERS: dict[str, Any] = {"validatorUrl": None}
# The key typed into "Authorize" survives a reload of the page (kept in the browser's
# localStorage, which only this origin's pages can read).
_DEFAULT_PARAMETERS: dict[str, Any] = {"persistAuthorization": True}


def install_docs(app: FastAPI) -> None:
    """Serve Swagger UI at /docs from local assets; a no-op when the app has no OpenAPI URL."""
    openapi_url = app.openapi_url
    if openapi_url is None:
        return
    app.mount(
        STATIC_PATH,
        StaticFiles(directory=ASSETS),
        name="swagger-ui",
    )
    parameters = {**_DEFAULT_PARAMETERS, **(app.swagger_ui_parameters or {}), **_OFFLINE_PARAMETERS}

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        """Swagger UI for this API."""
        # Behind a proxy that strips a prefix, every URL the page loads must carry it back.
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{STATIC_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC_PATH}/favicon-32x32.png",
            oauth2_redirect_url=root + OAUTH2_REDIRECT_PATH,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=parameters,
        )

    @app.get(OAUTH2_REDIRECT_PATH, include_in_schema=False)
    async def swagger_ui_oauth2_redirect() -> HTMLResponse:
        """Where Swagger UI's OAuth2 flows return to."""
        return get_swagger_ui_oauth2_redirect_html()
