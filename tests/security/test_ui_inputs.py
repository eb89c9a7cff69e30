"""Issue 8.2 and 8.5 through the Gradio UI's own endpoints (raw HTTP, as a client that ignores the page would
call them): the question limit holds on the server, a slow question does not stall others, and the evaluation
and upload functions read only bytes a client uploaded, never a path on the server."""
from __future__ import annotations

import json
import threading

import pytest

from tests.live import http
from tests.security.test_file_read import _file_payload, _sse_call


def _has(text: str, s: str) -> bool:
    """Gradio's events escape non-ASCII (\\u95ee…): look for both spellings."""
    return s in text or json.dumps(s)[1:-1] in text


@pytest.fixture(scope="module")
def server(live):
    return live(admin_key="adm")


def test_the_question_limit_holds_on_the_server(server):
    text = _sse_call(server.url, "respond", ["停" * 2001, ""])
    assert _has(text, "问题过长") and "2001" in text


def test_a_server_path_is_not_read_as_a_question_file(server, tmp_path):
    planted = tmp_path / "planted.jsonl"
    planted.write_text(json.dumps({"id": "x", "question": "本市新建停车位多少个？", "facts": ["1200"]}, ensure_ascii=False))
    text = _sse_call(server.url, "run_eval", ["adm", _file_payload(str(planted))])
    assert not _has(text, "停车位") and "1200" not in text  # the file was never opened
    assert text.startswith("event: error")  # Gradio's path check refuses the payload before the function runs


def test_a_server_path_is_not_ingested_by_the_upload_tab(server, tmp_path):
    planted = tmp_path / "planted.txt"
    planted.write_text("title: 不应被索引\n---\n第一条 这份文件只在服务器上。\n")
    _sse_call(server.url, "upload", ["adm", [_file_payload(str(planted))]])
    titles = {d["title"] for d in http.get(f"{server.url}/api/documents", timeout=10).json()["documents"]}
    assert "不应被索引" not in titles


def test_a_slow_question_does_not_stall_the_others(server):
    """Two chat questions at once: each answer waits inside the service until the other has started too, so
    they finish only if the server runs them side by side (one behind the other, the first waits in vain)."""
    from assistant.service import Assistant

    original = Assistant.stream
    both = threading.Barrier(2, timeout=10)

    def meet(self, *a, **k):
        both.wait()  # raises BrokenBarrierError after 10 s alone
        yield from original(self, *a, **k)
    Assistant.stream = meet
    try:
        answers = []

        def ask():
            answers.append(_sse_call(server.url, "respond", ["本市新建停车位多少个？", ""]))
        threads = [threading.Thread(target=ask) for _ in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        assert not both.broken and len(answers) == 2 and all(_has(a, "停车") for a in answers), answers
    finally:
        Assistant.stream = original
