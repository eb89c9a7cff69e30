"""The ingest service behind both edges (API upload and UI upload): uploaded bytes are kept under a folder of
their own, ingested one batch at a time on a worker thread, and followed as a job."""
from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ingest.pipeline import FileResult, IngestReport, Pipeline

log = logging.getLogger(__name__)
_BAD_NAME = re.compile(r"[\x00-\x1f/\\\\]")


def safe_name(name: str | None) -> str | None:
    """The file name an upload is stored under, or None when it cannot be one (empty, '.', '..', control
    characters, over 255 bytes). Only the last path component of what the client sent is kept."""
    base = re.split(r"[/\\]", name or "")[-1].strip()
    if base in ("", ".", "..") or _BAD_NAME.search(base) or len(base.encode("utf-8")) > 255:
        return None
    return base


# Per-file statuses and the ingest's reasons, in Chinese with the English after (as the API's messages): what an
# admin reads in the upload tab. The ingest layer states its reasons in English, one place for each.
STATUS_ZH = {"added": "已添加", "updated": "已更新", "unchanged": "未变化", "failed": "失败", "removed": "已删除"}
_REASONS_ZH = [
    (r"^empty file", "空文件"), (r"^no such file", "文件不存在"), (r"^not a regular file", "不是普通文件"),
    (r"^binary content", "二进制内容，不是文本文件"), (r"^unsupported file type", "不支持的文件类型"),
    (r"MB, over the .* limit", "文件过大"), (r"UTF-16|GB18030", "无法识别的文字编码"),
    (r"expands to|unpacks to|holds over|chunks, over the|pages, over the", "内容过多，请拆分后上传"),
    (r"no text layer", "PDF 没有文字层（扫描件？），请先做文字识别"), (r"^unreadable PDF", "PDF 无法读取（损坏或不完整）"),
    (r"^unreadable DOCX", "Word 文件无法读取（损坏或不是 Word 文件）"), (r"^DOCX contains no text", "Word 文件没有文字"),
    (r"^no text left after cleaning", "清洗后没有正文"), (r"^same (content|text) as", "与已收录的文档内容相同，只索引一次"),
    (r"^replacing .* exactly one file", "替换只能上传一个文件"), (r"^no document .* to replace", "要替换的文档不存在"),
]


def explain(error: str) -> str:
    """An ingest reason as an admin reads it: '中文 / English'; already-Chinese reasons stay as they are."""
    if not error or re.match(r"[\u4e00-\u9fff]", error):
        return error
    zh = next((zh for pattern, zh in _REASONS_ZH if re.search(pattern, error)), "索引失败")
    return f"{zh} / {error}"


@dataclass
class Job:
    """One upload batch: its progress and, when done, its ingest report."""

    id: str
    total: int
    done: int = 0
    chunks: int = 0  # chunks indexed so far, over the files done
    status: str = "queued"  # queued | running | done | failed
    report: IngestReport | None = None
    error: str = ""
    created: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        return {"id": self.id, "status": self.status, "done": self.done, "total": self.total, "chunks": self.chunks,
                "error": self.error,
                "report": self.report.to_dict() if self.report else None}


class UploadService:
    """Stores uploads and ingests them off the caller's thread, one batch at a time (a single writer)."""

    def __init__(self, upload_root: str | Path, pipeline: Callable[[], Pipeline], keep_jobs: int = 200) -> None:
        self.root = Path(upload_root)
        self.pipeline = pipeline
        self.jobs: dict[str, Job] = {}
        self.keep_jobs = keep_jobs
        self.lock = threading.Lock()
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest")

    def submit(self, files: list[tuple[str | None, bytes]], replace: str | None = None) -> tuple[Job, Future]:
        """Store the files (each batch in its own folder, so equal names never overwrite each other) and queue
        their ingest. A file whose name cannot be stored is reported as failed; the rest go on."""
        job = Job(uuid.uuid4().hex[:12], len(files))
        folder = self.root / job.id
        folder.mkdir(parents=True, exist_ok=True)
        paths, rejected, seen = [], [], set()
        for name, data in files:
            base = safe_name(name)
            if base is None:
                rejected.append(FileResult(str(name)[:80], status="failed",
                                           error="文件名无效 / invalid file name (empty, '.', '..', control characters or over 255 bytes)"))
                continue
            stem, dot, ext = base.rpartition(".")
            unique, n = base, 1
            while unique in seen:  # the same name twice in one upload: both are kept
                n += 1
                unique = f"{stem}-{n}{dot}{ext}" if dot else f"{base}-{n}"
            seen.add(unique)
            (folder / unique).write_bytes(data)
            paths.append(folder / unique)
        if not paths:
            folder.rmdir()
        with self.lock:
            self.jobs[job.id] = job
            finished = sorted((j for j in self.jobs.values() if j.status in ("done", "failed")), key=lambda j: j.created)
            for old in finished[: max(0, len(self.jobs) - self.keep_jobs)]:  # never a queued or running job
                self.jobs.pop(old.id, None)
        return job, self.worker.submit(self._run, job, paths, rejected, replace)

    def _run(self, job: Job, paths: list[Path], rejected: list[FileResult], replace: str | None = None) -> Job:
        job.status = "running"
        try:
            def progress(i: int, n: int, r: FileResult) -> None:
                job.done = i + len(rejected)
                job.chunks += r.chunks if r.status in ("added", "updated") else 0
            pipeline = self.pipeline()
            old = pipeline.index.document(replace) if replace else None
            report = pipeline.run(paths, on_progress=progress, replace=replace) if paths else IngestReport()
            if old is not None and any(d.status == "updated" for d in report.documents):
                self._forget(Path(old.path))  # the replaced upload's file goes with it
            for d in report.documents:  # a file that did not become a document is not kept on the server
                if d.status not in ("added", "updated"):
                    self._forget(Path(d.path))
            report.documents = rejected + report.documents
            for d in report.documents:  # clients see the name they sent, not where the server keeps it
                d.path = Path(d.path).name
            job.report, job.status, job.done = report, "done", job.total
        except Exception as e:  # the job reports it; the worker and the server go on
            log.exception("ingest job %s failed", job.id)
            job.status, job.error = "failed", f"{type(e).__name__}: {e}"
            for path in paths:  # nothing of a failed batch became a document: keep none of its files
                self._forget(path)
        return job

    def _forget(self, path: Path) -> None:
        """Delete a stored upload (never a file outside the upload folder) and its folder once empty."""
        try:
            path.resolve().relative_to(self.root.resolve())
        except ValueError:
            return
        path.unlink(missing_ok=True)
        if path.parent != self.root and path.parent.exists() and not any(path.parent.iterdir()):
            path.parent.rmdir()

    def remove(self, doc_id: str) -> bool:
        """Remove a document (an explicit action), and its stored upload if it was one; False if unknown."""
        index = self.pipeline().index
        with index.writer():
            doc = index.document(doc_id)
            if doc is None:
                return False
            index.remove_document(doc_id)
        self._forget(Path(doc.path))
        return True

    def job(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)
