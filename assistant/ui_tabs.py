"""The chat's other tabs (Gradio, thin): the documents and their reader, and for admins upload, replace, delete
and evaluation - each a call to a service (UploadService, evaluations.run) and its result rendered."""
from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Callable

import gradio as gr

from .service import Assistant
from .settings import Settings, same_secret
from .uploads import STATUS_ZH, UploadService, explain


def documents_tab(ui: gr.Blocks, get_assistant: Callable[[], Assistant]):
    """The indexed documents and a reader; returns (refresh function, its outputs) for tabs that change them."""
    with gr.Tab("文档"):
        table = gr.Dataframe(headers=["doc_id", "标题", "发布机关", "日期", "片段数"], interactive=False)
        with gr.Row():
            doc_id = gr.Dropdown(label="阅读文档", choices=[], allow_custom_value=False)
            refresh = gr.Button("刷新")
        reader = gr.HTML()

        def refresh_docs():
            docs = sorted(get_assistant().documents().values(), key=lambda d: d.doc_id)
            rows = [[d.doc_id, d.title, d.issuer, d.date, d.chunks] for d in docs]
            return rows, gr.update(choices=[(f"{r[1]} ({r[0]})", r[0]) for r in rows])

        refresh.click(refresh_docs, None, [table, doc_id])
        ui.load(refresh_docs, None, [table, doc_id])

        def read(doc):
            d = get_assistant().document(doc or "")
            if d is None:
                return "<p>请选择文档。</p>"
            meta = " · ".join(html.escape(x) for x in (d.issuer, d.doc_number, d.date) if x)
            return (f"<h3>{html.escape(d.title)}</h3><p><small>{meta}</small></p>"
                    f'<div style="white-space:pre-wrap">{html.escape(d.text)}</div>')

        doc_id.change(read, doc_id, reader)
    return refresh_docs, [table, doc_id]


def upload_tab(ui: gr.Blocks, settings: Settings, uploads: UploadService, refresh_docs, doc_outputs) -> None:
    """Admins add files, or replace or delete a document; the 文档 tab follows every change."""
    with gr.Tab("上传"):
        gr.Markdown("管理员上传文档并建立索引（txt、md、html、pdf、docx）；同一文本换了编码或文件名也只索引一次。")
        key = gr.Textbox(label="管理员密钥", type="password")
        files = gr.File(label="文档", file_count="multiple")
        with gr.Row():
            go = gr.Button("上传并索引", variant="primary")
            target = gr.Dropdown(label="已收录的文档（替换或删除）", choices=[], allow_custom_value=False)
            replace = gr.Button("用所选文件替换该文档")
            delete = gr.Button("删除该文档", variant="stop")
        result = gr.Dataframe(headers=["文件", "doc_id", "状态", "片段数", "说明"], interactive=False, wrap=True)
        buttons = [go, replace, delete]

        def docs_and_targets():
            rows, choices = refresh_docs()
            return rows, choices, choices

        def add(k, fs, progress=gr.Progress()):  # done: the files leave the list (a failure keeps them)
            return _ingest_upload(settings, uploads, k, fs, None, progress), None

        def swap(k, fs, doc, progress=gr.Progress()):
            if not doc:
                raise gr.Error("请先选择要替换的文档。")
            return _ingest_upload(settings, uploads, k, fs, doc, progress), None

        def remove(k, doc):
            _check_admin(settings, k)
            if not doc:
                raise gr.Error("请先选择要删除的文档。")
            if not uploads.remove(doc):
                raise gr.Error(f"文档不存在：{doc}")
            return [[doc, doc, f"{STATUS_ZH['removed']} removed", 0, ""]], gr.update()

        outs = doc_outputs + [target]
        ui.load(docs_and_targets, None, outs)
        locked, unlocked = ([gr.update(interactive=v)] * len(buttons) for v in (False, True))
        for button, fn, inputs in ((go, add, [key, files]), (replace, swap, [key, files, target]),
                                   (delete, remove, [key, target])):
            # While one runs, none can be pressed again; whatever happens, they come back and the lists follow.
            ran = button.click(lambda: locked, None, buttons, queue=False).then(fn, inputs, [result, files])
            ran.then(lambda: unlocked, None, buttons, queue=False).then(docs_and_targets, None, outs)
            ran.failure(lambda: unlocked, None, buttons, queue=False)  # a refused key, no file: buttons back


def _check_admin(settings: Settings, key: str | None) -> None:
    if not same_secret(key or "", settings.server.admin_key):
        raise gr.Error("管理员密钥不正确。")


def _ingest_upload(settings: Settings, uploads: UploadService, key, fs, replace: str | None, progress) -> list:
    """The files handed to the upload service (the same one the API uses), followed file by file."""
    _check_admin(settings, key)
    if not fs:
        raise gr.Error("请先选择文件。")
    if replace is not None and len(fs) != 1:
        raise gr.Error("替换时请只选择一个文件。")
    # Only the uploaded bytes are used (Gradio's cache copies), stored under their original names by the same
    # service as the API's uploads: a later prune never sees a vanished temp path.
    files_in = []
    for f in fs:
        path = Path(f if isinstance(f, str) else f.name)
        files_in.append((getattr(f, "orig_name", None) or path.name, path.read_bytes()))
    job, done = uploads.submit(files_in, replace=replace)
    while not done.done():
        progress(job.done / max(1, job.total), desc=f"文件 {job.done}/{job.total}，已索引 {job.chunks} 个片段")
        time.sleep(0.2)
    if job.status != "done":
        raise gr.Error(f"索引失败：{explain(job.error)}")
    return [[d.path.rsplit("/", 1)[-1], d.doc_id, f"{STATUS_ZH.get(d.status, d.status)} {d.status}", d.chunks,
             explain(d.error)] for d in job.report.documents]


def evaluation_tab(get_assistant: Callable[[], Assistant], settings: Settings, conversations=None) -> None:
    """Admins run a question file against the index: metrics and per kind as text, one readable row per question,
    the whole report to download as HTML and JSON."""
    from . import evaluate as ev

    with gr.Tab("评测"):
        gr.Markdown("管理员上传测试问题文件（JSON Lines，每行 `{\"question\", \"facts\", \"evidence\"}`，UTF-8），"
                    f"生成评测报告（每次最多 {settings.server.max_eval_questions} 题）。")
        key = gr.Textbox(label="管理员密钥", type="password")
        qfile = gr.File(label="问题文件 (.jsonl)", file_types=[".jsonl", ".json", ".txt"])
        run = gr.Button("开始评测")
        report = gr.Markdown()
        rows = gr.Dataframe(headers=ev.QUESTION_COLUMNS, interactive=False, wrap=True, visible=False,
                            column_widths=["8%", "10%", "8%", "24%", "30%", "20%"], label="逐题结果（未通过在前）")
        downloads = gr.File(label="下载报告（HTML、JSON）", file_count="multiple", visible=False)
        run.click(_run_evaluation(get_assistant, settings), [key, qfile], [report, rows, downloads])
        if conversations is not None:
            drafts = gr.Button("由“踩”的反馈生成测试问题草稿")
            drafted = gr.File(label="测试问题草稿（填写 facts 后即可评测）", visible=False)

            def make_drafts(k):
                import json

                from .conversations import draft_questions

                _check_admin(settings, k)
                lines = [json.dumps(d, ensure_ascii=False) for d in draft_questions(conversations.feedback())]
                if not lines:
                    raise gr.Error("还没有“踩”的反馈。")
                out = download_dir("drafts-")
                (out / "feedback-drafts.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
                return gr.update(value=str(out / "feedback-drafts.jsonl"), visible=True)
            drafts.click(make_drafts, key, drafted)


def _run_evaluation(get_assistant: Callable[[], Assistant], settings: Settings):
    def run_eval(key, f, progress=gr.Progress()):
        import json

        from . import evaluations

        hidden = (gr.update(visible=False), gr.update(visible=False, value=None))
        if not same_secret(key or "", settings.server.admin_key):
            return ("管理员密钥不正确。",) + hidden
        if f is None:
            return ("请先上传问题文件。",) + hidden
        path = f if isinstance(f, str) else f.name
        try:
            result = evaluations.run(get_assistant(), [path], settings.retrieval.k,
                                     progress=lambda i, n, r: progress(i / max(n, 1), desc=f"{i}/{n}"),
                                     names=[getattr(f, "orig_name", None) or Path(path).name],
                                     limit=settings.server.max_eval_questions)
        except evaluations.CannotEvaluate as e:
            return (str(e),) + hidden
        out = download_dir("evaluation-")
        (out / "评测报告.html").write_text(result.html(), encoding="utf-8")
        (out / "评测报告.json").write_text(json.dumps(result.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
        return (result.summary_markdown(), gr.update(value=result.question_rows(), visible=True),
                gr.update(value=[str(out / "评测报告.html"), str(out / "评测报告.json")], visible=True))
    return run_eval


def download_dir(prefix: str, keep_seconds: float = 3600) -> Path:
    """A new folder for a file to download, in Gradio's cache of this process (which Gradio serves from and which
    goes at exit); this kind's folders older than `keep_seconds` go now, so clicks do not pile files up."""
    import os
    import shutil
    import tempfile

    base = os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()
    for old in Path(base).glob(f"{prefix}*"):
        try:
            if time.time() - old.stat().st_mtime > keep_seconds:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))
