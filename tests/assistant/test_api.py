import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import uvicorn
from fastapi.testclient import TestClient

from assistant.api import create_app
from tests.live import http

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(corpus_settings, corpus_assistant):
    return TestClient(create_app(corpus_settings, corpus_assistant, with_ui=False))


def test_ask_json_and_errors(client):
    r = client.post("/api/ask", json={"question": "新建公厕多少座？"})
    body = r.json()
    assert r.status_code == 200 and "210" in body["answer"] and body["citations"][0]["quote"]
    assert set(body["timings_ms"]) == {"retrieve", "answer", "total"}
    for bad, code in [({"question": ""}, 422), ({"question": "问" * 5000}, 422), ({}, 422)]:
        r = client.post("/api/ask", json=bad)
        assert r.status_code == code and "Traceback" not in r.text and r.json()["error"]["message"]
    r = client.post("/api/ask", content="{bad", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = client.post("/api/ask", content="question=x", headers={"content-type": "text/plain"})
    assert r.status_code == 422
    assert client.get("/api/documents/nope").status_code == 404


def test_stream_sse_tokens_then_answer_then_done(client):
    with client.stream("POST", "/api/ask", json={"question": "“五项治理”包括哪些？", "stream": True}) as r:
        text = "".join(r.iter_text())
    events = [b.split("\n")[0][7:] for b in text.strip().split("\n\n")]
    assert events[0] == "token" and events[-2:] == ["answer", "done"]
    answer = json.loads(text.strip().split("\n\n")[-2].split("data: ", 1)[1])
    assert "治违" in answer["answer"] and answer["citations"]


def test_search_documents_health_and_openai(client):
    s = client.get("/api/search", params={"q": "无废城市 试点目标", "k": 3}).json()
    assert len(s["passages"]) == 3 and s["passages"][0]["score"] > 0
    docs = client.get("/api/documents").json()["documents"]
    assert len(docs) == 9
    one = client.get(f"/api/documents/{docs[0]['doc_id']}").json()
    assert one["text"] and one["chunks"]
    assert client.get("/healthz").json() == {"status": "ok", "index_loaded": True, "documents": 9, "chunks": sum(d["chunks"] for d in docs)}
    assert client.get("/v1/models").json()["data"][0]["id"] == "policy-assistant"
    r = client.post("/v1/chat/completions", json={"model": "policy-assistant", "messages": [{"role": "user", "content": "新建公厕多少座？"}]}).json()
    assert "210" in r["choices"][0]["message"]["content"] and "来源" in r["choices"][0]["message"]["content"]
    assert r["citations"][0]["doc_id"] == "speech_city_quality_2023"
    with client.stream("POST", "/v1/chat/completions", json={"messages": [{"role": "user", "content": "新建公厕多少座？"}], "stream": True}) as resp:
        lines = [ln for ln in resp.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]" and "citations" in json.loads(lines[-2][6:])


def test_auth_keys(corpus_settings, corpus_assistant):
    s = corpus_settings.model_copy(deep=True)
    s.server.api_keys, s.server.admin_key = ["k1"], "adm"
    c = TestClient(create_app(s, corpus_assistant, with_ui=False))
    assert c.post("/api/ask", json={"question": "新建公厕多少座？"}).status_code == 401
    assert c.get("/v1/models", headers={"Authorization": "Bearer k1"}).status_code == 200
    r = c.post("/api/documents", files={"files": ("x.txt", "第一条 测试。".encode())}, headers={"Authorization": "Bearer k1"})
    assert r.status_code == 401 and set(r.json()) == {"error"}


def test_empty_index_is_503(settings):
    c = TestClient(create_app(settings, with_ui=False))
    r = c.post("/api/ask", json={"question": "新建公厕多少座？"})
    assert r.status_code == 503 and "ingest" in r.json()["error"]["message"]


def test_real_uvicorn_20_concurrent_asks(corpus_settings, corpus_assistant):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(corpus_settings, corpus_assistant, with_ui=False), host="127.0.0.1",
                                           port=port, log_level="warning", timeout_graceful_shutdown=2))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.1)
    try:
        qs = ["新建公厕多少座？", "“五项治理”包括哪些？", "今天天气怎么样？", "业主委员会每届任期不超过几年？"] * 5
        with ThreadPoolExecutor(20) as pool:
            rs = list(pool.map(lambda q: http.post(f"http://127.0.0.1:{port}/api/ask", json={"question": q}, timeout=120), qs))
        assert [r.status_code for r in rs] == [200] * 20
        assert all(("210" in r.json()["answer"]) for r, q in zip(rs, qs) if q == "新建公厕多少座？")
        assert all(r.json()["refused"] for r, q in zip(rs, qs) if q == "今天天气怎么样？")
    finally:
        server.should_exit = True
        t.join(10)


def test_v1_carries_the_check_and_ends_honestly_with_an_llm(corpus_settings, corpus_assistant, embedder):
    """Issue 13.2: /v1 says which answer it gives (mode), what could not be verified and the withheld draft, streamed
    or not; a made-up figure never goes out; with the LLM down, both shapes give the extractive answer, not an
    empty reply."""
    from assistant.llm import make_chat_model
    from assistant.service import build_assistant
    from tests.fakes import FakeOpenAI
    from tests.live import free_port

    ask = {"model": "policy-assistant", "messages": [{"role": "user", "content": "新建公厕多少座？"}]}
    made_up = FakeOpenAI(["新建停车场有55个。[1]"] * 2)
    try:
        for url, draft in ((made_up.url, "新建停车场有55个。[1]"), (f"http://127.0.0.1:{free_port()}/v1", "")):
            llm = make_chat_model(url, "m", "k", timeout=5)
            a = build_assistant(corpus_settings, index=corpus_assistant.index, embedder=embedder, llm=llm)
            c = TestClient(create_app(corpus_settings, a, with_ui=False))
            body = c.post("/v1/chat/completions", json=ask).json()
            content = body["choices"][0]["message"]["content"]
            assert "210" in content and "55" not in content and body["mode"] == "extractive-fallback"
            assert body["unverified"] == [] and body["replaced"]["reason"] and body["replaced"]["answer"] == draft
            with c.stream("POST", "/v1/chat/completions", json=ask | {"stream": True}) as resp:
                chunks = [json.loads(ln[6:]) for ln in resp.iter_lines() if ln.startswith("data: {")]
            streamed = "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks)
            assert "210" in streamed and "55" not in streamed and "[DONE]" not in streamed
            assert chunks[-1]["mode"] == "extractive-fallback" and chunks[-1]["replaced"]["reason"]
            body = c.post("/api/ask", json={"question": "新建公厕多少座？"}).json()
            assert "210" in body["answer"] and body["mode"] == "extractive-fallback" and body["replaced"]["reason"]
            with c.stream("POST", "/api/ask", json={"question": "新建公厕多少座？", "stream": True}) as resp:
                blocks = "".join(resp.iter_text()).strip().split("\n\n")
            kinds = [b.split("\n")[0][7:] for b in blocks]
            final = json.loads(blocks[kinds.index("answer")].split("\n", 1)[1][6:])
            assert kinds[-2:] == ["answer", "done"] and "210" in final["answer"] and "55" not in final["answer"]
    finally:
        made_up.close()
