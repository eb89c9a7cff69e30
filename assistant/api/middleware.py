"""What wraps every request: CORS, the login rate limit, the zh-CN page, the framing policy, and one error shape
({"error": {"status", "message"}}) for every failure, a stack trace never."""
from __future__ import annotations

import logging
import re
import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ingest.schema import IndexEmpty

from ..settings import ServerSettings
from .context import error

log = logging.getLogger(__name__)


def install(app: FastAPI, srv: ServerSettings) -> None:
    """The middleware and the error handlers, on `app`."""
    if srv.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=srv.cors_origins, allow_methods=["GET", "POST", "PUT", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    login_attempts: dict[str, list[float]] = {}

    @app.middleware("http")
    async def login_rate_limit(request: Request, call_next):
        """At most LOGIN_ATTEMPTS_PER_MINUTE tries at the UI login per client address: guessing is slow."""
        if not (request.method == "POST" and request.url.path.rstrip("/").endswith("/login")):
            return await call_next(request)
        now, who = time.monotonic(), request.client.host if request.client else "?"
        recent = [t for t in login_attempts.get(who, []) if now - t < 60]
        if len(recent) >= srv.login_attempts_per_minute:
            return error(429, "登录尝试过多，请一分钟后再试 / too many login attempts, try again in a minute")
        response = await call_next(request)
        if response.status_code >= 400:  # only failed tries count: a proxy's many users logging in are fine
            login_attempts[who] = recent + [now]
            if len(login_attempts) > 10_000:  # bounded memory under a spray of addresses: drop the quiet ones
                for k in [k for k, ts in login_attempts.items() if not ts or now - ts[-1] >= 60]:
                    login_attempts.pop(k, None)
        return response

    @app.middleware("http")
    async def chinese_page(request: Request, call_next):
        """Gradio's page says <html lang="en">: Chinese would be drawn with Japanese glyph forms and read aloud
        as English. The chat's own page is rewritten to zh-CN (only that HTML, nothing streamed)."""
        response = await call_next(request)
        if (request.method != "GET" or response.status_code != 200 or request.url.path.rstrip("/") != ""
                or not response.headers.get("content-type", "").startswith("text/html")):
            return response
        body = b"".join([chunk async for chunk in response.body_iterator])
        body = re.sub(rb'<html(\s+)lang="en"', rb'<html\1lang="zh-CN"', body, count=1)
        out = Response(body, status_code=200, media_type=response.media_type)
        out.raw_headers = [(k, v) for k, v in response.raw_headers if k.lower() != b"content-length"] + [
            (b"content-length", str(len(body)).encode())]
        return out

    @app.middleware("http")
    async def frame_policy(request: Request, call_next):
        response = await call_next(request)
        ancestors = " ".join(["'self'", *srv.frame_ancestors])
        response.headers["Content-Security-Policy"] = f"frame-ancestors {ancestors}"
        return response

    _error_shape(app)


def _error_shape(app: FastAPI) -> None:
    """Every failure, ours or the framework's, as {"error": {"status", "message"}}."""

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", []) if x != "body")
        return error(422, f"请求格式错误 / invalid request: {where} {first.get('msg', '')}".strip())

    @app.exception_handler(IndexEmpty)
    async def empty(_: Request, exc: IndexEmpty):
        return error(503, f"索引为空 / {exc}")

    @app.exception_handler(Exception)
    async def crash(_: Request, exc: Exception):
        log.exception("unhandled error")
        return error(500, "内部错误，请查看服务器日志 / internal error, see the server log")

    @app.exception_handler(StarletteHTTPException)  # FastAPI's HTTPException and routing's 404/405 alike
    async def http_error(_: Request, exc: StarletteHTTPException):
        return error(exc.status_code, str(exc.detail))
