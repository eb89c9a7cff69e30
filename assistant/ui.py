"""Gradio Blocks (thin): renders what the service returns; no retrieval or prompt logic here."""
from __future__ import annotations

import html
import logging
import re
from pathlib import Path
from typing import Callable
from urllib.parse import quote as url_quote

import gradio as gr

from ingest.schema import IndexEmpty

from .answer import NOT_STATED, Answer
from .service import Assistant
from .settings import Settings
from .conversations import ConversationStore
from .ui_sessions import Sessions, new_browser_id
from .ui_tabs import documents_tab, evaluation_tab, upload_tab
from .uploads import UploadService

log = logging.getLogger(__name__)
# Offered only when the index can answer them (Assistant.example_questions); otherwise questions about its titles.
EXAMPLES = ["五项治理指哪五项？", "这两年修了多少公里路？", "市容环卫责任区由谁负责？", "无废城市试点要达到什么目标？",
            "业委会任期几年？", "禁烟场所吸烟怎样处罚？", "名城保护的对象有哪些？"]
# Colours from the theme's variables, so light and dark themes both keep text readable on its background;
# the highlight keeps its own dark text on yellow in either.
CSS = """
.refused {color:var(--body-text-color-subdued);font-style:italic;border-left:4px solid var(--border-color-primary);padding-left:8px}
.cite {border-left:4px solid #c62828;padding:6px 10px;margin:8px 0;background:var(--background-fill-secondary);color:var(--body-text-color)}
.cite mark {background:#ffe082;color:#1a1a1a}
.unverified {color:#c62828}
.dark .unverified {color:#ef9a9a}
.cite.active {outline:2px solid #c62828}
.answer-sources {margin-top:6px;font-size:0.92em}
.answer-sources summary {cursor:pointer;color:var(--body-text-color-subdued)}
.answer-tools {margin-top:4px;font-size:0.85em}
.answer-tools a {color:var(--body-text-color-subdued)}
.copy-text {display:none}
"""
# [n] in an answer shows that answer's own passage: its card in the sources panel when that answer is the latest
# and the screen is wide, else its card under the answer (the collapsed 来源 block opens). Keys are "turn-n", so
# an earlier answer's [1] never points at a later answer's first source. 复制 copies the answer as plain text.
HEAD_JS = """<script>
function __copyText(text, el) {
  function done() { el.textContent = '已复制'; setTimeout(function () { el.textContent = '复制'; }, 1500); }
  function fallback() {
    var t = document.createElement('textarea'); t.value = text; document.body.appendChild(t); t.select();
    try { if (document.execCommand('copy')) done(); else el.textContent = '复制失败'; } finally { t.remove(); }
  }
  if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(text).then(done, fallback); return; }
  fallback();
}
document.addEventListener('click', function (e) {
  var c = e.target.closest && e.target.closest('.copy-answer');
  if (c) {
    e.preventDefault(); e.stopPropagation();
    var src = c.parentNode.querySelector('.copy-text');
    __copyText(src ? src.textContent : '', c); return;
  }
  var a = e.target.closest && e.target.closest('a[href^="#cite-"]');
  if (!a) return;
  e.preventDefault(); e.stopPropagation();
  var key = a.getAttribute('href').slice(6);
  document.querySelectorAll('.cite.active').forEach(function (x) { x.classList.remove('active'); });
  var panel = document.getElementById('cite-' + key);
  var inline = document.querySelector('.cite.cite-' + key);
  var narrow = window.matchMedia('(max-width: 768px)').matches;
  var target = (panel && !narrow) ? panel : (inline || panel);
  if (!target) return;
  if (panel) panel.classList.add('active');
  if (inline) inline.classList.add('active');
  var d = target.closest('details'); if (d) d.open = true;
  target.scrollIntoView({behavior: 'smooth', block: 'center'});
}, true);
</script>"""


def render_answer(a: Answer, turn: int = 1) -> str:
    """Answer text with each [n] as a link to this turn's source card ("#cite-{turn}-{n}"); document text is
    escaped, never interpreted."""
    text = html.escape(a.answer)
    if a.refused:
        return f'<div class="refused">{text}</div>{_replaced_note(a, "已不予显示")}'
    text = re.sub(r"\[(\d{1,2})\]", rf'<a href="#cite-{turn}-\1" class="cite-link">[\1]</a>', text)
    text = text.replace("\n", "<br>")  # a list's items, one per line
    if a.replaced:
        text += _replaced_note(a, "上面显示的是原文摘录")
    if a.unverified:
        text += '<div class="unverified">⚠ 以下内容未能在引用段落中核实：' + "；".join(html.escape(u) for u in a.unverified) + "</div>"
    return text


def _cards(a: Answer, docs: dict, root: str, token: Callable[[str], str], turn: int, inline: bool) -> list[str]:
    """One card per citation: title, section or article, and the quote highlighted inside its passage. A panel
    card is found by its id, a card inside the chat by its class (the chat's sanitiser keeps only classes)."""
    cards = []
    for c in a.citations:
        doc = docs.get(c.doc_id)
        p = next((p for p in a.passages if p.n == c.n), None)
        start, end = (p.char_start, p.char_end) if p else (c.char_start, c.char_end)
        start, end = min(start, c.char_start), max(end, c.char_end)
        if doc is not None and doc.text[c.char_start:c.char_end] == c.quote:
            before, quoted, after = doc.text[start:c.char_start], c.quote, doc.text[c.char_end:end]
        else:  # a kept answer whose document was since replaced or removed: its own quote, nothing around it
            before, quoted, after = "", c.quote, "（原文已更新或删除，此为回答时的引文）" if c.quote else ""
        cards.append(
            (f'<div class="cite cite-{turn}-{c.n}">' if inline else f'<div class="cite" id="cite-{turn}-{c.n}">') +
            f'<b>[{c.n}] {html.escape(c.label())}</b>'
            f'<div>{html.escape(before)}<mark>{html.escape(quoted)}</mark>{html.escape(after)}</div>'
            f'<small>字符 {c.char_start}–{c.char_end} · <a href="{root}/doc/{html.escape(url_quote(c.doc_id))}?s={c.char_start}&e={c.char_end}&t={token(c.doc_id)}#hl" '
            f'target="_blank" rel="noopener">查看全文</a></small></div>')
    return cards


def _replaced_note(a: Answer, then: str) -> str:
    """Why the LLM's answer is not what is shown: it failed the check, or there was none (down, timed out)."""
    if not a.replaced:
        return ""
    if not a.replaced.get("answer"):
        return f'<div class="unverified">⚠ 大模型暂不可用或超时，{then.replace("已不予显示", "未能给出回答")}。</div>'
    reason = html.escape(a.replaced["reason"].split(" / ")[0])
    draft = html.escape(a.replaced["answer"])
    return (f'<div class="unverified">⚠ 大模型的回答未通过核实（{reason}），{then}。'
            f'<details class="draft"><summary>查看未通过核实的草稿</summary><div>{draft}</div></details></div>')


def render_sources(a: Answer, docs: dict, root: str = "", token: Callable[[str], str] = lambda d: "",
                   turn: int = 1) -> str:
    """The sources panel for one answer. `token(doc_id)` signs the reader link, so it opens for this UI's users
    when the API needs a key."""
    if a.refused and NOT_STATED in a.answer and a.passages:
        items = "".join(f"<li><b>《{html.escape(p.title)}》{html.escape(p.article or p.section_path)}</b>"
                        f"<div>{html.escape(p.text)}</div></li>" for p in a.passages[:3])
        return f"<p>最接近的段落（仅供参考，不是回答）：</p><ul>{items}</ul>"
    if a.refused or not a.citations:
        return "<p>（本次回答没有引用）</p>"
    cards = _cards(a, docs, root, token, turn, inline=False)
    cited = {c.n for c in a.citations}
    others = [p for p in a.passages if p.n not in cited]
    if others:
        items = "".join(f"<li><b>[{p.n}] 《{html.escape(p.title)}》{html.escape(p.article or p.section_path)}</b>"
                        f"<div>{html.escape(p.text)}</div></li>" for p in others)
        cards.append(f"<details><summary>其他检索到但未引用的段落（{len(others)}）</summary><ul>{items}</ul></details>")
    return "".join(cards)


def render_turn(a: Answer, docs: dict, root: str = "", token: Callable[[str], str] = lambda d: "",
                turn: int = 1) -> str:
    """An answer as the chat shows it: its text, then its own sources in a collapsed block (so an earlier
    answer's [n] still opens that answer's passage, and on a phone the passage opens beside the answer), and a
    copy control that copies plain text with the 来源 list, never HTML."""
    body = render_answer(a, turn)
    # (newlines as &#10;: the chat renders messages as Markdown, where a raw newline would end the tag)
    plain = html.escape(a.with_sources(), quote=True).replace("\n", "&#10;")
    # (the text rides in a hidden element: the chat's sanitiser drops data- attributes)
    copy = f'<span class="copy-text">{plain}</span><a href="#" class="copy-answer">复制</a>'
    if a.refused or not a.citations:
        return f'{body}<div class="answer-tools">{copy}</div>'
    cards = "".join(_cards(a, docs, root, token, turn, inline=True))
    return (f'{body}<details class="answer-sources"><summary>来源（{len(a.citations)}）</summary>{cards}</details>'
            f'<div class="answer-tools">{copy}</div>')


def _plain_turns(turns) -> list[dict]:
    """Only {'role', 'content': str} turns survive: state is server-side, but never trust a shape."""
    out = []
    for t in turns if isinstance(turns, list) else ():
        if isinstance(t, dict) and t.get("role") in ("user", "assistant") and isinstance(t.get("content"), str):
            out.append({"role": t["role"], "content": t["content"]})
    return out


def build_ui(get_assistant: Callable[[], Assistant], settings: Settings, uploads: UploadService,
             doc_token: Callable[[str], str] = lambda d: "", conversations: ConversationStore | None = None) -> gr.Blocks:
    """The chat (with the user's conversations when there is a store), the documents, the upload (with an admin
    key) and the evaluation tabs."""
    # delete_cache: files clients upload (question files, documents) leave Gradio's cache within two hours.
    with gr.Blocks(title="政策文件问答", analytics_enabled=False, delete_cache=(600, 3600)) as ui:
        gr.Markdown("## 政策文件问答\n回答只来自已收录的文件，每句话后标注来源 [n]，点击可查看原文。")
        sessions = Sessions(conversations, settings) if conversations is not None else None
        _chat_tab(ui, _Chat(get_assistant, settings, doc_token, sessions))
        refresh_docs, doc_outputs = documents_tab(ui, get_assistant)
        if settings.server.admin_key:  # both need the admin key; without one there is no way in
            upload_tab(ui, settings, uploads, refresh_docs, doc_outputs)
            evaluation_tab(get_assistant, settings, conversations)
    return ui


class _Chat:
    """One chat turn: the question streamed through the assistant, the turn rendered with its own sources, and
    (with a conversation store) kept in the user's conversation."""

    def __init__(self, get_assistant: Callable[[], Assistant], settings: Settings,
                 doc_token: Callable[[str], str], sessions: Sessions | None = None) -> None:
        self.get_assistant, self.settings, self.doc_token = get_assistant, settings, doc_token
        self.sessions = sessions

    def render(self, answers: list[Answer]) -> list[dict]:
        """Stored answers as the chat shows them (each turn with its own sources)."""
        docs, root = self.get_assistant().documents(), self.settings.server.root_path
        out = []
        for turn, a in enumerate(answers, 1):
            out += [{"role": "user", "content": html.escape(a.question)},
                    {"role": "assistant", "content": render_turn(a, docs, root, self.doc_token, turn)}]
        return out

    def respond(self, question, hist, shown, conv, turn_ids, doc_ids, browser_id, request: gr.Request = None):
        """Outputs: chat, history, display, sources, copy box, question box, conversation, turn ids, session list."""
        question = (question if isinstance(question, str) else "").strip()
        hist, shown, turn_ids = _plain_turns(hist), _plain_turns(shown), list(turn_ids or [])
        same = (gr.update(),) * 3
        if not question:
            yield (shown, hist, shown, gr.update(), gr.update(), "") + same
            return
        limit = self.settings.server.max_question_chars
        if len(question) > limit:
            note = f"问题过长（{len(question)} 字），请控制在 {limit} 字以内。"
            shown = shown + [{"role": "user", "content": html.escape(question[:200]) + "…"},
                             {"role": "assistant", "content": f'<div class="refused">{note}</div>'}]
            hist = hist + [{"role": "user", "content": question[:limit + 1]}, {"role": "assistant", "content": note}]
            yield (shown, hist, shown, gr.update(), gr.update(), "", conv, turn_ids + [None], gr.update())
            return  # both states keep one entry per turn
        pending = shown + [{"role": "user", "content": html.escape(question)}, {"role": "assistant", "content": ""}]
        try:
            a = self.get_assistant()
            partial, ans = "", None
            for ev in a.stream(question, hist, doc_ids=list(doc_ids or []) or None):
                if ev.kind == "token":
                    partial += ev.text
                    pending[-1] = {"role": "assistant", "content": html.escape(partial)}
                    yield (pending, hist, shown, gr.update(), gr.update(), "") + same
                else:
                    ans = ev.answer
            turn = len(pending) // 2
            docs = a.documents()
            pending[-1] = {"role": "assistant",
                           "content": render_turn(ans, docs, self.settings.server.root_path, self.doc_token, turn)}
            hist = hist + [{"role": "user", "content": question}, {"role": "assistant", "content": ans.answer}]
            sources_html = render_sources(ans, docs, self.settings.server.root_path, self.doc_token, turn)
            listed = gr.update()
            if self.sessions is not None:
                try:
                    conv, turn_id = self.sessions.keep(request, browser_id, conv, question, ans)
                    turn_ids, listed = turn_ids + [turn_id], self.sessions.choices(request, browser_id, conv)
                except Exception:  # the database is down: the answer is still shown, only not kept
                    log.exception("keeping the conversation failed")
                    turn_ids = turn_ids + [None]
            yield pending, hist, pending, sources_html, ans.with_sources(), "", conv, turn_ids, listed
        except IndexEmpty:
            note = "索引为空：请管理员先运行 `python app.py ingest docs/`。"
            pending[-1] = {"role": "assistant", "content": note}
            hist = hist + [{"role": "user", "content": question}, {"role": "assistant", "content": note}]
            yield pending, hist, pending, gr.update(), gr.update(), "", conv, turn_ids + [None], gr.update()

    def retry(self, hist, shown, conv, turn_ids, doc_ids, browser_id, request: gr.Request = None):
        hist, shown = _plain_turns(hist), _plain_turns(shown)
        last = next((m["content"] for m in reversed(hist) if m["role"] == "user"), "")
        yield from self.respond(last, hist[:-2], shown[:-2], conv, list(turn_ids or [])[:-1], doc_ids, browser_id,
                                request)

    def load(self, bid, request: gr.Request = None):
        """A page load: example questions the index answers, this browser's id, its conversations, the documents."""
        bid = new_browser_id(bid)
        try:
            a = self.get_assistant()
            samples = [[e] for e in a.example_questions(EXAMPLES)]
            docs = sorted(a.documents().values(), key=lambda d: d.doc_id)
        except IndexEmpty:
            samples, docs = [], []
        panel = self.sessions.choices(request, bid) if self.sessions else gr.update()
        return gr.update(samples=samples), bid, panel, gr.update(choices=[(d.title, d.doc_id) for d in docs])

    def open(self, conv, browser_id, request: gr.Request = None):
        """A conversation picked in the side panel: its turns, rendered, and the states that continue it."""
        hist, answers, ids = self.sessions.opened(request, browser_id, conv)
        shown = self.render(answers)
        return shown, hist, shown, _NO_SOURCES, "", "", conv, ids


_NO_SOURCES = "<p>来源会显示在这里。</p>"


def _chat_tab(ui: gr.Blocks, turns: _Chat) -> None:
    settings, sessions = turns.settings, turns.sessions
    with gr.Tab("问答"):
        with gr.Row():
            with gr.Column(scale=1, min_width=200, visible=sessions is not None):
                new = gr.Button("新对话")
                listed = gr.Radio(label="历史对话", choices=[], elem_id="sessions")
                title = gr.Textbox(label="重命名为", max_length=60)
                with gr.Row():
                    rename = gr.Button("重命名", size="sm")
                    delete = gr.Button("删除", size="sm", variant="stop")
                export = gr.Button("导出 Markdown", size="sm")
                exported = gr.File(label="导出的对话", visible=False)
            with gr.Column(scale=3, min_width=340):  # on a phone the columns stack instead of squeezing the chat
                # No built-in copy buttons: they copy the message's HTML; each answer has its own 复制.
                chat = gr.Chatbot(label="对话", height=460, sanitize_html=True, buttons=[], feedback_options=("Like", "Dislike"))
                # no max_length: the browser would cut a longer question silently; respond() says it is too long
                q = gr.Textbox(label="问题", placeholder="请输入问题，按回车提问")
                with gr.Row():
                    send = gr.Button("提问", variant="primary")
                    stop = gr.Button("停止")
                    retry = gr.Button("重试")
                    clear = gr.Button("清空")
                only = gr.Dropdown(label="只在这些文档中查找（不选 = 全部）", multiselect=True, choices=[])
                comment = gr.Textbox(label="对回答的意见（可选，点赞或点踩时一并记录）", max_length=2000)
                rated = gr.Markdown()
                examples = gr.Dataset(components=[q], samples=[[e] for e in EXAMPLES[:4]], label="示例问题")
            with gr.Column(scale=2):
                sources = gr.HTML(_NO_SOURCES, label="来源")
                copy_box = gr.Textbox(label="复制答案（含来源）", lines=4, buttons=["copy"])
    # Server-side state only. The chat shown is rebuilt from it on every turn and the Chatbot is never an
    # input: a client-sent Chatbot value can carry file payloads that Gradio would copy and serve.
    history_state = gr.State([])   # [{'role','content'}] plain text, for follow-up condensing
    display_state = gr.State([])   # [{'role','content'}] rendered by the server
    conv_state, turn_state, only_state = gr.State(None), gr.State([]), gr.State([])
    # Who is asking, without a login: 128 random bits kept in this browser (Gradio encrypts them with a key that
    # outlives restarts, so the browser's id stays readable).
    browser_id = gr.BrowserState("", storage_key="policy-assistant-browser", secret=sessions.secret if sessions else None)
    examples.click(lambda sample: sample[0], examples, q)
    only.change(lambda v: list(v or []), only, only_state)

    ui.load(turns.load, browser_id, [examples, browser_id, listed, only])
    outs = [chat, history_state, display_state, sources, copy_box, q, conv_state, turn_state, listed]
    ins = [history_state, display_state, conv_state, turn_state, only_state, browser_id]
    asked = [q.submit(turns.respond, [q] + ins, outs, concurrency_limit=None),
             send.click(turns.respond, [q] + ins, outs, concurrency_limit=None),
             retry.click(turns.retry, ins, outs, concurrency_limit=None)]
    stop.click(None, None, None, cancels=asked)
    empty = lambda: ([], [], [], _NO_SOURCES, "", "", None, [])  # noqa: E731
    clear.click(empty, None, outs[:-1])
    chat.clear(empty, None, outs[:-1])
    if sessions is not None:
        sessions.wire(turns.open, empty, outs, browser_id, conv_state, turn_state, listed, new, rename, title,
                      delete, export, exported, chat, comment, rated)


def mount_ui(app, settings: Settings, get_assistant: Callable[[], Assistant], uploads: UploadService,
             doc_token: Callable[[str], str] = lambda d: "", conversations: ConversationStore | None = None) -> None:
    """Mount the chat at '/' (after the API routes, or they would 404), with Gradio's file checks in force."""
    import atexit
    import os
    import shutil
    import tempfile

    # Gradio copies files it is given into its cache and serves them; a cache of our own (not the shared
    # /tmp/gradio), removed at exit. GRADIO_TEMP_DIR is read by gradio when Blocks are built and checked.
    cache = tempfile.mkdtemp(prefix="assistant-gradio-")
    os.environ["GRADIO_TEMP_DIR"] = cache
    atexit.register(shutil.rmtree, cache, True)
    ui = build_ui(get_assistant, settings, uploads, doc_token, conversations)
    srv = settings.server
    auth = (srv.ui_user, srv.ui_password) if srv.ui_user and srv.ui_password else None
    dependency = _trusted_user(srv.trusted_user_header, srv.trusted_proxies) if srv.trusted_user_header else None

    index_dir = str(Path(settings.store.index_dir).resolve())
    blocked = [index_dir, str(Path.cwd().resolve()), "/proc", "/etc", "/root", "/home", "/var", "/sys", "/dev"]
    gr.mount_gradio_app(app, ui, path="/", ssr_mode=False, css=CSS, head=HEAD_JS, auth=auth,
                        auth_dependency=dependency, blocked_paths=blocked,
                        max_file_size=int(settings.ingest.max_file_mb * 1024 * 1024))
    # mount_gradio_app leaves has_launched False, and gradio's allowed-path check (processing_utils.
    # _check_allowed) returns early for Blocks that have not launched: so a mounted app must set it.
    ui.has_launched = True


def _trusted_user(header: str, proxies: list[str]):
    """Gradio's auth dependency: the user the intranet's SSO proxy names in `header`; without it, no UI."""
    def dependency(request):
        client = getattr(request, "client", None)
        if not client or client.host not in proxies:
            return None  # only the SSO proxy may vouch for a user
        return request.headers.get(header)
    return dependency
