"""The chat in a real headless Chromium (Debian's), against the real app on 127.0.0.1."""
from __future__ import annotations

import json
import shutil
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.conftest import SPEECH, write
from tests.live import LiveServer, free_port, http

pytestmark = [pytest.mark.browser, pytest.mark.integration]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"]
DOGS = ("title: 测试市养犬管理规定\n---\n测试市养犬管理规定\n第一章 总则\n第一条 为了规范养犬行为，制定本规定。\n"
        "第二章 养犬行为\n第五条 携犬出户的，应当为犬只束犬链，由成年人牵引。\n第三章 法律责任\n"
        "第二十条 违反本规定第五条，携犬出户未束犬链的，由城市管理部门处五十元以上二百元以下罚款。\n")
XSS = "title: 恶意测试文件\n---\n恶意测试文件\n第一条 本条含有<script>window.__pwned=1</script>和<img src=x onerror=\"window.__pwned=2\">字样，用于测试。\n"


ADMIN = "adm-browser"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, embedder):
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: .ci/run installs `chromium fonts-noto-cjk`")
    from assistant.api import create_app
    from assistant.components import build_pipeline
    from assistant.settings import Settings

    d = tmp_path_factory.mktemp("browser")
    write(d / "docs" / "xss.txt", XSS)
    write(d / "docs" / "dogs.txt", DOGS)
    shutil.copy(SPEECH, d / "docs" / SPEECH.name)
    s = Settings(_env_file=None)
    s.store.index_dir = str(d / "index")
    s.server.admin_key = ADMIN
    build_pipeline(s, embedder=embedder).run([d / "docs"])
    host_port, app_port = free_port(), free_port()
    s.server.frame_ancestors = [f"http://127.0.0.1:{host_port}"]
    srv = LiveServer(create_app(s), app_port)
    url = f"http://127.0.0.1:{app_port}"
    (d / "host").mkdir()
    (d / "host" / "index.html").write_text(
        f"<!doctype html><meta charset='utf-8'><meta name='viewport' content='width=device-width'><h1>内网门户</h1><iframe id='chat' src='{url}/embed' width='420' height='600'></iframe>"
        f"<script src='{url}/widget.js'></script>", encoding="utf-8")
    handler = lambda *a, **k: SimpleHTTPRequestHandler(*a, directory=str(d / "host"), **k)  # noqa: E731
    host = ThreadingHTTPServer(("127.0.0.1", host_port), handler)
    threading.Thread(target=host.serve_forever, daemon=True).start()
    yield url, f"http://127.0.0.1:{host_port}"
    host.shutdown()
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, app_url):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    pg = ctx.new_page()
    pg.requests_seen = []
    pg.on("request", lambda r: pg.requests_seen.append(r.url))
    yield pg
    hosts = {urlparse(u).hostname for u in pg.requests_seen if urlparse(u).scheme in ("http", "https", "ws", "wss")}
    assert hosts <= {"127.0.0.1", "localhost"}, hosts  # no fonts, CDN or analytics from anywhere else
    ctx.close()


WATCH = """() => { window.__states = []; const root = document.querySelector('#chatbot, .chatbot') || document.body;
  new MutationObserver(() => { const bots = document.querySelectorAll('.bot, [data-testid="bot"]');
    const t = bots.length ? bots[bots.length - 1].innerText : ''; const last = window.__states[window.__states.length - 1];
    if (t && (!last || last.t !== t)) window.__states.push({t, at: performance.now()}); })
  .observe(root, {subtree: true, childList: true, characterData: true}); window.__t0 = performance.now(); }"""


def _ask(page, question: str) -> None:
    box = page.get_by_placeholder("请输入问题，按回车提问")
    box.fill(question)
    box.press("Enter")


def test_a_question_over_the_limit_is_said_to_be_too_long_not_cut(page, app_url):
    """The box does not cut a pasted question at the limit (the browser would, silently, and the cut question
    was answered): the chat says it is too long."""
    url, _ = app_url
    page.goto(url + "/")
    page.get_by_placeholder("请输入问题，按回车提问").wait_for(timeout=30000)
    _ask(page, "停车场建设有什么要求？" * 200)  # 2,200 characters
    page.get_by_text("问题过长（2200 字）").wait_for(timeout=30000)


def test_ask_stream_click_citation_and_follow_up(page, app_url, artifacts):
    url, _ = app_url
    page.goto(url + "/")
    page.get_by_placeholder("请输入问题，按回车提问").wait_for(timeout=30000)
    page.evaluate(WATCH)
    box = page.get_by_placeholder("请输入问题，按回车提问")
    from assistant.ui import EXAMPLES

    for _ in range(20):  # the examples are re-fitted to the index on page load; click once that has settled
        page.get_by_text(EXAMPLES[0], exact=True).first.click()  # an example question fills the box
        page.wait_for_timeout(250)
        if box.input_value():
            break
    assert box.input_value() == EXAMPLES[0]
    box.press("Enter")
    page.locator("a[href='#cite-1-1']").first.wait_for(timeout=60000)
    states = page.evaluate("window.__states")
    assert len(states) >= 2, states  # the answer arrived in pieces, then was replaced by the verified text
    assert "治违" in states[-1]["t"]
    timing = {"first_token_ms": round(states[0]["at"] - page.evaluate("window.__t0")),
              "full_answer_ms": round(states[-1]["at"] - page.evaluate("window.__t0"))}
    (artifacts / "browser-timing.json").write_text(json.dumps(timing))
    page.locator("a[href='#cite-1-1']").first.click()
    card = page.locator("#cite-1-1")
    card.wait_for()
    assert "active" in card.get_attribute("class")
    assert "《2023年度在全市百城建设提质暨文明城市创建工作推进会上讲话》" in card.inner_text()
    assert card.locator("mark").inner_text().strip()
    assert page.url.startswith(url)  # the click stayed on the page
    page.screenshot(path=str(artifacts / "chat.png"), full_page=True)

    bots = page.locator(".bot, [data-testid='bot']")
    _ask(page, "中心城区集中供热率提升到了多少？")
    page.wait_for_function("() => document.body.innerText.includes('80.1%')", timeout=60000)
    n = bots.count()
    _ask(page, "那燃气普及率呢？")  # a follow-up: only answerable with the previous turn's subject
    page.wait_for_function(f"() => document.querySelectorAll(\".bot, [data-testid='bot']\").length > {n}", timeout=60000)
    page.wait_for_function("() => { const b = document.querySelectorAll(\".bot, [data-testid='bot']\");"
                           " return b[b.length - 1].innerText.includes('98%'); }", timeout=60000)
    page.screenshot(path=str(artifacts / "chat-follow-up.png"), full_page=True)


def test_refusal_looks_different(page, app_url):
    page.goto(app_url[0] + "/")
    _ask(page, "今天天气怎么样？")
    refusal = page.locator(".refused")
    refusal.wait_for(timeout=60000)
    assert refusal.inner_text() == "文档中没有找到与该问题相关的内容。"
    bots = page.locator("[data-testid='bot']")
    before = bots.count()
    page.get_by_role("button", name="重试", exact=True).click()  # retry replaces the last turn, it does not add one
    page.wait_for_timeout(1500)
    refusal.wait_for(timeout=60000)
    assert bots.count() == before == 1
    page.get_by_role("button", name="清空", exact=True).click()
    page.wait_for_function("() => document.querySelectorAll(\"[data-testid='bot']\").length === 0", timeout=10000)


def test_document_text_is_shown_as_text(page, app_url, artifacts):
    page.goto(app_url[0] + "/")
    _ask(page, "恶意测试文件第一条含有什么字样？")
    page.wait_for_function("() => document.body.innerText.includes('<script>window.__pwned=1</script>')", timeout=60000)
    assert page.evaluate("window.__pwned") is None
    page.goto(app_url[0] + "/doc/xss")
    assert "<img src=x onerror=" in page.inner_text("body") and page.evaluate("window.__pwned") is None
    page.screenshot(path=str(artifacts / "xss.png"))


def test_embed_in_an_iframe_and_widget_on_another_origin(page, app_url, artifacts):
    url, host = app_url
    page.goto(host + "/index.html")
    frame = page.frame_locator("#chat")
    frame.locator("#q").fill("新建公厕多少座？")
    frame.locator("#send").click()
    frame.locator(".src mark").first.wait_for(timeout=60000)
    assert "210" in frame.locator("#log").inner_text()
    page.get_by_role("button", name="打开政策问答").click()
    page.wait_for_selector(f"iframe[src='{url}/embed']")
    page.screenshot(path=str(artifacts / "embed.png"))


def test_embed_marks_open_their_quote_errors_are_said_and_the_log_fills_the_frame(page, app_url):
    """Issue 14.7: in /embed a [n] opens its quote with a 查看全文 link to the reader page; the button is busy while
    an answer comes; an unreachable server gets a message, not an empty answer forever; the log fills the frame."""
    url, _ = app_url
    page.set_viewport_size({"width": 420, "height": 600})
    page.goto(url + "/embed")
    assert page.get_by_label("问题").count() == 1  # the input has a label
    page.locator("#q").fill("新建公厕多少座？")
    held = []
    page.route("**/api/ask", lambda route: held.append(route))  # hold the request: the page must show it is busy
    page.locator("#send").click()
    page.wait_for_function("() => document.getElementById('send').disabled", timeout=5000)
    assert "正在" in page.locator(".a.busy").inner_text()
    held[0].continue_()
    page.unroute("**/api/ask")
    page.locator(".a .cite-link").first.wait_for(timeout=60000)
    assert not page.locator("#send").is_disabled()
    page.locator(".a .cite-link").first.click()
    card = page.locator(".src.active")
    assert card.count() == 1 and "210" in card.inner_text()
    link = card.locator("a").get_attribute("href")
    assert link.startswith("/doc/") and "&t=" in link
    assert "<mark id='hl'>" in http.get(url + link, timeout=10).text  # the signed link opens the reader page
    log_h = page.evaluate("document.getElementById('log').getBoundingClientRect().height")
    assert log_h > 0.75 * 600, log_h
    page.route("**/api/ask", lambda route: route.abort())
    page.locator("#q").fill("业委会任期几年？")
    page.locator("#send").click()
    page.locator(".a.error").wait_for(timeout=10000)
    assert "无法连接" in page.locator(".a.error").inner_text()
    assert not page.locator("#send").is_disabled()


def test_widget_is_full_screen_on_a_phone_and_closes_with_esc(browser, app_url, artifacts):
    """Issue 14.6: on a 360 px screen the widget's panel takes the whole screen, with a close button; Esc closes
    it, inside the frame too."""
    _, host = app_url
    ctx = browser.new_context(viewport={"width": 360, "height": 740}, locale="zh-CN", is_mobile=True, has_touch=True)
    page = ctx.new_page()
    try:
        page.goto(host + "/index.html")
        page.get_by_role("button", name="打开政策问答").click()
        dialog = page.get_by_role("dialog", name="政策问答")
        dialog.wait_for(timeout=10000)
        box = dialog.bounding_box()
        screen = page.evaluate("[window.innerWidth, window.innerHeight]")  # the portal's wide frame widens it
        assert box["x"] == 0 and box["y"] == 0 and [box["width"], box["height"]] == screen, (box, screen)
        frame = page.frame_locator("div[role=dialog] iframe")
        frame.locator("#q").wait_for(timeout=30000)
        page.screenshot(path=str(artifacts / "widget-360.png"))  # README: assets/widget-360.png
        page.keyboard.press("Escape")
        dialog.wait_for(state="detached", timeout=5000)
        page.get_by_role("button", name="打开政策问答").click()
        frame.locator("#q").click()
        page.keyboard.press("Escape")  # pressed inside the frame
        dialog.wait_for(state="detached", timeout=5000)
        page.get_by_role("button", name="打开政策问答").click()
        page.get_by_role("button", name="关闭").click()
        dialog.wait_for(state="detached", timeout=5000)
    finally:
        ctx.close()


def test_widget_on_a_site_not_allowed_to_frame_opens_a_tab(browser, app_url, tmp_path):
    """Issue 14.8: where frame-ancestors would refuse the frame, the widget opens the chat in a new tab instead
    of a broken frame."""
    url, _ = app_url
    (tmp_path / "index.html").write_text(f"<!doctype html><meta charset='utf-8'><h1>别的站点</h1>"
                                         f"<script src='{url}/widget.js'></script>", encoding="utf-8")
    handler = lambda *a, **k: SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    other = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    ctx = browser.new_context(locale="zh-CN")
    page = ctx.new_page()
    try:
        page.goto(f"http://127.0.0.1:{other.server_address[1]}/index.html")
        with ctx.expect_page(timeout=10000) as tab:
            page.get_by_role("button", name="打开政策问答").click()
        assert tab.value.url.startswith(url + "/embed")
        assert page.locator("iframe").count() == 0
    finally:
        ctx.close()
        other.shutdown()


def test_eval_tab_runs_a_question_file(page, app_url, tmp_path, artifacts):
    """Issue 14.10: the admin key is asked for; a GBK file and a file with no valid line say what is wrong; the
    report is in Chinese, one readable row per question, and downloads as HTML and JSON."""
    good = tmp_path / "q.jsonl"
    good.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in [
        {"id": "a", "question": "新建公厕多少座？", "facts": ["210"], "evidence": "新建公厕210座"},
        {"id": "b", "question": "今天天气怎么样？", "facts": []}]) + "\n{broken\n", encoding="utf-8")
    gbk = tmp_path / "gbk.jsonl"
    gbk.write_bytes(json.dumps({"question": "新建公厕多少座？", "facts": []}, ensure_ascii=False).encode("gbk"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("{}\n", encoding="utf-8")
    page.goto(app_url[0] + "/")
    page.get_by_role("tab", name="评测").click()
    key = page.get_by_label("管理员密钥").last

    def run(f, k, wait_for):
        key.fill(k)
        if not page.locator("input[type=file]").count():  # a file is shown: its × takes it off first
            page.locator("button[aria-label]").filter(has=page.locator("svg")).last.click()
        page.locator("input[type=file]").last.set_input_files(str(f))
        page.wait_for_timeout(500)
        page.get_by_role("button", name="开始评测").click()
        page.wait_for_function(f"() => document.body.innerText.includes({json.dumps(wait_for)})", timeout=120000)

    run(good, "wrong", "管理员密钥不正确")
    run(gbk, ADMIN, "不是 UTF-8")
    run(empty, ADMIN, "没有可评测的问题")
    run(good, ADMIN, "评测报告 / Evaluation report")
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts / "eval-tab.png"), full_page=True)
    body = page.inner_text("body")
    assert "line 3" in body and "应拒已拒" in body and "要点召回" in body
    table = page.locator(".block").filter(has_text="逐题结果（未通过在前）").last
    text = table.inner_text()
    assert "新建公厕多少座？" in text and "今天天气怎么样？" in text and text.count("通过") >= 2
    width = table.locator("th").filter(has_text="问题 question").first.bounding_box()["width"]
    assert width > 120, width  # a column a question can be read in, not one letter wide
    links = page.locator("a[download]")
    hrefs = {links.nth(i).get_attribute("href") for i in range(links.count())}
    html_link = next(h for h in hrefs if h and h.endswith(".html"))
    json_link = next(h for h in hrefs if h and h.endswith(".json"))
    assert "评测报告" in http.get(html_link if html_link.startswith("http") else app_url[0] + html_link).text
    report = http.get(json_link if json_link.startswith("http") else app_url[0] + json_link).json()
    assert report["summary"]["n"] == 2 and "line 3" in report["errors"][0]


def test_admin_upload_tab(browser, tmp_path, embedder, artifacts):
    """Issue 14.9: statuses and reasons in Chinese (English after); the 文档 tab follows each change; the same text
    in GBK under another name is recognised; the buttons are disabled while a job runs; an admin replaces and
    deletes a document from the UI."""
    from assistant.api import create_app
    from assistant.service import build_assistant
    from assistant.settings import Settings

    s = Settings(_env_file=None)
    s.store.index_dir = str(tmp_path / "index")
    s.server.admin_key = "adm-key"
    srv = LiveServer(create_app(s, build_assistant(s, embedder=embedder)))
    try:
        rule = "title: 上传测试办法\n---\n第一条 本办法规定停车位为777个。\n"
        good = write(tmp_path / "up" / "办法.txt", rule)
        bad = tmp_path / "up" / "empty.txt"
        bad.write_bytes(b"")
        gbk = tmp_path / "up2" / "办法（另存为GBK）.txt"
        gbk.parent.mkdir()
        gbk.write_bytes(rule.encode("gbk"))
        newer = write(tmp_path / "up3" / "办法v2.txt", rule.replace("777", "888"))
        page = browser.new_page()
        page.goto(srv.url + "/")
        page.get_by_role("tab", name="上传").click()
        page.get_by_label("管理员密钥").fill("adm-key")
        go = page.get_by_role("button", name="上传并索引")

        def upload(paths, button=go):
            page.locator("[role=tabpanel]:visible input[type=file]").first.set_input_files([str(p) for p in paths])
            listed = f"{paths[-1].stem}\n{paths[-1].suffix}"  # how the file list shows a name
            page.wait_for_function(f"() => document.body.innerText.includes({json.dumps(listed)})")
            button.click()
            page.wait_for_function("() => [...document.querySelectorAll('button')].some("
                                   "b => b.innerText.includes('上传并索引') && b.disabled)", timeout=10000)
            page.wait_for_function("() => [...document.querySelectorAll('button')].some("
                                   "b => b.innerText.includes('上传并索引') && !b.disabled)", timeout=120000)
            page.wait_for_timeout(500)
            body = page.inner_text("body")
            assert listed not in body and paths[-1].name in body, body  # a run empties the file list
            return body

        first = upload([good, bad])
        assert "已添加" in first and "added" in first and "空文件 / empty file" in first and "失败" in first
        page.screenshot(path=str(artifacts / "upload-tab.png"), full_page=True)
        again = upload([gbk])
        assert "未变化" in again and "与已收录的文档内容相同" in again and "/tmp" not in again, again
        page.get_by_role("tab", name="文档").click()
        docs = page.locator(".block").filter(has_text="发布机关").first.inner_text()
        assert docs.count("上传测试办法") == 1  # no refresh pressed: the tab followed the upload
        page.get_by_role("tab", name="上传").click()
        target = page.get_by_label("已收录的文档（替换或删除）")
        target.click()
        page.get_by_role("option", name="上传测试办法").first.click()
        replaced = upload([newer], page.get_by_role("button", name="用所选文件替换该文档"))
        assert "已更新" in replaced, replaced
        doc_id = http.get(f"{srv.url}/api/documents", timeout=10).json()["documents"][0]["doc_id"]
        assert "888" in http.get(f"{srv.url}/api/documents/{doc_id}", timeout=10).json()["text"]
        target.click()
        page.get_by_role("option", name="上传测试办法").first.click()
        page.get_by_role("button", name="删除该文档").click()
        page.wait_for_function("() => document.body.innerText.includes('已删除')", timeout=30000)
        assert http.get(f"{srv.url}/api/documents", timeout=10).json()["documents"] == []
        page.close()
    finally:
        srv.stop()


def _answer(page, app_url, question: str) -> None:
    """Open the chat, ask, and wait for the verified answer's first citation."""
    page.goto(app_url[0] + "/")
    page.get_by_placeholder("请输入问题，按回车提问").wait_for(timeout=30000)
    _ask(page, question)
    page.locator("a[href='#cite-1-1']").first.wait_for(timeout=60000)


def test_list_answer_shows_every_item_with_its_citation(page, app_url):
    _answer(page, app_url, "讲话回顾两年多来取得的成效，主要体现在哪几个方面？")
    bot = page.locator(".bot, [data-testid='bot']").last
    text = bot.inner_text()
    for item in ("一是完善了城市功能", "二是提升了城市品质", "三是促进了经济发展", "四是锤炼了干部队伍"):
        assert item in text, text  # the answer does not stop at the lead-in's colon
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert any(ln.startswith("二是") for ln in lines), lines  # one item per line
    last = bot.locator("a.cite-link").last
    n = last.inner_text().strip("[]")
    last.click()
    card = page.locator(f"#cite-1-{n}")
    assert "active" in card.get_attribute("class") and "四是锤炼了干部队伍" in card.locator("mark").inner_text()


def test_penalty_answer_cites_the_duty_and_the_fine(page, app_url):
    _answer(page, app_url, "遛狗不牵绳罚多少？")
    text = page.locator(".bot, [data-testid='bot']").last.inner_text()
    assert "束犬链" in text and "五十元以上二百元以下罚款" in text, text
    marks = []
    for link in page.locator(".bot a.cite-link, [data-testid='bot'] a.cite-link").all():
        link.click()
        card = page.locator(f"#cite-1-{link.inner_text().strip('[]')}")
        assert "active" in card.get_attribute("class")
        marks.append(card.locator("mark").inner_text())
    assert any("第五条" in m for m in marks) and any("罚款" in m for m in marks), marks


def test_an_earlier_answers_citation_opens_its_own_source(browser, app_url):
    """Issue 14.1 and 14.6: each answer keeps its sources. [1] of the first answer opens the first answer's passage
    (under that answer) after a second answer from another document filled the panel; on a phone-sized screen a
    tapped [n] opens its passage right under the answer."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    page = ctx.new_page()
    try:
        _answer(page, app_url, "遛狗不牵绳罚多少？")
        _ask(page, "新建公厕多少座？")
        page.locator("a[href='#cite-2-1']").first.wait_for(timeout=60000)
        assert "测试市养犬管理规定" not in page.locator("#cite-2-1").inner_text()  # the panel: the latest answer
        page.locator("a[href='#cite-1-1']").first.click()
        active = page.locator(".cite.active")
        active.first.wait_for(timeout=10000)
        assert active.count() == 1 and active.first.is_visible()
        assert "测试市养犬管理规定" in active.first.inner_text(), active.first.inner_text()
        assert "active" not in (page.locator("#cite-2-1").get_attribute("class") or "")
    finally:
        ctx.close()
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN", is_mobile=True, has_touch=True)
    page = ctx.new_page()
    try:
        _answer(page, app_url, "新建公厕多少座？")
        link = page.locator("a[href='#cite-1-1']").first
        link.click()
        inline = page.locator(".cite.cite-1-1")
        inline.wait_for(timeout=10000)  # visible: its 来源 block opened
        assert "active" in inline.get_attribute("class")
        # Both measured in one step: the page is still scrolling smoothly to the card
        box, at = page.evaluate("([c, a]) => [c.getBoundingClientRect().top, a.getBoundingClientRect().top]",
                                [inline.element_handle(), link.element_handle()])
        assert 0 <= box - at < 844, (box, at)  # right below the answer, not a page further down
    finally:
        ctx.close()


def test_copy_gives_plain_text_with_its_sources(browser, app_url):
    """Issue 14.5: an answer's 复制 puts plain text and its 来源 list on the clipboard, never HTML."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=app_url[0])
    page = ctx.new_page()
    try:
        _answer(page, app_url, "新建公厕多少座？")
        assert page.locator(".bot button[aria-label*='opy'], [data-testid='bot'] button[aria-label*='opy']").count() == 0
        _ask(page, "携犬出户未束犬链罚多少？")  # two answers: the second one's 复制 copies the second answer
        page.locator("a[href='#cite-2-1']").first.wait_for(timeout=60000)
        copy = page.locator(".copy-answer").last
        copy.click()
        page.wait_for_function("() => { const c = document.querySelectorAll('.copy-answer');"
                               " return c[c.length - 1].textContent === '已复制'; }", timeout=5000)
        text = page.evaluate("navigator.clipboard.readText()")
        assert "210" not in text and "来源：" in text and "[1]" in text, text
        page.locator(".copy-answer").first.click()
        page.wait_for_timeout(300)
        text = page.evaluate("navigator.clipboard.readText()")
        assert "210" in text and "来源：" in text, text
        assert "<a" not in text and "cite-link" not in text and "<mark>" not in text, text
    finally:
        ctx.close()


@pytest.mark.parametrize("control", ["清空", "trash"])
def test_one_clear_clears_the_chat_its_history_and_its_sources(page, app_url, control):
    """Issue 14.4: the 清空 button and the chat's own trash icon clear the same things: the turns, the hidden
    history (重试 brings nothing back) and the sources panel."""
    _answer(page, app_url, "新建公厕多少座？")
    bots = page.locator("[data-testid='bot']")
    assert bots.count() == 1
    if control == "trash":
        page.get_by_role("button", name="清空对话").click()  # the chat's own icon (its zh-CN label)
    else:
        page.get_by_role("button", name="清空", exact=True).click()
    page.wait_for_function("() => document.querySelectorAll(\"[data-testid='bot']\").length === 0", timeout=10000)
    page.wait_for_function("() => document.body.innerText.includes('来源会显示在这里')", timeout=10000)
    page.get_by_role("button", name="重试").click()
    page.wait_for_timeout(2000)
    assert bots.count() == 0  # the deleted turn does not come back


def test_a_greeting_and_an_outline_question_in_the_chat(page, app_url):
    """Issue 14.11: "你好" gets what can be asked (the indexed titles), not the refusal; "这篇讲话讲了什么" gets the
    speech's outline, each heading a citation that opens its place in the text."""
    page.goto(app_url[0] + "/")
    page.get_by_placeholder("请输入问题，按回车提问").wait_for(timeout=30000)
    _ask(page, "你好")
    page.wait_for_function("() => document.body.innerText.includes('测试市养犬管理规定》')", timeout=60000)
    assert "没有找到" not in page.locator(".bot, [data-testid='bot']").last.inner_text()
    _ask(page, "这篇讲话讲了什么？")
    page.locator("a[href='#cite-2-1']").first.wait_for(timeout=60000)
    text = page.locator(".bot, [data-testid='bot']").last.inner_text()
    assert "主要内容" in text and "一、回看走过的路" in text and "二、远眺前行的路" in text, text
    page.locator("a[href='#cite-2-1']").first.click()
    assert "一、回看走过的路" in page.locator("#cite-2-1 mark").inner_text()


def _luminance(css: str) -> float:
    import re

    r, g, b = (int(x) / 255 for x in re.findall(r"\d+", css)[:3])
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_source_cards_are_readable_in_both_themes_and_pages_are_chinese(browser, app_url, theme, artifacts):
    """Issue 14.2 and 14.3: a source card's text keeps WCAG AA contrast on its background in the light and the
    dark theme; the chat, /embed and /doc declare zh-CN."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN", color_scheme=theme)
    page = ctx.new_page()
    try:
        page.goto(app_url[0] + f"/?__theme={theme}")
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        _ask(page, "新建公厕多少座？")
        card = page.locator("[id^='cite-']").first  # the sources panel's card
        card.wait_for(timeout=60000)
        fg, bg = page.evaluate("el => { const s = getComputedStyle(el); return [s.color, s.backgroundColor]; }",
                               card.element_handle())
        hi, lo = sorted((_luminance(fg), _luminance(bg)), reverse=True)
        assert (hi + 0.05) / (lo + 0.05) >= 4.5, (theme, fg, bg)
        page.locator("a[href='#cite-1-1']").first.click()
        page.wait_for_timeout(600)
        page.screenshot(path=str(artifacts / f"theme-{theme}.png"))  # README: assets/theme-light.png, -dark.png
    finally:
        ctx.close()
    for path in ("/embed", "/doc/dogs"):
        assert "lang=\"zh-CN\"" in http.get(app_url[0] + path, timeout=10).text.replace("'", '"')


def test_sessions_feedback_and_export_survive_a_restart(browser, tmp_path, embedder, artifacts):
    """Issue 14 (features): a conversation is kept server-side for this browser, listed after the server restarts
    and opened again; 👍/👎 with a comment lands in the database with the answer's citations; export gives
    Markdown with the sources; rename and delete work from the side panel; a document filter narrows the sources."""
    from assistant.api import create_app
    from assistant.conversations import ConversationStore
    from assistant.service import build_assistant
    from assistant.settings import Settings

    s = Settings(_env_file=None)
    s.store.index_dir = str(tmp_path / "index")
    s.server.admin_key = ADMIN
    write(tmp_path / "docs" / "dogs.txt", DOGS)
    shutil.copy(SPEECH, tmp_path / "docs" / SPEECH.name)
    from assistant.components import build_pipeline
    build_pipeline(s, embedder=embedder).run([tmp_path / "docs"])
    port = free_port()
    srv = LiveServer(create_app(s, build_assistant(s, embedder=embedder)), port)
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    page = ctx.new_page()
    try:
        page.goto(srv.url + "/")
        page.get_by_placeholder("请输入问题，按回车提问").wait_for(timeout=30000)
        page.wait_for_function("() => localStorage.getItem('policy-assistant-browser')")  # the page's id is set
        _ask(page, "新建公厕多少座？")
        page.locator("a[href='#cite-1-1']").first.wait_for(timeout=60000)
        sessions = page.locator("#sessions")
        sessions.get_by_text("新建公厕多少座？").wait_for(timeout=10000)
        page.get_by_label("对回答的意见（可选，点赞或点踩时一并记录）").fill("还想知道停车场")
        page.locator("button[aria-label='踩']").last.click()  # 👎 (Gradio labels it in the page's language)
        page.get_by_text("已记录反馈").wait_for(timeout=10000)
        page.get_by_role("button", name="导出 Markdown").click()
        page.wait_for_function("() => [...document.querySelectorAll('a[download]')].some(a => a.href.endsWith('.md'))",
                               timeout=10000)
        href = next(h for h in (a.get_attribute("href") for a in page.locator("a[download]").all()) if h.endswith(".md"))
        md = http.get(href if href.startswith("http") else srv.url + href, timeout=10).text
        assert "## 问：新建公厕多少座？" in md and "来源：" in md and "210" in md
        srv.stop()
        srv = LiveServer(create_app(s, build_assistant(s, embedder=embedder)), port)  # a restart, same database
        page.reload()
        sessions.get_by_text("新建公厕多少座？").click(timeout=30000)
        page.locator("a[href='#cite-1-1']").first.wait_for(timeout=10000)
        assert "210" in page.locator("[data-testid='bot'], .bot").last.inner_text()
        page.screenshot(path=str(artifacts / "sessions.png"), full_page=True)
        [fb] = ConversationStore(s.store.conversations()).feedback()
        assert (fb["rating"], fb["comment"], fb["question"]) == (-1, "还想知道停车场", "新建公厕多少座？")
        assert fb["citations"] and "210" in fb["answer"] and fb["user"].startswith("browser:")
        page.get_by_role("tab", name="评测").click()  # the admin turns the 踩 answer into a draft test question
        page.get_by_label("管理员密钥").last.fill(ADMIN)
        page.get_by_role("button", name="由“踩”的反馈生成测试问题草稿").click()
        page.wait_for_function("() => [...document.querySelectorAll('a[download]')].some(a => a.href.endsWith('.jsonl'))",
                               timeout=10000)
        href = next(h for h in (a.get_attribute("href") for a in page.locator("a[download]").all()) if h.endswith(".jsonl"))
        [draft] = [json.loads(x) for x in http.get(href if href.startswith("http") else srv.url + href,
                                                     timeout=10).text.splitlines()]
        assert draft["question"] == "新建公厕多少座？" and draft["note"] == "还想知道停车场" and "facts" not in draft
        page.get_by_role("tab", name="问答").click()
        other = browser.new_context(locale="zh-CN").new_page()  # another browser sees none of it
        other.goto(srv.url + "/")
        other.get_by_placeholder("请输入问题，按回车提问").wait_for(timeout=30000)
        other.wait_for_function("() => localStorage.getItem('policy-assistant-browser')")  # its list has loaded
        other.wait_for_timeout(1000)
        assert other.locator("#sessions").get_by_text("新建公厕").count() == 0
        other.context.close()
        page.get_by_label("重命名为").fill("公厕数量")
        page.get_by_role("button", name="重命名").click()
        sessions.get_by_text("公厕数量").wait_for(timeout=10000)
        page.get_by_role("button", name="删除", exact=True).click()
        sessions.get_by_text("公厕数量").wait_for(state="detached", timeout=10000)
        assert page.locator("[data-testid='bot'], .bot").count() == 0  # the deleted conversation left the screen
        only = page.get_by_label("只在这些文档中查找（不选 = 全部）")
        only.click()
        page.get_by_role("option", name="测试市养犬管理规定").click()
        page.keyboard.press("Escape")
        _ask(page, "新建公厕多少座？")
        page.locator("[data-testid='bot'] .refused, .bot .refused").last.wait_for(timeout=60000)  # not in that one
    finally:
        ctx.close()
        srv.stop()


def test_stop_ends_a_streaming_answer_in_the_chat_and_in_embed(page, app_url, monkeypatch):
    """Issue 14 (features): 停止 ends an answer that is still coming, in the chat and in /embed, and asking again
    works."""
    from assistant.service import Assistant

    original = Assistant.stream

    def slow(self, *a, **k):
        for ev in original(self, *a, **k):
            time.sleep(0.1 if ev.kind == "token" else 3.0)  # the checked answer comes last, late
            yield ev
    monkeypatch.setattr(Assistant, "stream", slow)
    url = app_url[0]
    page.goto(url + "/")
    page.get_by_placeholder("请输入问题，按回车提问").wait_for(timeout=30000)
    _ask(page, "新建公厕多少座？")
    page.get_by_text("新建公厕210座").first.wait_for(timeout=30000)  # the first piece has come
    page.get_by_role("button", name="停止").click()
    page.wait_for_timeout(4000)  # longer than the rest of the answer would take
    assert page.locator("a[href='#cite-1-1']").count() == 0  # the verified answer never arrived
    page.goto(url + "/embed")
    page.fill("#q", "新建公厕多少座？")
    page.click("#send")
    page.locator("#stop").wait_for(state="visible", timeout=10000)
    page.locator(".a").filter(has_text="新建公厕").wait_for(timeout=30000)
    page.click("#stop")
    page.get_by_text("（已停止）").wait_for(timeout=5000)
    assert page.locator("#stop").is_hidden() and page.locator("#send").is_enabled()
    monkeypatch.setattr(Assistant, "stream", original)
    page.fill("#q", "新建公厕多少座？")
    page.click("#send")
    page.locator(".a .cite-link").first.wait_for(timeout=30000)  # asking again works


def test_upload_progress_shows_the_file_and_the_chunks(browser, tmp_path, embedder):
    """Issue 14.9: a long upload shows which file of how many it is on and the chunks indexed so far (the
    embedder is slowed: what is tested is the display, not the model's speed)."""
    from assistant.api import create_app
    from assistant.service import build_assistant
    from assistant.settings import Settings

    class Slow:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def embed_passages(self, texts):
            time.sleep(0.5)
            return self.inner.embed_passages(texts)

    s = Settings(_env_file=None)
    s.store.index_dir = str(tmp_path / "index")
    s.server.admin_key = ADMIN
    srv = LiveServer(create_app(s, build_assistant(s, embedder=Slow(embedder))))
    try:
        files = [write(tmp_path / "up" / f"办法{i}.txt", f"title: 进度测试办法{i}\n---\n第一条 本办法第{i}号规定停车位为{i}00个。\n")
                 for i in range(1, 4)]
        page = browser.new_page()
        page.goto(srv.url + "/")
        page.get_by_role("tab", name="上传").click()
        page.get_by_label("管理员密钥").fill(ADMIN)
        page.locator("[role=tabpanel]:visible input[type=file]").first.set_input_files([str(f) for f in files])
        page.wait_for_function("() => document.body.innerText.includes('办法3\\n.txt')")
        page.get_by_role("button", name="上传并索引").click()
        page.get_by_text("文件 1/3，已索引 1 个片段").first.wait_for(timeout=30000)
        page.wait_for_function("() => document.body.innerText.split('已添加').length > 3", timeout=60000)  # all 3
        page.close()
    finally:
        srv.stop()
