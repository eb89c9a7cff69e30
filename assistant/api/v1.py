"""The OpenAI-compatible /v1: any OpenAI client (or a chat front end that speaks it) asks the assistant; the
reply carries what OpenAI's shape has no place for as extra fields."""
from __future__ import annotations

import json
import logging
import time
import uuid

from fastapi import APIRouter, Depends, HTTPException, Request

from .context import STREAM_ERROR, ChatRequest, EventStream, bearer, check_history, check_question, ctx, valid_text

log = logging.getLogger(__name__)
router = APIRouter()


def extra(ans) -> dict:
    """What /v1 adds to OpenAI's shape: the citations, whether it refused, the claims the check could not verify,
    the answer's mode (llm, extractive, extractive-fallback…) and a withheld LLM draft with its reason."""
    d = ans.to_dict()
    return {k: d[k] for k in ("citations", "refused", "unverified", "mode", "replaced")}


@router.get("/v1/models", dependencies=[Depends(bearer)])
def v1_models():
    return {"object": "list", "data": [{"id": "policy-assistant", "object": "model", "created": 0, "owned_by": "local"}]}


@router.post("/v1/chat/completions", dependencies=[Depends(bearer)])
def v1_chat(req: ChatRequest, request: Request):
    valid_text(req.model, "model")
    users = [m for m in req.messages if m.role == "user"]
    if not users:
        raise HTTPException(422, "messages 中没有用户问题 / no user message")
    q = check_question(request, users[-1].content)
    history = check_history(request, [{"role": m.role, "content": m.content} for m in req.messages[:-1]
                                      if m.role in ("user", "assistant")])
    a = ctx(request).assistant()
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time())

    if not req.stream:
        ans = a.ask(q, history)
        return {"id": cid, "object": "chat.completion", "created": created, "model": req.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": ans.with_sources()},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}, **extra(ans)}
    a.require_documents()  # before the stream starts, so an empty index is a 503, not a broken stream

    def chunk(delta: dict, finish=None, more=None) -> str:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": req.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(body | (more or {}), ensure_ascii=False)}\n\n"

    def events():
        yield chunk({"role": "assistant"})
        try:
            for ev in a.stream(q, history):
                if ev.kind == "token":
                    yield chunk({"content": ev.text})
                else:
                    tail = ev.answer.with_sources()[len(ev.answer.answer):]
                    yield chunk({"content": tail} if tail else {}, "stop", extra(ev.answer))
        except Exception:  # OpenAI's stream shape for a failure: an error object, then the end
            log.exception("streamed completion failed")
            yield f"data: {json.dumps(STREAM_ERROR, ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"

    return EventStream(events())
