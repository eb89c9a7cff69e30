"""FastAPI routes (thin): /api, OpenAI-compatible /v1, /healthz, /embed and widget.js; the Gradio UI is mounted last."""
from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
import uuid
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, File, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ingest.chunk import references
from ingest.schema import IndexEmpty

from .service import Assistant, build_assistant
from .uploads import UploadService
from .settings import Settings, check_auth_setup, same_secret

log = logging.getLogger(__name__)


class AskRequest(BaseModel):
    question: str = Field(..., description="The question, 1-2000 characters")
    history: list[dict[str, Any]] = Field(default_factory=list, description="[{role, content}] of earlier turns")
    filters: dict[str, Any] = Field(default_factory=dict, description="{doc_ids: [...], issuer: '...'}")
    stream: bool = False


class ChatMessage(BaseModel):
    role: str
    content: str


class ChatRequest(BaseModel):
    model: str = "policy-assistant"
    messages: list[ChatMessage]
    stream: bool = False


def public_meta(doc) -> dict:
    """A document's metadata as clients see it: its file name, never the server's absolute path."""
    meta = doc.meta()
    meta["file"] = Path(meta.pop("path", "")).name
    return meta


def _valid_text(text: str, where: str) -> str:
    """JSON may carry lone surrogates (\\ud800) that no UTF-8 text holds: refuse them before they reach the
    embedder, the index or a log line."""
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        raise HTTPException(422, f"{where} 含有无效字符（孤立代理项）/ {where} contains a lone surrogate, not valid Unicode text")
    return text


# What a stream that fails after its 200 status line sends (the details go to the server log).
STREAM_ERROR = {"error": {"status": 500, "message": "回答生成失败，请重试 / the answer failed, please retry"}}


def _bearer_token(request: Request) -> str:
    got = request.headers.get("authorization", "")
    return got[7:] if got.lower().startswith("bearer ") else ""


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status)



def _v1_extra(ans) -> dict:
    """What /v1 adds to OpenAI's shape: the citations, whether it refused, the claims the check could not verify,
    the answer's mode (llm, extractive, extractive-fallback…) and a withheld LLM draft with its reason."""
    d = ans.to_dict()
    return {k: d[k] for k in ("citations", "refused", "unverified", "mode", "replaced")}


def create_app(settings: Settings, assistant: Assistant | None = None, with_ui: bool = True) -> FastAPI:
    """The one application: API routes first, then the Gradio UI mounted at '/'."""
    # root_path (a reverse proxy's sub-path) is given to uvicorn in cli.serve; links below read it from the request.
    if with_ui:
        check_auth_setup(settings.server)
    # /docs and /redoc would load their scripts from a CDN, which an offline intranet cannot reach: they are off,
    # and the schema is served as /openapi.json for any local viewer.
    app = FastAPI(title="Policy assistant", description="Cited answers from Chinese policy documents",
                  docs_url=None, redoc_url=None)
    srv = settings.server
    state: dict[str, Assistant] = {}
    lock = threading.Lock()

    def get_assistant() -> Assistant:
        # Built once, on first use; the lock matters: the UI's first page load fires several events at once,
        # and two Chroma clients opened concurrently on one path fail inside chromadb.
        with lock:
            if "a" not in state:
                state["a"] = assistant or build_assistant(settings)
            return state["a"]

    def pipeline():
        from .components import build_pipeline

        a = get_assistant()
        return build_pipeline(settings, index=a.index, embedder=a.retriever.embedder)

    uploads = UploadService(Path(settings.store.index_dir) / "uploads", pipeline)

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
            return _error(429, "登录尝试过多，请一分钟后再试 / too many login attempts, try again in a minute")
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

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", []) if x != "body")
        return _error(422, f"请求格式错误 / invalid request: {where} {first.get('msg', '')}".strip())

    @app.exception_handler(IndexEmpty)
    async def empty(_: Request, exc: IndexEmpty):
        return _error(503, f"索引为空 / {exc}")

    @app.exception_handler(Exception)
    async def crash(_: Request, exc: Exception):
        log.exception("unhandled error")
        return _error(500, "内部错误，请查看服务器日志 / internal error, see the server log")

    def trusted_user(request: Request) -> str | None:
        """The SSO proxy's user header, believed only from the configured proxy addresses."""
        if not srv.trusted_user_header or not request.client or request.client.host not in srv.trusted_proxies:
            return None
        return request.headers.get(srv.trusted_user_header) or None

    def bearer(request: Request) -> None:
        if not srv.api_keys:
            return
        if trusted_user(request):
            return  # a user the SSO proxy vouches for (the /embed page calls /api/ask from their browser)
        if not any(same_secret(_bearer_token(request), k) for k in srv.api_keys):
            raise HTTPException(401, "需要有效的 API 密钥 / a valid bearer key is required")

    def admin(request: Request) -> None:
        if not srv.admin_key:
            raise HTTPException(403, "上传未启用：未配置管理员密钥 / upload is disabled (no admin key configured)")
        if not same_secret(_bearer_token(request), srv.admin_key):
            raise HTTPException(401, "需要管理员密钥 / the admin key is required")

    @app.exception_handler(StarletteHTTPException)  # FastAPI's HTTPException and routing's 404/405 alike
    async def http_error(_: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail))

    def check_question(q: str) -> str:
        q = _valid_text(q, "question").strip()
        if not q:
            raise HTTPException(422, "问题不能为空 / the question is empty")
        if len(q) > srv.max_question_chars:
            raise HTTPException(422, f"问题过长（最多 {srv.max_question_chars} 字）/ question longer than {srv.max_question_chars} characters")
        return q

    def check_history(turns: list) -> list[dict]:
        """Earlier turns, bounded: every text that reaches the embedder or BM25 has a limit (422 names it)."""
        if len(turns) > srv.max_history_turns:
            raise HTTPException(422, f"对话历史过长（最多 {srv.max_history_turns} 轮）/ more than {srv.max_history_turns} history turns")
        out = []
        for i, t in enumerate(turns):
            content = t.get("content") if isinstance(t, dict) else None
            if not isinstance(content, str) or t.get("role") not in ("user", "assistant", "system"):
                raise HTTPException(422, f"history[{i}] 应为 {{role, content}} / history[{i}] must be {{role, content}}")
            _valid_text(content, f"history[{i}]")
            if len(content) > srv.max_turn_chars:
                raise HTTPException(422, f"history[{i}] 过长（最多 {srv.max_turn_chars} 字）/ history[{i}] longer than {srv.max_turn_chars} characters")
            if t["role"] != "system":
                out.append({"role": t["role"], "content": content})
        return out

    def check_filters(filters: dict) -> dict:
        doc_ids, issuer = filters.get("doc_ids"), filters.get("issuer")
        if doc_ids is not None and not (isinstance(doc_ids, list) and all(isinstance(d, str) for d in doc_ids)
                                        and len(doc_ids) <= 1000):
            raise HTTPException(422, "filters.doc_ids 应为字符串列表 / filters.doc_ids must be a list of strings")
        if issuer is not None and not (isinstance(issuer, str) and len(issuer) <= 200):
            raise HTTPException(422, "filters.issuer 应为字符串 / filters.issuer must be a string")
        for d in [*(doc_ids or []), issuer or ""]:
            _valid_text(d, "filters")
        return {"doc_ids": doc_ids, "issuer": issuer}

    @app.get("/healthz")
    async def healthz():
        # On the event loop, not in the thread pool: under a full pool of questions a health check must not
        # queue behind them. The documents are cached (a commit elsewhere costs one reload), chunks come from
        # their records, so no Chroma call runs here.
        if "a" not in state:
            await run_in_threadpool(get_assistant)
        index = state["a"].index
        docs = index.cached_documents()
        if docs is None:  # before the first load only
            docs = await run_in_threadpool(index.documents)
        return {"status": "ok" if docs else "empty", "index_loaded": bool(docs), "documents": len(docs),
                "chunks": sum(d.chunks for d in docs.values())}

    def answer_json(ans, root: str) -> dict:
        """An answer for the API, each citation with a signed link to its place in the reader page."""
        d = ans.to_dict(passages=True)
        for c in d["citations"]:
            c["url"] = (f"{root}/doc/{quote(c['doc_id'])}?s={c['char_start']}&e={c['char_end']}"
                        f"&t={doc_token(c['doc_id'])}#hl")
        return d

    @app.post("/api/ask", dependencies=[Depends(bearer)])
    def api_ask(req: AskRequest, request: Request):
        q = check_question(req.question)
        history, kwargs = check_history(req.history), check_filters(req.filters)
        a = get_assistant()
        root = request.scope.get("root_path", "")
        if not req.stream:
            return answer_json(a.ask(q, history, **kwargs), root)
        a.retriever.require_documents()  # before the stream starts, so an empty index is a 503, not a broken stream

        def events():
            try:
                for ev in a.stream(q, history, **kwargs):
                    if ev.kind == "token":
                        yield f"event: token\ndata: {json.dumps({'text': ev.text}, ensure_ascii=False)}\n\n"
                    else:
                        yield f"event: answer\ndata: {json.dumps(answer_json(ev.answer, root), ensure_ascii=False)}\n\n"
            except Exception:  # the status line is sent: the failure is an event the client can show
                log.exception("streamed answer failed")
                yield f"event: error\ndata: {json.dumps(STREAM_ERROR, ensure_ascii=False)}\n\n"
            yield "event: done\ndata: {}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.get("/api/search", dependencies=[Depends(bearer)])
    def api_search(q: str, k: int = 5):
        q = check_question(q)
        if not 1 <= k <= 50:
            raise HTTPException(422, "k 必须在 1 到 50 之间 / k must be 1-50")
        return {"query": q, "passages": [p.to_dict() for p in get_assistant().retriever.search(q, k)]}

    @app.get("/api/documents", dependencies=[Depends(bearer)])
    def api_documents():
        return {"documents": [public_meta(d) for d in sorted(get_assistant().documents().values(), key=lambda d: d.doc_id)]}

    @app.get("/api/documents/{doc_id}", dependencies=[Depends(bearer)])
    def api_document(doc_id: str):
        doc = get_assistant().index.document(doc_id)
        if doc is None:
            raise HTTPException(404, f"没有这个文档 / unknown document id: {doc_id}")
        chunks = [{"chunk_id": cid, "section": c.section_path, "article": c.article, "char_start": c.char_start,
                   "char_end": c.char_end, "refers_to": references(c.text, c.article)}
                  for cid, c in get_assistant().index.all_chunks(doc_id)]
        return public_meta(doc) | {"text": doc.text, "chunks": chunks}

    async def ingest(files: list[UploadFile], wait: bool, replace: str | None = None):
        """Ingest off the event loop (one batch at a time); `wait=false` returns 202 and the job to follow."""
        limit = int(settings.ingest.max_file_mb * 1024 * 1024) + 1  # one byte over: the pipeline names the limit
        data = [(f.filename, await f.read(limit)) for f in files]
        job, done = await run_in_threadpool(uploads.submit, data, replace)  # writing files is blocking work too
        if not wait:
            return JSONResponse(job.to_dict(), status_code=202)
        await asyncio.wrap_future(done)
        if job.status != "done":
            raise HTTPException(500, f"索引失败 / ingest failed: {job.error}")
        return job.report.to_dict() | {"job": job.id}

    @app.post("/api/documents", dependencies=[Depends(admin)])
    async def api_upload(files: list[UploadFile] = File(...), wait: bool = True):
        return await ingest(files, wait)

    @app.put("/api/documents/{doc_id}", dependencies=[Depends(admin)])
    async def api_replace(doc_id: str, file: UploadFile = File(...), wait: bool = True):
        """Replace one document's content with an uploaded file (keeps its id); the only way a file takes over
        an existing document."""
        if await run_in_threadpool(lambda: get_assistant().index.document(doc_id)) is None:
            raise HTTPException(404, f"没有这个文档 / unknown document id: {doc_id}")
        return await ingest([file], wait, doc_id)

    @app.delete("/api/documents/{doc_id}", dependencies=[Depends(admin)])
    def api_remove(doc_id: str):
        if not uploads.remove(doc_id):
            raise HTTPException(404, f"没有这个文档 / unknown document id: {doc_id}")
        return {"removed": doc_id}

    @app.get("/api/jobs/{job_id}", dependencies=[Depends(admin)])
    def api_job(job_id: str):
        job = uploads.job(job_id)
        if job is None:
            raise HTTPException(404, f"没有这个任务 / unknown job id: {job_id}")
        return job.to_dict()

    @app.get("/v1/models", dependencies=[Depends(bearer)])
    def v1_models():
        return {"object": "list", "data": [{"id": "policy-assistant", "object": "model", "created": 0, "owned_by": "local"}]}

    @app.post("/v1/chat/completions", dependencies=[Depends(bearer)])
    def v1_chat(req: ChatRequest):
        _valid_text(req.model, "model")
        users = [m for m in req.messages if m.role == "user"]
        if not users:
            raise HTTPException(422, "messages 中没有用户问题 / no user message")
        q = check_question(users[-1].content)
        history = check_history([{"role": m.role, "content": m.content} for m in req.messages[:-1]
                                 if m.role in ("user", "assistant")])
        a = get_assistant()
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time())

        if not req.stream:
            ans = a.ask(q, history)
            return {"id": cid, "object": "chat.completion", "created": created, "model": req.model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": ans.with_sources()},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                    **_v1_extra(ans)}
        a.retriever.require_documents()  # before the stream starts, so an empty index is a 503, not a broken stream

        def chunk(delta: dict, finish=None, extra=None) -> str:
            body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": req.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return f"data: {json.dumps(body | (extra or {}), ensure_ascii=False)}\n\n"

        def events():
            yield chunk({"role": "assistant"})
            try:
                for ev in a.stream(q, history):
                    if ev.kind == "token":
                        yield chunk({"content": ev.text})
                    else:
                        tail = ev.answer.with_sources()[len(ev.answer.answer):]
                        yield chunk({"content": tail} if tail else {}, "stop", _v1_extra(ev.answer))
            except Exception:  # OpenAI's stream shape for a failure: an error object, then the end
                log.exception("streamed completion failed")
                yield f"data: {json.dumps(STREAM_ERROR, ensure_ascii=False)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    doc_secret = secrets.token_bytes(32)  # per process: reader links the UI signs stay valid while it runs

    def doc_token(doc_id: str) -> str:
        return hmac.new(doc_secret, doc_id.encode(), hashlib.sha256).hexdigest()[:32]

    def reader(request: Request, doc_id: str, t: str = "") -> None:
        """The reader page: a link the UI signed for this document, or the same key as /api/documents/{id}."""
        if t and same_secret(t, doc_token(doc_id)):
            return
        bearer(request)

    @app.get("/doc/{doc_id}", response_class=HTMLResponse, dependencies=[Depends(reader)])
    def doc_view(doc_id: str, s: int = -1, e: int = -1):
        """The whole document, the cited span highlighted; every character of it escaped."""
        import html as h

        doc = get_assistant().index.document(doc_id)
        if doc is None:
            raise HTTPException(404, f"没有这个文档 / unknown document id: {doc_id}")
        t = doc.text
        if 0 <= s < e <= len(t):
            body = f"{h.escape(t[:s])}<mark id='hl'>{h.escape(t[s:e])}</mark>{h.escape(t[e:])}"
        else:
            body = h.escape(t)
        meta = " · ".join(h.escape(x) for x in (doc.issuer, doc.doc_number, doc.date) if x)
        return (f"<!doctype html><html lang='zh-CN'><meta charset='utf-8'>"
                "<meta name='viewport' content='width=device-width, initial-scale=1'><title>{h.escape(doc.title)}</title>"
                "<style>body{font-family:sans-serif;max-width:50em;margin:2em auto;line-height:1.8}"
                "mark{background:#ffe082}</style>"
                f"<h1>{h.escape(doc.title)}</h1><p><small>{meta}</small></p><div style='white-space:pre-wrap'>{body}</div></html>")

    @app.get("/widget.js")
    def widget(request: Request):
        # Its own address (base_url includes root_path, from the Host header) and the sites allowed to frame
        # /embed, written as JS string literals, escaped.
        base = json.dumps(str(request.base_url).rstrip("/")).replace("<", "\\u003c")
        allowed = json.dumps(" ".join(srv.frame_ancestors)).replace("<", "\\u003c")
        js = _static("static/widget.js").replace("'__BASE__'", base).replace("'__ALLOWED__'", allowed)
        return Response(js, media_type="application/javascript")

    @app.get("/embed", response_class=HTMLResponse)
    def embed(request: Request):
        root = json.dumps(request.scope.get("root_path", "")).replace("<", "\\u003c")
        return _static("templates/embed.html").replace("'__ROOT__'", root)

    @app.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
    @app.api_route("/v1/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
    def unknown(rest: str):
        # Without this the UI mounted at '/' would answer unknown API paths with its own body shape.
        raise HTTPException(404, "没有这个接口 / no such endpoint")

    app.state.get_assistant, app.state.uploads = get_assistant, uploads
    if with_ui:
        from .ui import mount_ui

        mount_ui(app, settings, get_assistant, uploads, doc_token)
    return app


@functools.lru_cache(maxsize=None)
def _static(name: str) -> str:
    """A file shipped in the package (assistant/static, assistant/templates)."""
    return resources.files("assistant").joinpath(name).read_text(encoding="utf-8")
