"""Pages and files outside the chat: the /doc reader, the /embed chat and the widget script, from package
templates and static files."""
from __future__ import annotations

import functools
import html
import json
import re
from importlib import resources

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from .context import ctx, reader

router = APIRouter()


@functools.lru_cache(maxsize=None)
def package_file(name: str) -> str:
    """A file shipped in the package (assistant/static, assistant/templates)."""
    return resources.files("assistant").joinpath(name).read_text(encoding="utf-8")


def _js(value: str) -> str:
    """A JS string literal that cannot end a <script> early."""
    return json.dumps(value).replace("<", "\\u003c")


@router.get("/doc/{doc_id}", response_class=HTMLResponse, dependencies=[Depends(reader)])
def doc_view(request: Request, doc_id: str, s: int = -1, e: int = -1):
    """The whole document, the cited span highlighted; every character of it escaped."""
    doc = ctx(request).assistant().document(doc_id)
    if doc is None:
        raise HTTPException(404, f"没有这个文档 / unknown document id: {doc_id}")
    t = doc.text
    if 0 <= s < e <= len(t):
        body = f"{html.escape(t[:s])}<mark id='hl'>{html.escape(t[s:e])}</mark>{html.escape(t[e:])}"
    else:
        body = html.escape(t)
    meta = " · ".join(html.escape(x) for x in (doc.issuer, doc.doc_number, doc.date) if x)
    values = {"TITLE": html.escape(doc.title), "META": meta, "BODY": body}
    # one pass: a document's own text is never read as a placeholder
    return re.sub(r"__(TITLE|META|BODY)__", lambda m: values[m.group(1)], package_file("templates/doc.html"))


@router.get("/widget.js")
def widget(request: Request):
    # Its own address (base_url includes root_path, from the Host header) and the sites allowed to frame /embed.
    allowed = " ".join(ctx(request).server.frame_ancestors)
    js = (package_file("static/widget.js").replace("'__BASE__'", _js(str(request.base_url).rstrip("/")))
          .replace("'__ALLOWED__'", _js(allowed)))
    return Response(js, media_type="application/javascript")


@router.get("/embed", response_class=HTMLResponse)
def embed(request: Request):
    return package_file("templates/embed.html").replace("'__ROOT__'", _js(request.scope.get("root_path", "")))
