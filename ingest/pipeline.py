"""load -> clean -> chunk -> embed -> store, one committed document at a time, incremental."""
from __future__ import annotations

import hashlib
import logging
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .chunk import sentence_units, split
from .clean import clean
from .embed import Embedder
from .loaders import parse, read
from .schema import Document, IngestError
from .store import Prepared, Store, index_text

log = logging.getLogger(__name__)
# Chunks one document may make (each is embedded, with its sentences): bounds one file's ingest time.
MAX_CHUNKS = 20_000
# Files committed together (one write per collection instead of one per file): at most this many, and no more
# once this many seconds have gone into the batch, so a batch of large files never holds the writer lock long.
BATCH_DOCUMENTS = 64
BATCH_SECONDS = 1.0
PIPELINE_VERSION = "4"  # 4: tables and copyright articles kept; 3: sentences embedded  # bump when cleaning or chunking rules change, so every document is redone


@dataclass
class FileResult:
    """One line of the ingest report."""

    path: str
    doc_id: str = ""
    title: str = ""
    status: str = "failed"  # added | updated | unchanged | removed | failed
    chunks: int = 0
    error: str = ""


@dataclass
class IngestReport:
    documents: list[FileResult] = field(default_factory=list)
    chunks_total: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.documents:
            out[d.status] = out.get(d.status, 0) + 1
        return out


def discover(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly, plus every non-hidden file under named directories, in a stable order."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file()
                              and not any(part.startswith(".") for part in f.relative_to(p).parts)))
        else:
            out.append(p)
    return out


def _slug(stem: str) -> str:
    s = re.sub(r"[^\w.-]+", "-", stem, flags=re.UNICODE).strip("-._")
    return s[:80] or "doc"


class Pipeline:
    """Ingests files into a Store (ChromaIndex) with one embedder and one set of chunking settings."""

    def __init__(self, index: Store, embedder: Embedder, chunk_size: int = 300, chunk_overlap: int = 60,
                 max_file_mb: float = 20.0) -> None:
        self.index, self.embedder = index, embedder
        self.chunk_size, self.chunk_overlap = chunk_size, chunk_overlap
        self.max_bytes = int(max_file_mb * 1024 * 1024)
        self._lookup: _Lookup | None = None
        self.tag = f"p{PIPELINE_VERSION}|{chunk_size}|{chunk_overlap}|{getattr(embedder, 'config', embedder.name)}"

    def run(self, paths: Sequence[str | Path], prune: bool = False,
            on_progress: Callable[[int, int, FileResult], None] | None = None,
            replace: str | None = None) -> IngestReport:
        """Ingest every file; a failure is reported for that file and the batch goes on. `replace` names the
        document one file replaces (an explicit action: otherwise a file never takes over another's id)."""
        t0 = time.perf_counter()
        report = IngestReport()
        with self.index.writer():  # another writer's uncommitted chunks are not leftovers
            removed = self.index.reconcile()
        if removed:
            log.warning("removed %d chunks left by an interrupted ingest", removed)
        files = discover(paths)
        if replace is not None and len(files) != 1:
            raise IngestError(f"replacing {replace} takes exactly one file, not {len(files)}")
        todo = iter(files)
        done = 0
        while done < len(files):
            batch = _Batch()
            with self.index.writer():  # one batch at a time across processes: ids and versions never race
                if replace is not None and self.index.document(replace) is None:
                    raise IngestError(f"no document {replace} to replace")
                for path in todo:
                    batch.results.append(self.ingest_file(path, replace, batch))
                    if batch.full():
                        break
                self._commit(batch)
            for result in batch.results:
                done += 1
                report.documents.append(result)
                log.info("%s %s (%d chunks)%s", result.status, result.path, result.chunks,
                         f": {result.error}" if result.error else "")
                if on_progress:
                    on_progress(done, len(files), result)
        if prune:
            # Only documents from the paths given: another node's files (a shared Chroma server) and uploads
            # are not this run's to remove.
            roots = [Path(p).resolve() for p in paths]
            with self.index.writer():
                for doc in list(self.index.documents().values()):
                    where = Path(doc.path)
                    in_scope = any(where == r or r in where.parents for r in roots)
                    if in_scope and not where.exists():
                        self.index.remove_document(doc.doc_id)
                        report.documents.append(FileResult(doc.path, doc.doc_id, doc.title, "removed", 0))
        self.index.lexical()  # an index from an earlier version is built now, not at the first question
        report.chunks_total = self.index.count()
        report.seconds = round(time.perf_counter() - t0, 3)
        return report

    def _commit(self, batch: "_Batch") -> None:
        """Commit a batch's documents in one write; if that fails, each on its own, so one document the store
        refuses fails alone."""
        try:
            self.index.add_documents(batch.prepared)
            return
        except Exception:
            if len(batch.prepared) == 1:
                log.exception("ingest of %s failed", batch.prepared[0].doc.path)
                batch.fail(batch.prepared[0], sys.exc_info()[1])
                return
        for p in batch.prepared:
            try:
                self.index.add_documents([p])
            except Exception as e:
                log.exception("ingest of %s failed", p.doc.path)
                batch.fail(p, e)

    def _known(self, batch: "_Batch") -> tuple["_Lookup", "_Lookup"]:
        """The indexed documents' lookup (built again only when the store's documents change) and the batch's."""
        docs = self.index.documents()
        if self._lookup is None or self._lookup.docs is not docs:
            self._lookup = _Lookup(docs)
        return self._lookup, batch.lookup

    def _doc_id(self, path: Path, batch: "_Batch") -> str:
        known = self._known(batch)
        for k in known:
            if (d := k.by_path.get(str(path))) is not None:
                return d.doc_id
        cand = _slug(path.stem)
        for k in known:
            if (d := k.docs.get(cand)) is not None and d.path != str(path) and Path(d.path).exists():
                return f"{cand}-{hashlib.sha1(str(path).encode()).hexdigest()[:6]}"
        return cand

    def _copy(self, batch: "_Batch", version: str = "", text: str = "") -> Document | None:
        """An indexed (or batched) document of this version, or this text, whose file is still there."""
        for k in self._known(batch):
            same = k.by_version.get(version, []) if version else [d for d in k.by_length.get(len(text), ())
                                                                    if d.text == text]
            for d in same:
                if Path(d.path).exists():
                    return d
        return None

    def ingest_file(self, path: Path, doc_id: str | None = None, batch: "_Batch | None" = None) -> FileResult:
        """One file -> one document in the batch, committed with it (or a failed line saying why); without a
        batch, committed at once. `doc_id` replaces that document. Inside the writer lock."""
        if batch is None:
            batch = _Batch()
            batch.results.append(self.ingest_file(path, doc_id, batch))
            self._commit(batch)
            return batch.results[0]
        res = FileResult(str(path))
        try:
            path = path.resolve() if path.exists() else path
            res.path = str(path)
            data = read(path, self.max_bytes)
            sha = hashlib.sha256(data).hexdigest()
            version = hashlib.sha256(f"{sha}|{self.tag}".encode()).hexdigest()
            replacing = doc_id is not None
            doc_id = doc_id or self._doc_id(path, batch)
            res.doc_id = doc_id
            old = self.index.document(doc_id)  # (a batched file never has the id of another: see _doc_id)
            if old and old.version == version:
                res.title, res.status, res.chunks = old.title, "unchanged", old.chunks
                return res
            new_file = not (old or replacing)  # only a new file can be a copy: an edit or a replace is never skipped
            if new_file and (twin := self._copy(batch, version=version)):
                return _indexed_as(res, twin, "same content")
            raw = parse(path, data)
            text = clean(raw.text)
            if not text:
                raise IngestError("no text left after cleaning")
            # the same text in another encoding, format or file name: one document, not two
            if new_file and (same := self._copy(batch, text=text)):
                return _indexed_as(res, same, "same text")
            title = raw.meta.get("title") or raw.meta.get("page_title") or text.split("\n", 1)[0][:80]
            doc = Document(doc_id=doc_id, path=str(path), title=title, text=text, sha256=sha, version=version,
                           issuer=raw.meta.get("issuer", ""), doc_number=raw.meta.get("doc_number", ""),
                           date=raw.meta.get("date", ""), source=raw.meta.get("source", ""),
                           ingested_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
            chunks = split(text, doc_id, title, self.chunk_size, self.chunk_overlap)
            if len(chunks) > MAX_CHUNKS:
                raise IngestError(f"the document makes {len(chunks):,} chunks, over the {MAX_CHUNKS:,} limit: split it")
            sents = sentence_units(text, chunks)
            vectors = self.embedder.embed_passages([index_text(c) for c in chunks])
            sentence_vectors = self.embedder.embed_passages([x.index_text() for x in sents])
            doc.chunks = len(chunks)
            res.title, res.chunks = title, len(chunks)
            res.status = "updated" if old else "added"
            batch.add(res, Prepared(doc, chunks, vectors, sents, sentence_vectors))
        except IngestError as e:
            res.status, res.error = "failed", str(e)
        except Exception as e:  # a surprise in one file (a parser, the store) must not sink the batch
            log.exception("ingest of %s failed", path)
            res.status, res.error = "failed", f"{type(e).__name__}: {e}"
        return res


class _Lookup:
    """Documents by id, path, version and text length: a file's id and whether it is a copy, found without a
    pass over every document."""

    def __init__(self, docs: dict[str, Document] | None = None) -> None:
        self.docs: dict[str, Document] = docs if docs is not None else {}
        self.by_path: dict[str, Document] = {}
        self.by_version: dict[str, list[Document]] = {}
        self.by_length: dict[int, list[Document]] = {}
        for d in self.docs.values():
            self._index(d)

    def add(self, doc: Document) -> None:
        self.docs[doc.doc_id] = doc
        self._index(doc)

    def _index(self, d: Document) -> None:
        self.by_path[d.path] = d
        self.by_version.setdefault(d.version, []).append(d)
        self.by_length.setdefault(d.length, []).append(d)


class _Batch:
    """Files read, chunked and embedded, waiting to be committed together, with every file's report line."""

    def __init__(self) -> None:
        self.results: list[FileResult] = []
        self.prepared: list[Prepared] = []
        self._lines: dict[str, FileResult] = {}  # document id -> its report line
        self.lookup = _Lookup()
        self.started = time.perf_counter()

    def add(self, result: FileResult, prepared: Prepared) -> None:
        self.prepared.append(prepared)
        self._lines[prepared.doc.doc_id] = result
        self.lookup.add(prepared.doc)

    def full(self) -> bool:
        return len(self.prepared) >= BATCH_DOCUMENTS or time.perf_counter() - self.started >= BATCH_SECONDS

    def fail(self, prepared: Prepared, error: BaseException) -> None:
        line = self._lines[prepared.doc.doc_id]
        line.status, line.chunks, line.error = "failed", 0, f"{type(error).__name__}: {error}"


def _indexed_as(res: FileResult, doc: Document, what: str) -> FileResult:
    """A file left out as a copy of an indexed document: reported unchanged, under that document."""
    res.doc_id, res.title, res.status, res.chunks = doc.doc_id, doc.title, "unchanged", doc.chunks
    res.error = f"{what} as {Path(doc.path).name}; indexed once as {doc.doc_id}"
    return res
