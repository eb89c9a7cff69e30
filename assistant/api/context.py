"""What every route shares: the lazily built assistant, the upload service, who may call what, and the checks a
request's text passes before it reaches the service."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from ..service import Assistant, build_assistant
from ..settings import Settings, same_secret
from ..uploads import UploadService

# What a stream that fails after its 200 status line sends (the details go to the server log).
STREAM_ERROR = {"error": {"status": 500, "message": "回答生成失败，请重试 / the answer failed, please retry"}}


class EventStream(StreamingResponse):
    """A text/event-stream of a generator that is closed when the response ends, however it ends. A client that
    goes away leaves Starlette's iterator suspended until the garbage collector finds it, and with it the answer
    (a model still writing on the LLM server, a conversation left open); this closes it at once."""

    def __init__(self, events) -> None:
        super().__init__(events, media_type="text/event-stream")
        self._events = events

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._events.close)


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


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status)


class Context:
    """One app's services (kept in `app.state.ctx`): the assistant, built once on first use, and uploads."""

    def __init__(self, settings: Settings, assistant: Assistant | None = None) -> None:
        self.settings, self.server = settings, settings.server
        self._given, self._assistant = assistant, None
        # the UI's first page load fires several events at once, and two Chroma clients opened concurrently on
        # one path fail inside chromadb: the assistant is built under a lock
        self._lock = threading.Lock()
        self._conversations = None
        self._doc_secret = secrets.token_bytes(32)  # per process: reader links stay valid while it runs
        self.uploads = UploadService(Path(settings.store.index_dir) / "uploads", self._pipeline)

    def conversations(self):
        """The conversations and feedback store (its schema migrated now, at start), created once."""
        from ..conversations import ConversationStore

        with self._lock:
            if self._conversations is None:
                if not self.settings.store.conversations_url:  # SQLite beside the index
                    Path(self.settings.store.index_dir).mkdir(parents=True, exist_ok=True)
                self._conversations = ConversationStore(self.settings.store.conversations())
            return self._conversations

    @property
    def built(self) -> bool:
        return self._assistant is not None

    def assistant(self) -> Assistant:
        with self._lock:
            if self._assistant is None:
                self._assistant = self._given or build_assistant(self.settings)
            return self._assistant

    def _pipeline(self):
        from ..components import build_pipeline

        a = self.assistant()
        return build_pipeline(self.settings, index=a.index, embedder=a.embedder)

    def doc_token(self, doc_id: str) -> str:
        """The signature that lets a reader link (/doc/{id}?t=…) open without the API key."""
        return hmac.new(self._doc_secret, doc_id.encode(), hashlib.sha256).hexdigest()[:32]

    def answer_json(self, ans, root: str) -> dict:
        """An answer for the API, each citation with a signed link to its place in the reader page."""
        d = ans.to_dict(passages=True)
        for c in d["citations"]:
            c["url"] = (f"{root}/doc/{quote(c['doc_id'])}?s={c['char_start']}&e={c['char_end']}"
                        f"&t={self.doc_token(c['doc_id'])}#hl")
        return d


def ctx(request: Request) -> Context:
    return request.app.state.ctx


# -- who may call what (FastAPI dependencies) ------------------------------------------------------------------
def _bearer_token(request: Request) -> str:
    got = request.headers.get("authorization", "")
    return got[7:] if got.lower().startswith("bearer ") else ""


def trusted_user(request: Request) -> str | None:
    """The SSO proxy's user header, believed only from the configured proxy addresses."""
    srv = ctx(request).server
    if not srv.trusted_user_header or not request.client or request.client.host not in srv.trusted_proxies:
        return None
    return request.headers.get(srv.trusted_user_header) or None


def bearer(request: Request) -> None:
    keys = ctx(request).server.api_keys
    if not keys:
        return
    if trusted_user(request):
        return  # a user the SSO proxy vouches for (the /embed page calls /api/ask from their browser)
    if not any(same_secret(_bearer_token(request), k) for k in keys):
        raise HTTPException(401, "需要有效的 API 密钥 / a valid bearer key is required")


def admin(request: Request) -> None:
    key = ctx(request).server.admin_key
    if not key:
        raise HTTPException(403, "上传未启用：未配置管理员密钥 / upload is disabled (no admin key configured)")
    if not same_secret(_bearer_token(request), key):
        raise HTTPException(401, "需要管理员密钥 / the admin key is required")


def reader(request: Request, doc_id: str, t: str = "") -> None:
    """The reader page: a link the UI signed for this document, or the same key as /api/documents/{id}."""
    if t and same_secret(t, ctx(request).doc_token(doc_id)):
        return
    bearer(request)


# -- what a request's text must be -----------------------------------------------------------------------------
def valid_text(text: str, where: str) -> str:
    """JSON may carry lone surrogates (\\ud800) that no UTF-8 text holds: refuse them before they reach the
    embedder, the index or a log line."""
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        raise HTTPException(422, f"{where} 含有无效字符（孤立代理项）/ {where} contains a lone surrogate, not valid Unicode text")
    return text


def check_question(request: Request, q: str) -> str:
    srv = ctx(request).server
    q = valid_text(q, "question").strip()
    if not q:
        raise HTTPException(422, "问题不能为空 / the question is empty")
    if len(q) > srv.max_question_chars:
        raise HTTPException(422, f"问题过长（最多 {srv.max_question_chars} 字）/ question longer than {srv.max_question_chars} characters")
    return q


def check_history(request: Request, turns: list) -> list[dict]:
    """Earlier turns, bounded: every text that reaches the embedder or BM25 has a limit (422 names it)."""
    srv = ctx(request).server
    if len(turns) > srv.max_history_turns:
        raise HTTPException(422, f"对话历史过长（最多 {srv.max_history_turns} 轮）/ more than {srv.max_history_turns} history turns")
    out = []
    for i, t in enumerate(turns):
        content = t.get("content") if isinstance(t, dict) else None
        if not isinstance(content, str) or t.get("role") not in ("user", "assistant", "system"):
            raise HTTPException(422, f"history[{i}] 应为 {{role, content}} / history[{i}] must be {{role, content}}")
        valid_text(content, f"history[{i}]")
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
        valid_text(d, "filters")
    return {"doc_ids": doc_ids, "issuer": issuer}


def public_meta(doc) -> dict:
    """A document's metadata as clients see it: its file name, never the server's absolute path."""
    meta = doc.meta()
    meta["file"] = Path(meta.pop("path", "")).name
    return meta
