"""The HTTP edge (thin): /api, the OpenAI-compatible /v1, /healthz, the /doc reader, /embed and widget.js; the
Gradio UI is mounted last, at '/'. Each area is a router; what they share is the app's `Context`."""
from __future__ import annotations

from fastapi import FastAPI, HTTPException

from ..service import Assistant
from ..settings import Settings, check_auth_setup
from . import ask, documents, middleware, pages, v1
from .context import Context, public_meta

__all__ = ["create_app", "public_meta"]


def create_app(settings: Settings, assistant: Assistant | None = None, with_ui: bool = True) -> FastAPI:
    """The one application: API routes first, then the Gradio UI mounted at '/'."""
    # root_path (a reverse proxy's sub-path) is given to uvicorn in cli.serve; links read it from the request.
    if with_ui:
        check_auth_setup(settings.server)
    # /docs and /redoc would load their scripts from a CDN, which an offline intranet cannot reach: they are off,
    # and the schema is served as /openapi.json for any local viewer.
    app = FastAPI(title="Policy assistant", description="Cited answers from Chinese policy documents",
                  docs_url=None, redoc_url=None)
    ctx = app.state.ctx = Context(settings, assistant)
    middleware.install(app, settings.server)
    for area in (ask, documents, v1, pages):
        app.include_router(area.router)

    @app.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
    @app.api_route("/v1/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
    def unknown(rest: str):
        # Without this the UI mounted at '/' would answer unknown API paths with its own body shape.
        raise HTTPException(404, "没有这个接口 / no such endpoint")

    app.state.get_assistant = ctx.assistant  # `serve` loads the model and opens the index before the first request
    if with_ui:
        from ..ui import mount_ui

        mount_ui(app, settings, ctx.assistant, ctx.uploads, ctx.doc_token, ctx.conversations())
    return app
