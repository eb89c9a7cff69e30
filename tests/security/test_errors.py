"""Issue 8.3 and 8.8: hostile or broken input becomes a per-item error or a 4xx with the documented
{"error": …} body - never a 500, an empty 200, a stalled batch or a process that eats the machine."""
from __future__ import annotations

import io
import json
import threading
import time
import zipfile

import httpx
import pytest

from ingest.loaders import UnsupportedDocument, parse
from tests.live import http


@pytest.fixture(scope="module")
def server(live):
    return live(admin_key="adm")


def _raw_post(server, path: str, body: str, headers: dict | None = None) -> httpx.Response:
    """JSON written by hand: a lone surrogate escape (\\ud800) is valid JSON text but not valid UTF-8 text."""
    return http.post(f"{server.url}{path}", content=body.encode("ascii"), timeout=30,
                      headers={"Content-Type": "application/json", **(headers or {})})


@pytest.mark.parametrize("path, body", [
    ("/api/ask", '{"question": "\\u505c\\u8f66\\ud800\\u4f4d?"}'),
    ("/api/ask", '{"question": "\\u505c\\u8f66\\u4f4d?", "history": [{"role": "user", "content": "\\udfff"}]}'),
    ("/api/ask", '{"question": "\\u505c\\u8f66\\u4f4d?", "stream": true, "history": [{"role": "user", "content": "\\ud800"}]}'),
    ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "\\ud800\\u505c\\u8f66"}]}'),
    ("/v1/chat/completions", '{"stream": true, "messages": [{"role": "user", "content": "\\ud800"}]}'),
    ("/api/ask", '{"question": "\\u505c", "filters": {"doc_ids": ["\\ud800"]}}'),
])
def test_lone_surrogates_are_a_422_not_a_500(server, path, body):
    r = _raw_post(server, path, body)
    assert r.status_code == 422, (r.status_code, r.text[:200])
    assert r.json()["error"]["status"] == 422 and "surrogate" in r.json()["error"]["message"]


def test_a_non_ascii_authorization_header_is_a_401(live):
    server = live(ui=False, api_keys=["k1"])
    r = http.post(f"{server.url}/api/ask", json={"question": "停车位多少个？"}, timeout=30,
                   headers=[(b"Authorization", "Bearer 密钥".encode())])
    assert r.status_code == 401 and r.json()["error"]["status"] == 401


def _docx(paragraphs: int, empty: bool = False) -> bytes:
    """A Word file whose document.xml holds `paragraphs` paragraphs (a few KB zipped, huge unzipped)."""
    ns = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    body = ("<w:p/>" if empty else "<w:p><w:r><w:t>甲</w:t></w:r></w:p>") * paragraphs
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
                   'package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/>'
                   '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
                   'officedocument.wordprocessingml.document.main+xml"/></Types>')
        z.writestr("_rels/.rels", '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/'
                   'package/2006/relationships"><Relationship Id="r1" Type="http://schemas.openxmlformats.org/'
                   'officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>')
        z.writestr("word/document.xml", f'<?xml version="1.0"?><w:document {ns}><w:body>{body}</w:body></w:document>')
    return buf.getvalue()


def test_a_docx_that_expands_to_too_many_paragraphs_is_refused_before_it_is_parsed():
    assert "甲" in parse_name("ok.docx", _docx(3)).text
    with pytest.raises(UnsupportedDocument, match="paragraphs"):
        parse_name("bomb.docx", _docx(300_000))
    with pytest.raises(UnsupportedDocument, match="paragraphs"):
        parse_name("empty-bomb.docx", _docx(300_000, empty=True))  # <w:p/> counts too


def test_a_parser_failing_in_an_unexpected_way_is_that_files_error(monkeypatch):
    import pypdf

    class Exploding:
        def __init__(self, *a, **k):
            raise pypdf.errors.LimitReachedError("limit reached")
    monkeypatch.setattr(pypdf, "PdfReader", Exploding)
    with pytest.raises(UnsupportedDocument, match="PDF"):
        parse_name("x.pdf", b"%PDF-1.7\n")


def parse_name(name: str, data: bytes):
    from pathlib import Path

    return parse(Path(name), data)


def test_a_batch_with_broken_files_lands_the_rest(server, small_settings):
    auth = {"Authorization": "Bearer adm"}
    files = [("files", ("bomb.docx", _docx(300_000))),
             ("files", ("broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >>\nendobj\ntrailer")),
             ("files", ("公告.txt", "title: 丙办法\n---\n第一条 丙办法规定的停车位为333个。\n".encode()))]
    r = http.post(f"{server.url}/api/documents?wait=false", files=files, headers=auth, timeout=30)
    assert r.status_code == 202
    job = r.json()["id"]
    deadline = time.time() + 60
    while (j := http.get(f"{server.url}/api/jobs/{job}", headers=auth, timeout=10).json())["status"] in ("queued", "running"):
        assert time.time() < deadline
        time.sleep(0.1)
    by_file = {d["path"]: d for d in j["report"]["documents"]}  # the file name the client sent
    assert by_file["公告.txt"]["status"] == "added"
    assert by_file["bomb.docx"]["status"] == "failed" and "paragraphs" in by_file["bomb.docx"]["error"]
    assert by_file["broken.pdf"]["status"] == "failed" and by_file["broken.pdf"]["error"]
    from pathlib import Path

    kept = {p.name for p in (Path(small_settings.store.index_dir) / "uploads").rglob("*") if p.is_file()}
    assert "公告.txt" in kept and not kept & {"bomb.docx", "broken.pdf"}  # rejected files are not kept
    assert "333" in http.post(f"{server.url}/api/ask", json={"question": "丙办法规定的停车位是多少个？"},
                               timeout=30).json()["answer"]


def test_error_bodies_have_one_shape(server):
    for r in (http.get(f"{server.url}/api/nope", timeout=10),
              http.post(f"{server.url}/api/ask", content=b"{not json", timeout=10,
                         headers={"Content-Type": "application/json"}),
              http.get(f"{server.url}/api/documents/none", timeout=10),
              http.delete(f"{server.url}/api/documents/parking", timeout=10)):
        body = r.json()
        assert set(body) == {"error"} and body["error"]["status"] == r.status_code >= 400, (r.status_code, body)
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
        json.dumps(body)


def test_ui_login_is_rate_limited_per_address(live):
    server = live(ui_user="u", ui_password="right", login_attempts_per_minute=5)
    codes = [http.post(f"{server.url}/login", data={"username": "u", "password": f"guess{i}"}, timeout=10).status_code
             for i in range(7)]
    assert codes[:5].count(429) == 0 and codes[5:] == [429, 429], codes


def test_api_docs_need_no_cdn(server):
    assert http.get(f"{server.url}/openapi.json", timeout=10).json()["info"]["title"]
    page = http.get(f"{server.url}/docs", timeout=10)
    assert "cdn.jsdelivr.net" not in page.text and "unpkg.com" not in page.text


def test_replacing_and_removing_are_explicit_actions(server, small_settings):
    from pathlib import Path

    auth = {"Authorization": "Bearer adm"}
    uploads = Path(small_settings.store.index_dir) / "uploads"
    first = http.post(f"{server.url}/api/documents", headers=auth, timeout=60,
                       files=[("files", ("规定.txt", "title: 丁规定\n---\n第一条 丁规定的停车位为444个。\n".encode()))]).json()
    doc_id = first["documents"][0]["doc_id"]
    again = http.post(f"{server.url}/api/documents", headers=auth, timeout=60,
                       files=[("files", ("规定.txt", "title: 戊规定\n---\n第一条 戊规定的停车位为555个。\n".encode()))]).json()
    assert again["documents"][0]["doc_id"] != doc_id  # the same name again is another document, not a replace
    r = http.put(f"{server.url}/api/documents/{doc_id}", headers=auth, timeout=60,
                  files={"file": ("规定-新.txt", "title: 丁规定\n---\n第一条 丁规定的停车位为666个。\n".encode())})
    assert r.status_code == 200 and r.json()["documents"][0]["status"] == "updated"
    text = http.get(f"{server.url}/api/documents/{doc_id}", timeout=10).json()["text"]
    assert "666" in text and "444" not in text
    assert "规定.txt" in {p.name for p in uploads.rglob("*")}  # 戊's file stays; 丁's old file went with it
    assert sum(1 for p in uploads.rglob("规定.txt")) == 1
    assert http.put(f"{server.url}/api/documents/nope", headers=auth, timeout=10,
                     files={"file": ("x.txt", b"x")}).status_code == 404
    assert http.delete(f"{server.url}/api/documents/{doc_id}", timeout=10).status_code == 401
    assert http.delete(f"{server.url}/api/documents/{doc_id}", headers=auth, timeout=10).json() == {"removed": doc_id}
    assert http.get(f"{server.url}/api/documents/{doc_id}", timeout=10).status_code == 404
    assert not list(uploads.rglob("规定-新.txt"))
    assert http.delete(f"{server.url}/api/documents/{doc_id}", headers=auth, timeout=10).status_code == 404


def test_a_stream_that_fails_sends_an_error_event(server):
    """After the 200 status line a failure cannot be a status: it is an `error` event, then the end."""
    from assistant.service import Assistant

    original = Assistant.stream

    def failing(self, *a, **k):
        yield from ()
        raise RuntimeError("the model went away")
    Assistant.stream = failing
    try:
        r = http.post(f"{server.url}/api/ask", json={"question": "停车位多少个？", "stream": True}, timeout=30)
        assert r.status_code == 200 and "event: error" in r.text and r.text.rstrip().endswith("data: {}")
        assert "the model went away" not in r.text  # details stay in the server log
        v1 = http.post(f"{server.url}/v1/chat/completions", timeout=30,
                        json={"stream": True, "messages": [{"role": "user", "content": "停车位多少个？"}]})
        assert '"error"' in v1.text and v1.text.rstrip().endswith("[DONE]")
    finally:
        Assistant.stream = original


def test_a_client_that_stops_a_stream_ends_it_cleanly(server, caplog):
    """A client that closes an answer stream midway (停止 in /embed): the answer it was writing is closed at once
    (not at some later garbage collection: an LLM would go on writing), no error is logged, and the next question
    is answered as usual."""
    from assistant.service import Assistant

    original = Assistant.stream
    closed, over = threading.Event(), threading.Event()

    def late(self, *a, **k):
        try:
            for ev in original(self, *a, **k):
                if ev.kind != "token":
                    closed.wait(10)  # the checked answer comes after the client has gone
                yield ev
        finally:
            over.set()
    Assistant.stream = late
    try:
        with http.stream("POST", f"{server.url}/api/ask", json={"question": "停车位多少个？", "stream": True},
                          timeout=30) as r:
            first = next(r.iter_lines())
        closed.set()
        assert first.startswith("event: token")
        assert over.wait(5)  # closed, at the latest when the server found the client gone
        time.sleep(0.2)  # and whatever it logs about that is logged
        assert not [x for x in caplog.records if x.levelname == "ERROR"], caplog.text
    finally:
        Assistant.stream = original
    again = http.post(f"{server.url}/api/ask", json={"question": "停车位多少个？"}, timeout=30)
    assert again.status_code == 200 and again.json()["answer"]
