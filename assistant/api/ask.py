"""Questions: /api/ask (JSON or a stream of events), /api/search, and /healthz."""
from __future__ import annotations

import json
import logging

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from .context import STREAM_ERROR, AskRequest, EventStream, bearer, check_filters, check_history, check_question, ctx

log = logging.getLogger(__name__)
router = APIRouter()


@router.get("/healthz")
async def healthz(request: Request):
    # On the event loop, not in the thread pool: under a full pool of questions a health check must not queue
    # behind them. The documents are cached (a commit elsewhere costs one reload), chunks come from their
    # records, so no Chroma call runs here.
    c = ctx(request)
    a = c.assistant() if c.built else await run_in_threadpool(c.assistant)
    docs = a.cached_documents()
    if docs is None:  # before the first load only
        docs = await run_in_threadpool(a.documents)
    return {"status": "ok" if docs else "empty", "index_loaded": bool(docs), "documents": len(docs),
            "chunks": sum(d.chunks for d in docs.values())}


@router.post("/api/ask", dependencies=[Depends(bearer)])
def api_ask(req: AskRequest, request: Request):
    q = check_question(request, req.question)
    history, kwargs = check_history(request, req.history), check_filters(req.filters)
    c = ctx(request)
    a = c.assistant()
    root = request.scope.get("root_path", "")
    if not req.stream:
        return c.answer_json(a.ask(q, history, **kwargs), root)
    a.require_documents()  # before the stream starts, so an empty index is a 503, not a broken stream

    def events():
        try:
            for ev in a.stream(q, history, **kwargs):
                if ev.kind == "token":
                    yield f"event: token\ndata: {json.dumps({'text': ev.text}, ensure_ascii=False)}\n\n"
                else:
                    yield f"event: answer\ndata: {json.dumps(c.answer_json(ev.answer, root), ensure_ascii=False)}\n\n"
        except Exception:  # the status line is sent: the failure is an event the client can show
            log.exception("streamed answer failed")
            yield f"event: error\ndata: {json.dumps(STREAM_ERROR, ensure_ascii=False)}\n\n"
        yield "event: done\ndata: {}\n\n"

    return EventStream(events())


@router.get("/api/search", dependencies=[Depends(bearer)])
def api_search(request: Request, q: str, k: int = 5):
    q = check_question(request, q)
    if not 1 <= k <= 50:
        raise HTTPException(422, "k 必须在 1 到 50 之间 / k must be 1-50")
    return {"query": q, "passages": [p.to_dict() for p in ctx(request).assistant().search(q, k)]}
