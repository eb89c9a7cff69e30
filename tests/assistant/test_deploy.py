"""Intranet deployment: sub-path behind a proxy, CORS allowlist, frame-ancestors, UI auth by SSO header or basic auth."""
import pytest
from fastapi.testclient import TestClient

from assistant.api import create_app

pytestmark = pytest.mark.integration


@pytest.fixture
def make(corpus_settings, corpus_assistant):
    def build(root_path="", **server):
        s = corpus_settings.model_copy(deep=True)
        for k, v in server.items():
            setattr(s.server, k, v)
        return TestClient(create_app(s, corpus_assistant), root_path=root_path)
    return build


def test_sub_path_links(make):
    c = make(root_path="/policy")
    assert 'var base = "http://testserver/policy";' in c.get("/widget.js").text
    assert 'const root = "/policy";' in c.get("/embed").text
    assert c.get("/healthz").json()["documents"] == 9


def test_cors_allowlist_and_frame_ancestors(make):
    c = make(cors_origins=["http://intranet.example"], frame_ancestors=["http://portal.example"])
    ok = c.options("/api/ask", headers={"Origin": "http://intranet.example", "Access-Control-Request-Method": "POST"})
    bad = c.options("/api/ask", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert ok.headers.get("access-control-allow-origin") == "http://intranet.example"
    assert "access-control-allow-origin" not in bad.headers
    assert c.get("/embed").headers["content-security-policy"] == "frame-ancestors 'self' http://portal.example"
    assert make().get("/embed").headers["content-security-policy"] == "frame-ancestors 'self'"


def test_ui_behind_sso_header(make):
    c = make(trusted_user_header="X-Remote-User", api_keys=["k1"], trusted_proxies=["testclient"])
    assert c.get("/config").status_code == 401
    assert c.post("/api/ask", json={"question": "新建公厕多少座？"}).status_code == 401
    ok = c.post("/api/ask", json={"question": "新建公厕多少座？"}, headers={"X-Remote-User": "alice"})
    assert ok.status_code == 200  # the /embed page of a signed-in user can ask
    r = c.get("/config", headers={"X-Remote-User": "alice"})
    assert r.status_code == 200 and r.json()["analytics_enabled"] is False


def test_ui_basic_auth(make):
    c = make(ui_user="admin", ui_password="s3cret")
    assert c.get("/config").status_code == 401
    assert c.post("/login", data={"username": "admin", "password": "wrong"}).status_code == 400
    assert c.post("/login", data={"username": "admin", "password": "s3cret"}).status_code == 200
    assert c.get("/config").status_code == 200


def test_admin_upload_ingests_and_reports_per_file(settings):
    settings.server.admin_key = "adm"
    c = TestClient(create_app(settings, with_ui=False))
    assert c.post("/api/ask", json={"question": "停车位为多少个？"}).status_code == 503  # empty index
    assert c.post("/api/documents", files={"files": ("x.txt", b"x")}).status_code == 401
    files = [("files", ("upload-test.txt", "title: 上传测试办法\n---\n第一条 本办法规定上传测试的停车位为777个。\n".encode())),
             ("files", ("bad.exe", b"MZ"))]
    r = c.post("/api/documents", files=files, headers={"Authorization": "Bearer adm"})
    report = {d["path"].rsplit("/", 1)[-1]: d for d in r.json()["documents"]}
    assert report["upload-test.txt"]["status"] == "added" and report["bad.exe"]["status"] == "failed"
    assert "unsupported file type" in report["bad.exe"]["error"]
    assert "777" in c.post("/api/ask", json={"question": "上传测试的停车位为多少个？"}).json()["answer"]


def test_the_reader_page_fills_its_template_once(tmp_path):
    """A document's own text that looks like a placeholder stays text: the page is filled in one pass."""
    from ingest.embed import HashEmbedder
    from assistant.components import build_pipeline
    from assistant.service import build_assistant
    from assistant.settings import Settings
    from tests.conftest import write

    s = Settings(_env_file=None)
    s.store.index_dir = str(tmp_path / "index")
    doc = write(tmp_path / "d" / "t.txt", "关于__BODY__的通知\n\n第一条 正文提到__TITLE__和__META__。\n")
    build_pipeline(s, embedder=HashEmbedder()).run([doc])
    a = build_assistant(s, embedder=HashEmbedder())
    c = TestClient(create_app(s, a, with_ui=False))
    (doc_id, d), = a.documents().items()
    page = c.get(f"/doc/{doc_id}").text
    assert "__BODY__" in d.title and f"<title>{d.title}</title>" in page, d.title
    assert page.count("正文提到__TITLE__和__META__") == 1 and page.count("第一条") == 1
