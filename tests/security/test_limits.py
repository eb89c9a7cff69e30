"""Issue 8: bounded work per request, uploads off the event loop and nothing lost by name, keys that mean
something - against a real uvicorn on 127.0.0.1."""
from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from tests.live import http
from tests.security.test_file_read import _sse_call


@pytest.fixture(scope="module")
def open_server(live):
    return live(admin_key="adm")


@pytest.fixture(scope="module")
def keyed_server(live):
    return live(api_keys=["k1"], ui_public=True)


def ask(server, body: dict, **kw) -> httpx.Response:
    return http.post(f"{server.url}/api/ask", json=body, timeout=30, **kw)


def test_history_is_bounded_per_turn_and_in_turns(open_server):
    long_turn = [{"role": "user", "content": "停" * 4001}]
    r = ask(open_server, {"question": "停车位多少个？", "history": long_turn})
    assert r.status_code == 422 and "4000" in r.json()["error"]["message"]
    many = [{"role": "user", "content": "停车"}] * 21
    r = ask(open_server, {"question": "停车位多少个？", "history": many})
    assert r.status_code == 422 and "20" in r.json()["error"]["message"]
    r = ask(open_server, {"question": "停车位多少个？", "history": [{"role": "user"}]})
    assert r.status_code == 422
    ok = ask(open_server, {"question": "停车位多少个？", "history": [{"role": "user", "content": "停车" * 100}]})
    assert ok.status_code == 200 and "1200" in ok.json()["answer"]


def test_v1_messages_are_bounded(open_server):
    msgs = [{"role": "user", "content": "停" * 5000}, {"role": "user", "content": "停车位多少个？"}]
    r = http.post(f"{open_server.url}/v1/chat/completions", json={"messages": msgs}, timeout=30)
    assert r.status_code == 422 and "error" in r.json()


@pytest.mark.parametrize("filters", [{"doc_ids": "parking"}, {"doc_ids": [1, 2]}, {"issuer": ["x"]}])
def test_filters_of_the_wrong_type_are_422(open_server, filters):
    r = ask(open_server, {"question": "停车位多少个？", "filters": filters})
    assert r.status_code == 422 and r.json()["error"]["status"] == 422


def test_upload_runs_as_a_job_and_keeps_every_name(open_server):
    auth = {"Authorization": "Bearer adm"}
    files = [("files", ("附件.txt", "title: 甲办法\n---\n第一条 甲办法规定的停车位为111个。\n".encode())),
             ("files", ("附件.txt", "title: 乙办法\n---\n第一条 乙办法规定的停车位为222个。\n".encode())),
             ("files", ("..", b"x"))]
    r = http.post(f"{open_server.url}/api/documents?wait=false", files=files, headers=auth, timeout=30)
    assert r.status_code == 202
    job = r.json()["id"]
    while (j := http.get(f"{open_server.url}/api/jobs/{job}", headers=auth, timeout=10).json())["status"] in ("queued", "running"):
        assert http.get(f"{open_server.url}/healthz", timeout=5).status_code == 200  # the server answers meanwhile
        time.sleep(0.1)
    assert j["status"] == "done"
    statuses = [d["status"] for d in j["report"]["documents"]]
    assert statuses.count("failed") == 1 and statuses.count("added") == 2  # both 附件.txt kept, a bad name reported
    docs = http.get(f"{open_server.url}/api/documents", timeout=10).json()["documents"]
    assert {"甲办法", "乙办法"} <= {d["title"] for d in docs}
    assert http.get(f"{open_server.url}/api/jobs/nope", headers=auth, timeout=10).status_code == 404
    assert http.get(f"{open_server.url}/api/jobs/{job}", timeout=10).status_code == 401


def test_reader_page_needs_the_key_like_the_document_api(keyed_server):
    assert http.get(f"{keyed_server.url}/doc/parking", timeout=10).status_code == 401
    assert http.get(f"{keyed_server.url}/api/documents/parking", timeout=10).status_code == 401
    ok = http.get(f"{keyed_server.url}/doc/parking", headers={"Authorization": "Bearer k1"}, timeout=10)
    assert ok.status_code == 200 and "1200" in ok.text


def test_widget_escapes_the_host_header(open_server):
    host = "evil';alert(1);'"
    r = http.get(f"{open_server.url}/widget.js", headers={"Host": host}, timeout=10)
    literal = re.search(r"var base = (\"(?:[^\"\\\\]|\\\\.)*\");", r.text).group(1)
    assert json.loads(literal).startswith("http://evil';alert(1);'")  # the host is data inside one string literal
    assert "</script>" not in r.text


def test_empty_keys_are_refused_at_start():
    from assistant.settings import Settings

    with pytest.raises(ValueError, match="empty key"):
        Settings(_env_file=None, server={"api_keys": [""]})


def test_upload_names_that_cannot_be_stored():
    from assistant.uploads import safe_name

    for bad in ("", ".", "..", "a\x00b.txt", "x" * 256, "../", "dir/.."):
        assert safe_name(bad) is None, bad
    assert safe_name("../../etc/passwd") == "passwd" and safe_name("C:\\tmp\\附件.txt") == "附件.txt"


def test_api_keys_with_an_open_ui_refuse_to_start(small_settings):
    from assistant.api import create_app

    s = small_settings.model_copy(deep=True)
    s.server.api_keys = ["k1"]
    with pytest.raises(ValueError, match="ui-public"):
        create_app(s)
    s.server.ui_user, s.server.ui_password = "u", "p"
    create_app(s, with_ui=False)  # protected: starts


def test_sso_header_only_from_trusted_proxies(live):
    server = live(api_keys=["k1"], trusted_user_header="X-Remote-User", trusted_proxies=["10.9.9.9"])
    r = ask(server, {"question": "停车位多少个？"}, headers={"X-Remote-User": "mallory"})
    assert r.status_code == 401  # 127.0.0.1 is not the configured proxy: the header means nothing
    assert http.get(f"{server.url}/config", headers={"X-Remote-User": "mallory"}, timeout=10).status_code == 401
    trusted = live(ui=False, api_keys=["k1"], trusted_user_header="X-Remote-User")  # default: loopback proxy
    assert ask(trusted, {"question": "停车位多少个？"}, headers={"X-Remote-User": "alice"}).status_code == 200


def test_reader_links_signed_by_the_ui_open_without_a_key(live):
    server = live(api_keys=["k1"], ui_public=True)
    assert http.get(f"{server.url}/doc/parking?t=deadbeef", timeout=10).status_code == 401
    events = _sse_call(server.url, "respond", ["本市新建停车位多少个？", ""])  # what the chat page receives
    token = re.search(r"/doc/parking\?s=\d+&(?:amp;)?e=\d+&(?:amp;)?t=([0-9a-f]+)", events).group(1)
    ok = http.get(f"{server.url}/doc/parking?t={token}", timeout=10)
    assert ok.status_code == 200 and "1200" in ok.text


def test_no_server_path_is_exposed(open_server, small_settings):
    index_dir = str(small_settings.store.index_dir)
    docs = http.get(f"{open_server.url}/api/documents", timeout=10).json()["documents"]
    one = http.get(f"{open_server.url}/api/documents/parking", timeout=10).json()
    text = str(docs) + str({k: v for k, v in one.items() if k != "text"})
    assert "/" not in "".join(d["file"] for d in docs) and index_dir not in text and "/tmp" not in text
