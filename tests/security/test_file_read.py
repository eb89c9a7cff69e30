"""Issue 8.1: no server file can be read through the chat, by gradio_client or by raw HTTP."""
from __future__ import annotations

import json
import os
import re
import tempfile

import pytest

from tests.live import http

SECRET = "ADMIN-SECRET-7c1f"
TARGETS = ["/etc/passwd", "/proc/self/environ"]


def _file_payload(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": os.path.basename(path)}


def _history_with_file(path: str) -> list:
    """What an attacker sends as chat history: a Chatbot message whose content is a file (gradio 6's shape)."""
    return [{"role": "user", "content": [{"type": "file", "file": _file_payload(path)}]}]


def _sse_call(base: str, fn: str, data: list) -> str:
    """POST /gradio_api/call/<fn> then read its event stream; the whole text of the events."""
    r = http.post(f"{base}/gradio_api/call/{fn}", json={"data": data}, timeout=30)
    if r.status_code != 200:
        return r.text
    event_id = r.json()["event_id"]
    with http.stream("GET", f"{base}/gradio_api/call/{fn}/{event_id}", timeout=30) as s:
        return "".join(s.iter_text())


def _leaked(base: str, text: str) -> list[str]:
    """Every file URL the server put in its output, fetched: the contents an attacker would get."""
    got = []
    for url in {m for m in re.findall(r'"url":\s*"([^"]+)"', text)}:
        got.append(http.get(url if url.startswith("http") else base + url, timeout=10).text)
    for path in re.findall(r'"path":\s*"([^"]+)"', text):
        got.append(http.get(f"{base}/gradio_api/file={path}", timeout=10).text)
    return got


@pytest.fixture(scope="module")
def server(live):
    os.environ["ASSISTANT_SEC_PROBE"] = SECRET  # lands in /proc/self/environ, which must never be served
    return live(api_keys=["k1"], admin_key="adm", ui_public=True)  # the operator opened the UI on purpose


@pytest.mark.parametrize("fn", ["respond", "respond_1", "do_retry"])
@pytest.mark.parametrize("target", TARGETS)
def test_raw_http_history_with_file_is_not_served(server, fn, target):
    # Whatever positional shape the endpoint has, the attacker fills every slot with a file-carrying history.
    for data in (["问题", _history_with_file(target), _history_with_file(target)],
                 [_history_with_file(target), _history_with_file(target)],
                 ["问题", _history_with_file(target)]):
        text = _sse_call(server.url, fn, data)
        leaked = "".join(_leaked(server.url, text))
        assert "root:" not in text + leaked and SECRET not in text + leaked


def test_gradio_file_route_refuses_server_paths(server, small_settings):
    chroma_db = os.path.join(os.path.abspath(small_settings.store.index_dir), "chroma", "chroma.sqlite3")
    assert os.path.exists(chroma_db)
    for target in TARGETS + [chroma_db]:
        for route in ("/gradio_api/file=", "/file="):
            r = http.get(server.url + route + target, timeout=10)
            assert r.status_code in (400, 403, 404), (route + target, r.status_code)
            assert "root:" not in r.text and SECRET not in r.text and "SQLite" not in r.text


def test_gradio_client_cannot_inject_a_file(server):
    from gradio_client import Client

    c = Client(server.url, verbose=False)
    api = c.view_api(return_format="dict", print_info=False)
    endpoints = api["named_endpoints"]
    assert "/respond" in endpoints
    # The chat endpoint takes the question and this browser's id (whose conversations, when there is no login;
    # anything but 32 hex digits keeps nothing); history lives on the server.
    params = [p["parameter_name"] for p in endpoints["/respond"]["parameters"]]
    assert params == ["question", "browser_id"], params
    out = c.predict("本市新建停车位多少个？", {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}},
                    api_name="/respond")
    text = json.dumps(out, ensure_ascii=False, default=str)
    assert "1200" in text and "root:" not in text


def test_chat_cache_is_private(server):
    # Gradio's cache for this app is its own directory, not the shared system temp dir.
    assert os.environ.get("GRADIO_TEMP_DIR", "").startswith(os.path.join(tempfile.gettempdir(), "assistant-gradio-"))
