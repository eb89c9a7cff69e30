"""The Chroma index (embedded or server) and the lexical index beside it, kept in step.

Write protocol, so that a killed ingest never leaves a document half-indexed:
  1. add the new version's chunks (their ids carry the content hash, so they never touch the old ones);
  2. upsert the document record: this is the commit, the only step that makes the new version visible;
  3. delete chunks of any other version.
Readers only see chunks whose hash matches the committed record; `reconcile` deletes leftovers of an
interrupted run. Before step 1 the writer leaves an intent (a small file naming the batch's documents) in the index
directory and removes it after step 3, so `reconcile` looks only at the documents whose write did not finish —
not at every chunk (a full pass reads every chunk's metadata: 3.3 s at 13k chunks). Indexes from before the
intents get one full pass. With a Chroma server too, a node reconciles its own interrupted writes from its own
intents: a full pass would also delete the uncommitted chunks of another node's write at work. The lexical index follows the same steps: the new version's chunks are added to it before the
commit and the other versions deleted after it, so it changes by one document's chunks per commit, never by a
full rebuild (readers keep only committed versions there too, and `reconcile` brings it in step after a crash).

Writers are serialised across processes and threads by `writer()`, an exclusive lock on a file in the index
directory: a second ingest (another CLI run, the server's upload worker) waits instead of racing for the same
document id or reconciling away chunks another writer has not committed yet. Each commit bumps a generation
file beside it, so a process learns of another's commit from one small read instead of re-reading every record.
Every commit also numbers itself: the records carry the commit's sequence number, and one version record
(VERSION_ID) holds the last number and how many removals there have been. A process that learns of a commit (from
the generation file or, with a Chroma server, every `refresh_seconds`) reads that one record (or the copy of it
the commit wrote into the generation file), then only the records committed since the number it last saw; only a
removal makes it compare every record's metadata.

A record also carries its version's layout: every chunk's and sentence's offsets into the document's text, with
their article and headings (see `layout`). Readers build chunks and sentences from the layout and the document's
text (read from its record when first used, and kept up to TEXT_CACHE characters): a question reads from Chroma its
two vector searches (distances; within a few documents, their vectors by id: see EXACT_SEARCH), the vectors it
scores and the texts not yet kept, never rows' text or metadata,
whose reads were most of a question's Chroma time. So the rows of a version
with a layout are lean: a vector and the metadata filters use (doc_id and version; a chunk's article), no text.
Chroma indexes every row's text for full-text search and every metadata value: a document's chunks and sentences
(32 rows) cost a Chroma server 103 ms of CPU with text and full metadata, 59 ms lean (`python -m bench.chroma_rows`),
and a question answered meanwhile on the same machine competes with that. Versions without a layout (indexed before layouts,
or whose chunks a layout cannot rebuild exactly) keep full rows and are read from them.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection, ContextManager, Mapping, Protocol

import numpy as np

from .lexical import LexicalIndex, number
from .schema import Chunk, Document, IndexUnavailable, Sentence, chunk_id, sentence_id

log = logging.getLogger(__name__)
_BATCH = 500  # chroma caps the batch size of one call; stay well below it
LEXICAL_ROWS = 2000  # lexical scores kept per query (every row of a corpus of this many chunks)
_PAGE = 5000  # chroma 1.5.9 fails a get() returning more than 32,766 rows: every full read is paged
VERSION_ID = "~commits"  # the records' version record (a document id never holds a '~': see pipeline._slug)
# Chroma replays a collection's unpersisted log on every write, and persists it every sync_threshold records
# (default 1,000). The records hold whole document texts: with the default a one-record write grew from 50 to
# 670 ms over 400 documents of 3,000 characters; persisting every 20 kept it at 23-28 ms (bench: scale).
RECORDS_SYNC = 20


def layout(doc: Document, chunks: list[Chunk], sentences: list[Sentence]) -> str | None:
    """A version's chunks and sentences as offsets into its text (JSON, kept in its record): a reader builds them
    from the document it holds instead of reading Chroma's rows, whose metadata is the slow part of a read (a
    90-sentence search took 8 ms with metadata, 3 ms without, embedded). None when they could not be rebuilt
    exactly (then readers read the rows, as for versions indexed before layouts)."""
    text, title = doc.text, chunks[0].title if chunks else doc.title
    cs, ss = [], []
    for o, c in enumerate(chunks):
        if (c.doc_id, c.ordinal, c.title) != (doc.doc_id, o, title) or text[c.char_start:c.char_end] != c.text:
            return None
        cs.append([c.char_start, c.char_end, c.article, c.section])
    for o, x in enumerate(sentences):
        if x.ordinal != o or not 0 <= x.chunk < len(chunks) or text[x.char_start:x.char_end] != x.text:
            return None
        c = chunks[x.chunk]
        if (x.doc_id, x.article, x.heading) != (doc.doc_id, c.article, c.section[-1] if c.section else ""):
            return None
        ss.append([x.chunk, x.char_start, x.char_end])
    return json.dumps({"title": title, "chunks": cs, "sentences": ss}, ensure_ascii=False, separators=(",", ":"))


def _layout_chunk(doc: Document, text: str, lay: dict, ordinal: int) -> Chunk | None:
    if ordinal >= len(lay["chunks"]):
        return None
    start, end, article, section = lay["chunks"][ordinal]
    return Chunk(doc.doc_id, ordinal, text[start:end], start, end, lay["title"], list(section), article)


def _layout_sentence(doc: Document, text: str, lay: dict, ordinal: int) -> Sentence | None:
    if ordinal >= len(lay["sentences"]):
        return None
    chunk, start, end = lay["sentences"][ordinal]
    _, _, article, section = lay["chunks"][chunk]
    return Sentence(doc.doc_id, chunk, ordinal, text[start:end], start, end, article, section[-1] if section else "")


class _StoredDocument(Document):
    """A committed document as the index holds it: its record's fields, and its text read from the record when first
    used (see ChromaIndex._texts_of), not when the records are read: a process that opens the index reads only the
    records' metadata, and keeps at most TEXT_CACHE characters of texts. Its text is "" once its version has been
    replaced (the record holds the new one). It pickles and copies as a plain Document. It holds its index (a weak
    reference would leave a document read from an index nobody else holds without a text); the index holds its
    documents, so a dropped index is freed by the garbage collector, not at once."""

    def __init__(self, index: "ChromaIndex", **fields) -> None:
        self._index = index
        super().__init__(text="", **fields)

    def __post_init__(self) -> None:  # (the length is the record's)
        pass

    @property
    def text(self) -> str:
        return self._index._texts_of([self]).get((self.doc_id, self.version), "")

    @text.setter
    def text(self, value: str) -> None:
        if value:  # (the dataclass's __init__ sets "")
            raise AttributeError("a stored document's text is its record's: index a new version instead")

    def __repr__(self) -> str:
        return f"StoredDocument({self.meta()!r})"

    def __reduce__(self):
        return _plain_document, (self.meta() | {"text": self.text},)


def _plain_document(fields: dict) -> Document:
    return Document(**fields)


def _nearest(vector: np.ndarray, rows: list[tuple[str, np.ndarray]], n: int) -> list[tuple[str, float]]:
    """The n rows most similar to vector by cosine (as Chroma's cosine space scores them), ties by id."""
    if not rows:
        return []
    m = np.vstack([v for _, v in rows]).astype(np.float32)
    q = np.asarray(vector, dtype=np.float32)
    sims = (m @ q) / np.maximum(np.linalg.norm(m, axis=1) * np.linalg.norm(q), 1e-12)
    if n < len(rows):  # the n best and every row tied with the n-th, then ordered
        keep = np.flatnonzero(sims >= np.partition(sims, len(rows) - n)[len(rows) - n])
    else:
        keep = range(len(rows))
    order = sorted(keep, key=lambda j: (-float(sims[j]), rows[j][0]))[:n]
    return [(rows[j][0], float(sims[j])) for j in order]


def _parse_id(row_id: str) -> tuple[str, str, int] | None:
    """(document id, version prefix, ordinal) of a chunk id or a sentence id (see schema.chunk_id)."""
    parts = row_id.rsplit(":", 2)
    if len(parts) != 3 or not parts[2].lstrip("s").isdigit():
        return None
    return parts[0], parts[1], int(parts[2].lstrip("s"))


def _upsert(collection, ids: list[str], vectors, texts: list[str] | None, metas: list[dict]) -> None:
    """Write rows in batches chroma accepts (texts None: rows without one)."""
    for i in range(0, len(ids), _BATCH):
        part = slice(i, i + _BATCH)
        collection.upsert(ids=ids[part], embeddings=vectors[part].tolist(), metadatas=metas[part],
                          documents=None if texts is None else texts[part])


def _by_ids(collection, ids: list[str], include: list[str]) -> dict:
    """collection.get(ids=...) in batches chroma accepts, merged (a get by id reads no other row)."""
    out: dict = {"ids": [], **{k: [] for k in include}}
    for i in range(0, len(ids), _BATCH):
        part = collection.get(ids=ids[i:i + _BATCH], include=include)
        out["ids"] += part["ids"]
        for k in include:
            out[k] += list(part[k])
    return out


@dataclass
class SentenceHit:
    """A sentence found by the sentence-level dense search, with its cosine similarity."""

    sentence: Sentence
    score: float

    @property
    def chunk_key(self) -> str:
        return chunk_key(self.sentence.doc_id, self.sentence.chunk)


def chunk_key(doc_id: str, ordinal: int) -> str:
    """The one key of a chunk above the store (version-free: only committed versions are ever returned)."""
    return f"{doc_id}:{ordinal}"


class LexicalScores(Mapping):
    """One query's BM25 by chunk key (its best LEXICAL_ROWS rows), kept as the lexical index gave them: a key is
    looked up and only the best few are made into keys (a dict of 2,000 keys a query took longer than the scoring).
    Iterates in document order (document id, ordinal)."""

    def __init__(self, names: dict[int, str], docs: np.ndarray, ordinals: np.ndarray, scores: np.ndarray):
        self._names, self._docs, self._ords = names, docs.tolist(), ordinals.tolist()
        self._scores = scores.tolist()
        self._at = dict(zip(zip(self._docs, self._ords), range(len(self._docs))))

    def _find(self, key: str) -> int | None:
        doc_id, _, ordinal = key.rpartition(":")
        return self._at.get((number(doc_id), int(ordinal))) if ordinal.isdigit() else None

    def __getitem__(self, key: str) -> float:
        i = self._find(key)
        if i is None:
            raise KeyError(key)
        return self._scores[i]

    def get(self, key: str, default=None):
        i = self._find(key)
        return default if i is None else self._scores[i]

    def __contains__(self, key) -> bool:
        return isinstance(key, str) and self._find(key) is not None

    def __len__(self) -> int:
        return len(self._scores)

    def __iter__(self):
        rows = sorted((self._names[d], o) for d, o in zip(self._docs, self._ords))
        return (chunk_key(doc_id, o) for doc_id, o in rows)

    def top(self, n: int) -> list[str]:
        """The n best keys, ties in document order."""
        s = self._scores
        if len(s) > n:
            cut = sorted(s, reverse=True)[n - 1]
            pick = [i for i, v in enumerate(s) if v >= cut]
        else:
            pick = range(len(s))
        best = sorted((-s[i], self._names[self._docs[i]], self._ords[i]) for i in pick)[:n]
        return [chunk_key(doc_id, o) for _, doc_id, o in best]


NO_SCORES = LexicalScores({}, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))


class _Recent:
    """The last `size` values read, by key: for rows that never change under their key (a stored row's id
    carries its document's version). With `weight`, `size` bounds the sum of the values' weights instead of
    their number (the newest value is always kept). Thread-safe."""

    def __init__(self, size: int, weight: Callable[[object], int] | None = None) -> None:
        self.size, self._rows, self._lock = size, OrderedDict(), threading.Lock()
        self._weight, self._held = weight, 0

    def get_many(self, keys) -> dict:
        out = {}
        with self._lock:
            for k in keys:
                v = self._rows.get(k)
                if v is not None:
                    self._rows.move_to_end(k)
                    out[k] = v
        return out

    def put_many(self, rows: dict) -> None:
        weigh = self._weight
        with self._lock:
            for k, v in rows.items():
                if weigh is not None:
                    self._held += weigh(v) - (weigh(self._rows[k]) if k in self._rows else 0)
                self._rows[k] = v
                self._rows.move_to_end(k)
            while len(self._rows) > 1 and (self._held if weigh is not None else len(self._rows)) > self.size:
                _, v = self._rows.popitem(last=False)
                if weigh is not None:
                    self._held -= weigh(v)

    def fetch(self, keys, read: Callable[[list], dict]) -> dict:
        """The values of these keys: those kept from memory, the others by read(missing keys), then kept."""
        found = self.get_many(keys)
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        if missing:
            got = read(missing)
            self.put_many(got)
            found.update(got)
        return found


def _paged(collection, where: dict | None, include: list[str], page: int | None = None) -> dict:
    """collection.get() in pages (of _PAGE rows unless given), merged: no read hits chroma's SQL-variable limit."""
    page = page or _PAGE
    out: dict = {"ids": []}
    offset = 0
    while True:
        got = collection.get(where=where, include=include, limit=page, offset=offset)
        out["ids"] += got["ids"]
        for key in include:
            out.setdefault(key, []).extend(got[key] if got[key] is not None else [])
        if len(got["ids"]) < page:
            return out
        offset += page


@dataclass
class Prepared:
    """One document's new version, ready to commit: its chunks and sentences with their vectors."""

    doc: Document
    chunks: list[Chunk]
    vectors: np.ndarray
    sentences: list[Sentence] = field(default_factory=list)
    sentence_vectors: np.ndarray | None = None


@dataclass
class Hit:
    """A chunk found by one retriever, with that retriever's score."""

    chunk: Chunk
    score: float


def index_text(chunk: Chunk) -> str:
    """What is embedded and BM25-indexed: the chunk plus where it sits, so '第十一条' or a title finds it."""
    head = " ".join(x for x in (chunk.title, chunk.section_path, chunk.article) if x)
    return f"{head}\n{chunk.text}" if head else chunk.text


class Store(Protocol):
    """The seam between the index and everything above it: what the pipeline, retrieval and the edges use.
    Filters are neutral (a collection of document ids, or None for all); keys are chunk keys
    ("doc_id:ordinal", `chunk_key`) everywhere above the store. ChromaIndex is the implementation; a store is
    only ever written inside `writer()`, one writer at a time across threads and processes."""

    location: str

    # documents and writing
    def writer(self, wait: bool = True) -> ContextManager: ...
    def documents(self) -> dict[str, Document]: ...
    def cached_documents(self) -> dict[str, Document] | None: ...
    def document(self, doc_id: str) -> Document | None: ...
    def add_document(self, doc: Document, chunks: list[Chunk], vectors: np.ndarray,
                     sentences: list[Sentence] = (), sentence_vectors: np.ndarray | None = None) -> None: ...
    def add_documents(self, items: list[Prepared]) -> None: ...
    def remove_document(self, doc_id: str) -> None: ...
    def reconcile(self) -> int: ...
    def clean_orphans(self) -> int: ...
    def refresh(self) -> None: ...
    def count(self) -> int: ...

    # reading
    def all_chunks(self, doc_id: str | None = None) -> list[tuple[str, Chunk]]: ...
    def chunks_by_key(self, keys: list[str]) -> dict[str, Chunk]: ...
    def chunk_vectors(self, keys: list[str]) -> dict[str, np.ndarray]: ...
    def chunks_mentioning(self, doc_id: str, phrase: str) -> list[Chunk]: ...
    def article_chunks(self, article: str, doc_ids: Collection[str] | None = None) -> list[Chunk]: ...
    def article_documents(self, article: str, doc_ids: Collection[str] | None = None) -> set[str]: ...
    def sentence_vectors(self, spans: list[tuple[str, int, int]]) -> list[list[tuple[Sentence, np.ndarray]]]: ...

    # searching
    def dense(self, vector: np.ndarray, n: int, doc_ids: Collection[str] | None = None) -> list["Hit"]: ...
    def dense_sentences(self, vector: np.ndarray, n: int,
                        doc_ids: Collection[str] | None = None) -> list["SentenceHit"]: ...
    def lexical(self) -> LexicalIndex: ...
    def lexical_scores(self, query: str, doc_ids: Collection[str] | None = None) -> "LexicalScores": ...


# HNSW search breadth. Chroma's default (100) is below the 120 sentences a question asks for: the last few
# results then differ from process to process (3 of 120 measured on the corpus) and borderline answers with
# them. At 400 the top 120 equal an exact search on the corpus; the cost is a wider graph walk per query.
EF_SEARCH = 400
# HNSW insertion with one thread: with several, the graph depends on which thread inserts what first, so the same
# documents ingested twice gave different near neighbours (lean rows, which Chroma applies in larger batches, made
# it show: 212 of the cross-validated evaluation's figures moved between two builds of the corpus; with one thread
# two embedded builds gave the same figures, those of the builds before lean rows). One thread also leaves a core
# to questions during an ingest. Chroma does not store the setting: every process that opens the index sets it.
ARTICLE_BY_ID = 3000  # an article is looked up by its documents' chunk ids up to this many chunks, else by filter
SPAN_CACHE = 4096  # document versions whose sentence spans a reader keeps (~30 spans of 3 numbers each)
LAYOUT_CACHE = 1024  # document versions whose decoded layout a reader keeps (~10-25 KB each)
TEXT_CACHE = 16_000_000  # characters of document texts a reader keeps (~2 bytes each; the 100k-chunk bench: 6.4M)
# A search within documents of at most this many rows (chunks and sentences) is exact, here, over their vectors read
# by id and kept: Chroma answers a query with a filter on doc_id by filtering every row first (with a server at 100k
# chunks, 70-97 ms a query against 5 ms unfiltered; reading a 105-chunk document's vectors by id took 14 ms, and
# its 435 sentences' 21 ms, once). Well below ROW_CACHE, so one such search does not evict every other row kept.
EXACT_SEARCH = 3000
# With a Chroma server, a writer gives way to questions asked from its index directory in the last ASKING_SECONDS:
# after each commit it waits as long as the commit took, at most GIVE_WAY_SECONDS (a server's reads wait for its
# writes: a read's p95 went from 7.5 to 16.7 ms, its longest to 180 ms, while another process wrote).
ASKING_SECONDS = 2.0
GIVE_WAY_SECONDS = 0.5
_pause = time.sleep  # (a writer's wait: see _give_way)
ROW_CACHE = 8192  # chunks, chunk vectors and sentences (with vectors) a reader keeps, each (~2 KB a row)
REOPEN_SECONDS = 30.0  # an embedded reader reloads other processes' vectors at most this often (see _follow)
QUIET_SECONDS = 10.0  # ...and once their commits have paused this long (or have gone on for MAX_BEHIND_SECONDS)
MAX_BEHIND_SECONDS = 300.0
_PROCESS = uuid.uuid4().hex[:12]  # names this process in the generation file (a pid repeats across hosts)
# Embedded clients are made, shared (_SHARED), tracked (_OPENED, _INDEXES) and stopped under this lock, one at a time.
_CONNECTING = threading.Lock()
RELEASE_SECONDS = 1.0  # how often a client replaced by a reopen is looked at until it can be freed (see _release)
RELEASE_WAIT = 5.0  # how long a background reopen waits for a replaced client to be freed before it loads the next
WRITER_RELEASE_WAIT = 1.0  # ...and a writer's reopen, which holds the write locks meanwhile (see _follow)
# The collections an embedded index opens on one client each: a client holds the vectors of the collections it has
# searched, and a reopen loads one client's at a time, freeing the client it replaces before it loads the next, so
# a process holds a second copy of one group's vectors at most while questions let go of the old client within
# RELEASE_WAIT (at 100k chunks 306 MB for the sentences, 213 MB for the chunks; with one client for all, both at
# once). A Chroma server's one client opens them all.
_GROUPS = (("chunks", "records"), ("sentences",))
# An embedded client's native API -> every collection opened on it here, weakly: it may be freed when none is left
# (see _release). Keyed by client._server, not client._system, which looks the path up in chromadb's cache.
_OPENED: dict[int, list[weakref.ref]] = {}
# (path, group) -> the embedded client this process's indexes on the path last took up for that group: an index
# opened later on the path starts from it, so it searches what the process has written through it (an embedded
# client keeps vectors in its own memory). Indexes already open keep their own clients until they reopen: two
# ChromaIndex objects on one path in one process do not see each other's commits' vectors after a reopen (the app
# opens one per process).
_SHARED: dict[tuple[str, int], object] = {}
_NAMES = tuple(name for group in _GROUPS for name in group)
_INDEXES: weakref.WeakSet = weakref.WeakSet()  # every ChromaIndex of this process (see _release; under _CONNECTING)


def _in_use(client) -> bool:
    """Some collection opened on this client's native API is still held (hold _CONNECTING)."""
    return any(r() is not None for r in _OPENED.get(id(client._server), ()))


def _give_back_memory() -> None:
    """Return freed heap pages to the system (glibc keeps them: after a client's vectors were freed, 100 MB more
    went back at 100k chunks). Nothing elsewhere."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _version_named(generation: str) -> Version | None:
    """The version record a commit left, as its generation file names it (None when it does not: older writers,
    and commits that wrote no version)."""
    last = generation.split()[-1:]
    if not last or not last[0].startswith("v"):
        return None
    try:
        seq, removals = last[0][1:].split(":")
        return Version(int(seq), int(removals))
    except ValueError:
        return None


def _load_vectors(group: int, opened: tuple) -> None:
    """Make a group's new client load its collections' vectors (a search in each; Chroma loads them on the first)."""
    for name, collection in zip(_GROUPS[group], opened[1:]):
        if name != "records":  # (read by id, never searched)
            one = collection.get(limit=1, include=["embeddings"])
            if len(one["ids"]):
                collection.query(query_embeddings=[list(one["embeddings"][0])], n_results=1, include=[])


def _widen_search(collection) -> None:
    """Raise an existing collection's ef_search to EF_SEARCH and insert with one thread (both mutable settings);
    indexes built before them keep working, read-only ones keep their old breadth."""
    try:
        current = (collection.configuration or {}).get("hnsw") or {}
        change = {} if (current.get("ef_search") or 0) >= EF_SEARCH else {"ef_search": EF_SEARCH}
        if current.get("num_threads") != 1:
            change["num_threads"] = 1
        if change:
            collection.modify(configuration={"hnsw": change})
    except Exception:  # a read-only directory or an older server: search as before
        pass


def _persist_often(collection) -> None:
    """Lower an existing records collection's sync_threshold to RECORDS_SYNC (a mutable setting)."""
    try:
        current = (collection.configuration or {}).get("hnsw") or {}
        if (current.get("sync_threshold") or 1000) > RECORDS_SYNC:
            collection.modify(configuration={"hnsw": {"sync_threshold": RECORDS_SYNC}})
    except Exception:  # a read-only directory or an older server: write as before
        pass


@dataclass(frozen=True)
class Version:
    """The version record: the last commit's sequence number and how many removals there have been."""

    seq: int = 0
    removals: int = 0


_RENUMBER = 256  # documents changed since the last view, above which the numbers are all made again


@dataclass(frozen=True)
class _LexicalView:
    """The committed versions as the lexical index numbers them, for one documents dict (a new one comes with every
    change): document number -> id, and -> committed version number (a new dict for every change: the lexical index
    keeps what it derives from one while the same one is passed)."""
    generation: str | None
    docs: dict
    ids: dict[int, str]
    versions: dict[int, int]

    @classmethod
    def of(cls, generation: str | None, docs: dict, last: _LexicalView | None) -> _LexicalView:
        """Numbered from the last view: only the documents whose record changed since (another Document object)
        are numbered again; a reader did that for every document after every commit, on the first question after
        each."""
        if last is not None and last.docs is docs:
            return cls(generation, docs, last.ids, last.versions)
        if last is not None and abs(len(docs) - len(last.docs)) <= _RENUMBER:
            changed = [d for k, d in docs.items() if last.docs.get(k) is not d]
            gone = last.docs.keys() - docs.keys()
            if len(changed) + len(gone) <= _RENUMBER:
                ids, versions = dict(last.ids), dict(last.versions)
                for doc_id in gone:
                    ids.pop(number(doc_id), None)
                    versions.pop(number(doc_id), None)
                for d in changed:
                    ids[number(d.doc_id)], versions[number(d.doc_id)] = d.doc_id, number(d.version)
                return cls(generation, docs, ids, versions)
        ids = {number(d.doc_id): d.doc_id for d in docs.values()}
        return cls(generation, docs, ids, {number(d.doc_id): number(d.version) for d in docs.values()})


class ChromaIndex:
    """Chunks and their vectors in Chroma, document records beside them, BM25 in the index directory."""

    def __init__(self, index_dir: str | Path = ".index", host: str = "", port: int = 8000,
                 collection: str = "policy-docs", refresh_seconds: float = 5.0) -> None:
        self.index_dir = Path(index_dir)
        self.location = f"chroma server {host}:{port}" if host else str(self.index_dir / "chroma")
        self._host, self._port, self._collection = host, port, collection
        self._writes = 0  # writes this process has begun (a background reopen made before one is dropped)
        try:
            self.index_dir.mkdir(parents=True, exist_ok=True)
            self._open()
        except Exception as e:  # chromadb raises many types for a damaged or unreachable store
            raise IndexUnavailable(
                f"the index at {self.location} cannot be opened ({type(e).__name__}: {e}). If it is damaged, move it aside "
                "and run `python app.py ingest` again; if it is read-only, give this user write access") from e
        self._old_lexical = self.index_dir / f"lexical-{collection}"  # the layout before the incremental index (bm25s)
        self.lexical_dir = self.index_dir / f"bm25-{collection}"
        self._docs: dict[str, Document] | None = None
        self._metas: dict[str, dict] = {}  # each cached document's record metadata, as read
        self._seen: Version | None = None  # the version record as of the cached documents (None: unknown)
        self._spans = _Recent(SPAN_CACHE)  # (doc id, version) -> its sentences' (id, start, end): see _sentence_spans
        self._layouts = _Recent(LAYOUT_CACHE)  # (doc id, version) -> its record's layout, decoded: see _layout_of
        self._texts = _Recent(TEXT_CACHE, weight=len)  # (doc id, version) -> its text: see _texts_of
        self._chunk_rows = _Recent(ROW_CACHE)  # chunk id -> Chunk (a committed version's, when read)
        self._chunk_vecs = _Recent(ROW_CACHE)  # chunk id -> vector
        self._sentence_rows = _Recent(ROW_CACHE)  # sentence id -> (Sentence, vector)
        self._lex = LexicalIndex(self.lexical_dir)
        self._lex_seen: _LexicalView | None = None  # the committed versions the lexical index was last read for
        self._lex_lock = threading.Lock()
        self._count_of: tuple[dict, int] | None = None  # (documents, their chunks)
        self._lock = threading.RLock()  # one refresh of documents / one lexical rebuild at a time
        self._write_lock = threading.RLock()  # one writer per process (the file lock covers other processes)
        self._held = threading.local()  # this thread's writer() depth: the file lock is taken once
        self._generation_file = self.index_dir / f"generation-{collection}"
        self._lock_file = self.index_dir / f"write-{collection}.lock"
        self._intents = self.index_dir / f"pending-{collection}"  # documents whose write has not finished
        self._intents_kept = self.index_dir / f"pending-{collection}.since"  # every write since leaves an intent
        self._asking_file = self.index_dir / f"asking-{collection}"  # touched while questions are asked (see _give_way)
        self._asked_at = float("-inf")
        self._generation = self._opened_at = self._read_generation()
        self._reopened: float | None = None  # monotonic time of the last reopen (see _follow)
        self._behind_since: float | None = None  # since when another process's vectors are not loaded here
        self._foreign_at = 0.0  # when this process last saw another process's commit
        self._reopening: threading.Thread | None = None  # a reopen at work in the background (see _follow)
        # A node sharing a Chroma server but not this directory commits without bumping the generation file:
        # with a server, also look for new versions this often.
        self.shared_server = bool(host)
        self.refresh_seconds, self._checked = refresh_seconds, 0.0
        with _CONNECTING:
            _INDEXES.add(self)

    def _open(self) -> None:
        """Connect to Chroma and open the three collections: with a server on one client, embedded on one client
        per group (see _GROUPS, _connect)."""
        if self._host:
            import chromadb
            from chromadb.config import Settings as ChromaSettings

            client = chromadb.HttpClient(host=self._host, port=self._port,
                                         settings=ChromaSettings(anonymized_telemetry=False))
            self.clients = (client,) * len(_GROUPS)
            for name, c in zip(_NAMES, self._collections(client, _NAMES)):
                setattr(self, name, c)
            return
        self.clients = ()
        for group in range(len(_GROUPS)):
            self._take(group, self._connect(group))

    def _take(self, group: int, opened: tuple):
        """Use a group's client and collections from now on, and share it with indexes opened later on the path
        (see _SHARED); the client they replace (None at first)."""
        old = self.clients[group] if group < len(self.clients) else None
        self.clients = self.clients[:group] + (opened[0],) + self.clients[group + 1:]
        for name, c in zip(_GROUPS[group], opened[1:]):
            setattr(self, name, c)
        with _CONNECTING:
            _SHARED[(self.location, group)] = opened[0]
        return old

    def _connect(self, group: int, fresh: bool = False) -> tuple:
        """An embedded client for a group of collections, and those collections: the one this process shares for
        the group (see _SHARED), or with fresh=True a new one, which reads the directory anew; the one it replaces
        keeps serving whoever still holds its collections until it is released (see _release)."""
        import chromadb
        from chromadb.api.shared_system_client import SharedSystemClient
        from chromadb.config import Settings as ChromaSettings

        with _CONNECTING:  # (the collections too: a client is freed when no collection opened on it is left)
            client = None if fresh else _SHARED.get((self.location, group))
            made = client is None
            if made:
                # chromadb shares one client per path in a process: forget its cached one (without stopping it)
                # so that each group has a client of its own
                SharedSystemClient._identifier_to_system.pop(self.location, None)
                client = chromadb.PersistentClient(path=self.location, settings=ChromaSettings(anonymized_telemetry=False))
            try:
                opened = (client, *self._collections(client, _GROUPS[group]))
            except Exception:
                if made:  # (nothing else has it)
                    with contextlib.suppress(Exception):
                        client._server.stop()
                raise
            refs = _OPENED.setdefault(id(client._server), [])
            refs[:] = [r for r in refs if r() is not None] + [weakref.ref(c) for c in opened[1:]]
            return opened

    def _collections(self, client, names: tuple[str, ...]) -> list:
        """The named collections on a client (made when missing)."""
        # embedding_function=None: vectors are always precomputed, chroma's own model never loads.
        out = []
        for name in names:
            if name == "records":
                c = client.get_or_create_collection(f"{self._collection}-records", embedding_function=None,
                                                    configuration={"hnsw": {"sync_threshold": RECORDS_SYNC}})
                _persist_often(c)
            else:
                hnsw = {"hnsw": {"space": "cosine", "ef_search": EF_SEARCH, "num_threads": 1}}
                c = client.get_or_create_collection(f"{self._collection}-{name}", embedding_function=None,
                                                    configuration=hnsw)
                _widen_search(c)
            out.append(c)
        return out

    def _follow(self, generation: str, here: bool = False) -> None:
        """Embedded Chroma keeps vectors in each process's memory: vectors another process committed are not
        searchable here (and fetching them by id fails) until the client is opened again (chroma-core/chroma
        #3769). A reopen costs a reload of the vectors (1.1-1.8 s at 100k chunks, measured) and, until an old client
        is released (see _release), a second copy of one group's in memory (see _GROUPS), so it waits until the other
        process's commits pause for QUIET_SECONDS (at most MAX_BEHIND_SECONDS), and comes at most once per
        REOPEN_SECONDS; the first one comes at once. It is made in a thread of its own, its vectors loaded there,
        and taken up, group by group, when ready:
        questions meanwhile use the client as it was, BM25 finds the new text, and a missing vector is no error.
        A writer (here) reopens at once, on its own thread, before it writes: a client that has not loaded another
        process's writes persists its own view of a collection's vector index over theirs at its next sync, and
        the index on disk no longer matches its rows (a later writer then crashed in an upsert, at 100k chunks).
        A Chroma server needs none of this."""
        if self.shared_server:
            return
        with self._lock:
            now = time.monotonic()
            if generation != self._opened_at:
                self._opened_at = generation
                writer = generation.split()[1:2]
                if writer and writer[0] != _PROCESS:
                    self._behind_since = self._behind_since or now
                    self._foreign_at = now
            if not self._behind_since or not (here or self._reopen_due(now)):
                return
            if not here:
                if self._reopening is None or not self._reopening.is_alive():
                    self._reopened = now  # an attempt counts: one dropped for a write here is tried again later
                    self._reopening = threading.Thread(target=self._reopen, args=(generation, self._writes),
                                                       daemon=True, name="chroma-reopen")
                    self._reopening.start()
                return
        # here: the caller holds the write locks. A new client loads no vectors until it is used (the write's
        # first upsert), so every group is taken up at once and the clients they replace are then waited for
        # (WRITER_RELEASE_WAIT in all, without self._lock, which a question holding one may need).
        opened = [self._connect(group, fresh=True) for group in range(len(_GROUPS))]
        with self._lock:
            old = [self._take(group, o) for group, o in enumerate(opened)]
            self._behind_since, self._reopened = None, now
        del opened
        deadline = time.monotonic() + WRITER_RELEASE_WAIT
        for client in old:
            self._release(client, wait=max(0.0, deadline - time.monotonic()))

    def _reopen(self, generation: str, writes: int) -> None:
        """Fresh clients, one group at a time (see _GROUPS): each one's vectors loaded (a search in each of its
        collections) and taken up, then the client it replaces freed (waiting up to RELEASE_WAIT for questions
        that hold it) before the next group's vectors load. Dropped, for the groups not yet taken, if this process
        began a write meanwhile (its own client then holds what a new one may lack) or is writing now."""
        for group in range(len(_GROUPS)):
            if self._writes != writes:  # a write here began: the writer reopened for itself
                return
            opened = None
            try:
                opened = self._connect(group, fresh=True)
                _load_vectors(group, opened)
            except Exception as e:  # the old client keeps serving; the next question tries again
                log.warning("reopening the index to load another process's vectors failed: %s", e)
                if opened is not None:
                    self._release(opened[0])
                return
            unused, taken = opened[0], False  # the one of the two clients this process no longer needs
            if self._write_lock.acquire(blocking=False):
                try:
                    with self._lock:
                        if self._writes == writes:
                            unused, taken = self._take(group, opened), True
                            self._reopened = time.monotonic()
                finally:
                    self._write_lock.release()
            opened = None  # (its collections, when dropped, are no longer held here)
            self._release(unused, wait=RELEASE_WAIT)
            if not taken:
                return
        with self._lock:
            if self._writes == writes and self._opened_at == generation:  # else still behind a later commit
                self._behind_since = None

    def _release(self, client, wait: float = 0.0) -> None:
        """Free a client this process no longer uses, with its copy of the vectors it loaded (~500 MB at 100k
        chunks for all of them). chromadb's System sits in a reference cycle, so dropping the client freed nothing
        until a full garbage collection (345 ms at 100k chunks), and each reopen kept 500 MB more until then. It is
        stopped once no collection opened on it is held any more — by a question or a paged read that took it
        before the swap, or by another ChromaIndex of this process on the path: looked at here for up to `wait`
        seconds (not when another index uses it), then by a thread every RELEASE_SECONDS; a client two indexes
        replaced is stopped once. Stopping only drops chromadb's native bindings, which is
        what collecting it would do (150 ms at 100k chunks)."""
        if client is None:
            return

        def free() -> str:
            """'freed' (or stopped before), 'held' (by a question or a read, for now), or 'index' (another
            index of this process uses it until its own reopen: not worth waiting for)."""
            from chromadb.api import ServerAPI
            from chromadb.api.shared_system_client import SharedSystemClient

            with _CONNECTING:  # (one step: the client is no longer shared with an index opened on the path)
                if id(client._server) not in _OPENED:  # released already (by another index's release)
                    return "freed"
                if _in_use(client):
                    return "index" if any(c is client for ix in _INDEXES for c in ix.clients) else "held"
                _OPENED.pop(id(client._server), None)
                for key in [k for k, c in _SHARED.items() if c is client]:
                    _SHARED.pop(key)
                cached = SharedSystemClient._identifier_to_system
                if self.location in cached and cached[self.location].instance(ServerAPI) is client._server:
                    cached.pop(self.location)
            try:
                client._server.stop()  # (chromadb's RustBindingsAPI: drops its native bindings)
            except Exception as e:  # a chromadb without it: only the garbage collector frees it (never a client
                # opened before a server froze its heap, see assistant.service.settle_heap)
                log.warning("a replaced Chroma client could not be stopped; its memory waits for the garbage "
                            "collector: %s", e)
            _give_back_memory()
            return "freed"

        deadline = time.monotonic() + wait
        while True:
            state = free()
            if state == "freed":
                return
            if state == "index" or time.monotonic() >= deadline:
                break
            time.sleep(min(0.02, wait))

        def later() -> None:
            while True:
                time.sleep(RELEASE_SECONDS)
                if free() == "freed":
                    return
        threading.Thread(target=later, daemon=True, name="chroma-release").start()

    def settle(self, timeout: float = 60.0) -> None:
        """Wait for a reopen at work (see _follow) to be taken up or dropped."""
        thread = self._reopening
        if thread is not None:
            thread.join(timeout)

    def _reopen_due(self, now: float) -> bool:
        if self._reopened is None:
            return True
        if now - self._reopened < REOPEN_SECONDS:
            return False
        return now - self._foreign_at >= QUIET_SECONDS or now - self._behind_since >= MAX_BEHIND_SECONDS

    def _vectors_behind(self) -> bool:
        """Another process's vectors are waiting for a reopen that is now due."""
        return bool(self._behind_since) and self._reopen_due(time.monotonic())

    # -- writers -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def writer(self, wait: bool = True):
        """Exclusive write access to this index (threads and processes); sees every earlier commit. With
        wait=False, BlockingIOError when another writer holds it."""
        if not self._write_lock.acquire(blocking=wait):
            raise BlockingIOError("another writer holds the index")
        depth = getattr(self._held, "depth", 0)
        try:
            if depth:  # this thread already holds the file lock: nested use is re-entrant
                self._held.depth = depth + 1
                yield self
                return
            with open(self._lock_file, "a+") as f:
                fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                self._held.depth = 1
                self._writes += 1  # a reopen made before this write lacks it (see _reopen)
                try:
                    generation = self._read_generation()
                    if self.shared_server or generation != self._generation or self._behind_since:
                        # another process committed (or, with a shared server, may have; or its vectors are not
                        # loaded here yet): decide and write against its state
                        self._follow(generation, here=True)
                        self.refresh()
                    yield self
                finally:
                    self._held.depth = 0
                    fcntl.flock(f, fcntl.LOCK_UN)
        finally:
            if depth:
                self._held.depth = depth
            self._write_lock.release()

    def clean_orphans(self) -> int:
        """Delete chunks a killed ingest left behind, unless a writer is at work (it cleans up itself). Not with
        a shared Chroma server: a writer on another machine holds no lock here, and its chunks await their commit."""
        if self.shared_server:
            return 0
        try:
            with self.writer(wait=False):
                return self.reconcile()
        except BlockingIOError:
            return 0

    def _read_generation(self) -> str:
        try:
            return self._generation_file.read_text()
        except FileNotFoundError:
            return ""

    def _committed_now(self, before: Version | None = None, after: Version | None = None,
                       changed: dict[str, tuple[Document, dict]] | None = None, removed: Collection[str] = ()) -> None:
        """Tell every process sharing this directory that the committed set changed (atomic replace; the
        content is unique per commit, so no clock or inode reuse can hide one). This process's cached documents
        take the commit in place when they were current (the version record as it was before, and the generation
        file): an add does not make the next question read the records again."""
        previous = self._read_generation()
        tmp = self._generation_file.with_name(f"{self._generation_file.name}.{os.getpid()}.{threading.get_ident()}")
        generation = f"{time.time_ns()} {_PROCESS} {threading.get_ident()} {id(self)}"
        if after is not None:  # the version record as this commit left it (see _load_documents)
            generation += f" v{after.seq}:{after.removals}"
        tmp.write_text(generation)
        os.replace(tmp, self._generation_file)
        with self._lock:
            current = self._docs is not None and self._generation == previous and self._seen == before
            if not (current and after and changed is not None):
                self._generation = None  # the next read fetches only what changed
                return
            docs = {k: d for k, d in self._docs.items() if k not in removed}
            self._texts.put_many({(doc.doc_id, doc.version): doc.text for doc, _ in changed.values()})
            for doc_id, (doc, meta) in changed.items():
                docs[doc_id] = self._stored(meta)
                self._metas[doc_id] = meta
            for doc_id in removed:
                self._metas.pop(doc_id, None)
            self._docs, self._seen, self._generation = docs, after, generation
            self._opened_at = generation  # (this process's own commit: nothing for _follow to reload)

    def _version(self) -> Version | None:
        """The version record (None in an index from before it, until its next commit)."""
        got = self.records.get(ids=[VERSION_ID], include=["metadatas"])
        if not got["ids"]:
            return None
        m = got["metadatas"][0]
        return Version(int(m.get("seq", 0)), int(m.get("removals", 0)))

    @staticmethod
    def _version_row(v: Version) -> tuple[list, list, list, list]:
        return [VERSION_ID], [[1.0]], [""], [{"doc_id": VERSION_ID, "seq": v.seq, "removals": v.removals}]

    # -- documents -------------------------------------------------------------------------
    def documents(self) -> dict[str, Document]:
        """Committed documents by id. Cached; a read of the small generation file picks up commits made by other
        processes sharing the directory (with a Chroma server, also a version check every `refresh_seconds`),
        and only then are the records read again. Thread-safe: requests and an upload's
        ingest share one index."""
        docs = self._docs
        if docs is not None and self._fresh():
            return docs
        with self._lock:
            return self._load_documents()

    def _fresh(self) -> bool:
        if self._read_generation() != self._generation or self._vectors_behind():
            return False
        return not self.shared_server or time.monotonic() - self._checked < self.refresh_seconds

    def _load_documents(self) -> dict[str, Document]:
        cached = self._docs  # read once: a commit on another thread may reset the attribute meanwhile
        if cached is not None and self._fresh():
            return cached
        self._checked = time.monotonic()
        generation = self._read_generation()
        self._follow(generation)
        seen = self._seen
        # The version record, read before the records: a commit after this read is found next time. A commit by a
        # process sharing this directory names the version it left in the generation file, written after the
        # commit: read with the file, it is as old as a read of the record would be, and saves that read (a
        # Chroma call for every commit a reader takes up; with a server an HTTP round trip).
        version = _version_named(generation) if generation != self._generation else None
        if version is None or (seen is not None and version.seq < seen.seq):
            version = self._version()
        if cached is not None and version and seen and version.removals == seen.removals:
            docs = cached
            if version.seq != seen.seq:  # records committed since (>=: two nodes of a server may share a number)
                got = _paged(self.records, {"seq": {"$gte": seen.seq}}, ["metadatas"])
                docs = cached | self._records(got)
        elif cached is not None:
            # A removal, or an index without a version record: the records' metadata is compared, and documents
            # added or changed since are taken from it.
            got = _paged(self.records, None, ["metadatas"])
            metas = {m["doc_id"]: m for m in got["metadatas"] if m["doc_id"] != VERSION_ID}
            changed = [k for k, m in metas.items() if k not in cached or self._metas.get(k) != m]  # new version, path…
            docs = {k: cached[k] for k in metas if k not in changed and k in cached}
            docs |= self._records({"metadatas": [metas[k] for k in changed]})
            if not changed and metas.keys() == cached.keys():
                docs = cached
        else:  # (metadata only: texts are read when used, see _texts_of)
            docs = self._records(_paged(self.records, None, ["metadatas"]))
        self._docs, self._generation, self._seen = docs, generation, version
        return docs

    def _records(self, got: dict) -> dict[str, Document]:
        docs = {}
        for meta in got["metadatas"]:
            if meta["doc_id"] != VERSION_ID:
                docs[meta["doc_id"]] = self._stored(meta)
                self._metas[meta["doc_id"]] = meta
        unknown = [d for d in docs.values() if not d.length]  # records from before lengths: their texts are read
        for i in range(0, len(unknown), _BATCH):
            texts = self._texts_of(unknown[i:i + _BATCH])
            for d in unknown[i:i + _BATCH]:
                d.length = len(texts.get((d.doc_id, d.version), ""))
        return docs

    def _stored(self, meta: dict) -> Document:
        """A committed document from its record's metadata; its text is read when used."""
        return _StoredDocument(self, **{k: v for k, v in meta.items() if k in Document.__dataclass_fields__
                                        and k != "text"})

    def _texts_of(self, docs: Collection[Document]) -> dict[tuple[str, str], str]:
        """The texts of these committed versions by (doc id, version): from memory, the others read from their
        records at once. A version replaced since it was read has no text (its record holds the new one)."""
        def read(missing: list[tuple[str, str]]) -> dict:
            out = {}
            for i in range(0, len(missing), _BATCH):
                got = self.records.get(ids=[d for d, _ in missing[i:i + _BATCH]], include=["documents", "metadatas"])
                for text, meta in zip(got["documents"], got["metadatas"]):
                    out[(meta["doc_id"], meta.get("version", ""))] = text or ""
            if not set(missing) <= out.keys():  # replaced (or removed) since read: the next documents() reads again
                self.refresh()
            return out
        return self._texts.fetch([(d.doc_id, d.version) for d in docs], read)

    def cached_documents(self) -> dict[str, Document] | None:
        """The documents as last loaded, without checking for newer commits (None before the first load): for
        callers that must never wait on the store, such as a health check on the event loop."""
        return self._docs

    def refresh(self) -> None:
        """Forget cached state so the next read sees other writers' commits."""
        self._generation = None  # the next read compares the records' metadata and fetches what changed
        self._checked = 0.0

    def document(self, doc_id: str) -> Document | None:
        return self.documents().get(doc_id)

    def add_document(self, doc: Document, chunks: list[Chunk], vectors: np.ndarray,
                     sentences: list[Sentence] = (), sentence_vectors: np.ndarray | None = None) -> None:
        """Index a new version of one document (see add_documents)."""
        self.add_documents([Prepared(doc, chunks, vectors, list(sentences), sentence_vectors)])

    def add_documents(self, items: list[Prepared]) -> None:
        """Index new versions of documents in one commit (see the module docstring for the commit order): many
        small files cost one write per collection, not one each. Distinct document ids."""
        if not items:
            return
        intent = self._intend(*(p.doc.doc_id for p in items))
        known = self.documents()
        started = time.monotonic()  # (what the server does for this commit: its writes, from here)
        updates = [p for p in items if p.doc.doc_id in known]  # (a new one's leftovers are reconcile's)
        lays = {p.doc.doc_id: layout(p.doc, p.chunks, p.sentences) for p in items}
        for lean in (True, False):  # rows a layout rebuilds carry no text (see the module docstring)
            part = [p for p in items if (lays[p.doc.doc_id] is not None) == lean]
            if part:
                _upsert(self.chunks, [c.chunk_id(p.doc.version) for p in part for c in p.chunks],
                        np.vstack([p.vectors for p in part]), None if lean else [c.text for p in part for c in p.chunks],
                        [self._chunk_meta(c, p.doc.version, lean) for p in part for c in p.chunks])
            said = [p for p in part if p.sentences]
            if said:
                _upsert(self.sentences, [x.sentence_id(p.doc.version) for p in said for x in p.sentences],
                        np.vstack([p.sentence_vectors for p in said]),
                        None if lean else [x.text for p in said for x in p.sentences],
                        [self._sentence_meta(x, p.doc.version, lean) for p in said for x in p.sentences])
        if self._lex.ready():  # (never built: its first build reads every committed version, these too)
            self._lex.add_many((p.doc.doc_id, p.doc.version, [(c.ordinal, index_text(c)) for c in p.chunks])
                               for p in items)
        before = self._version()
        after = Version((before or Version()).seq + 1, (before or Version()).removals)
        metas = {}
        for p in items:
            meta = {k: v for k, v in p.doc.meta().items() if v is not None}
            meta["chunks"], meta["sentences"], meta["seq"] = len(p.chunks), len(p.sentences), after.seq
            lay = lays[p.doc.doc_id]
            if lay is not None:
                meta["layout"] = lay
            metas[p.doc.doc_id] = meta
        ids, vecs, texts, ms = self._version_row(after)
        # the commit: every record and the version record in one write
        self.records.upsert(ids=list(metas) + ids, embeddings=[[1.0]] * len(items) + vecs,
                            documents=[p.doc.text for p in items] + texts, metadatas=list(metas.values()) + ms)
        try:  # committed: whatever happens to the clean-up, every process must learn of the commit
            for p in updates:  # (a delete by filter scans the collection's metadata: 26 ms at 64k chunks)
                stale = {"$and": [{"doc_id": p.doc.doc_id}, {"version": {"$ne": p.doc.version}}]}
                self.chunks.delete(where=stale)
                self.sentences.delete(where=stale)
            if self._lex.ready() and updates:
                self._lex.remove_many((p.doc.doc_id, p.doc.version) for p in updates)
            intent.unlink(missing_ok=True)  # finished: nothing of this write is left for reconcile
        finally:
            self._committed_now(before, after, {p.doc.doc_id: (p.doc, metas[p.doc.doc_id]) for p in items})
        self._give_way(time.monotonic() - started)

    def _give_way(self, spent: float) -> None:
        """With a Chroma server, a writer whose index directory has seen a question in the last ASKING_SECONDS
        waits as long as its commit took (at most GIVE_WAY_SECONDS) before it goes on: the server inserts the
        commit's vectors at its own priority, not at the ingest's lowered one, and a question waits for those
        inserts (see ASKING_SECONDS). Embedded, the writer inserts them itself, at its lowered priority. (It waits
        holding the writer lock: another writer waits the longer, by at most GIVE_WAY_SECONDS a commit.)"""
        if not self.shared_server:
            return
        try:
            asked = time.time() - self._asking_file.stat().st_mtime
        except OSError:
            return
        if 0 <= asked < ASKING_SECONDS:  # (a clock stepped back: no question known)
            _pause(min(spent, GIVE_WAY_SECONDS))

    def _asking(self) -> None:
        """Note that a question is being asked (at most once a second): a writer sharing the directory gives way."""
        now = time.monotonic()
        if self.shared_server and now - self._asked_at >= 1.0:
            self._asked_at = now
            with contextlib.suppress(OSError):
                self._asking_file.touch()

    def remove_document(self, doc_id: str) -> None:
        """Uncommit first (the record goes, the version record counts a removal), then delete the chunks."""
        intent = self._intend(doc_id)
        before = self._version()
        after = Version((before or Version()).seq + 1, (before or Version()).removals + 1)
        self.records.delete(ids=[doc_id])
        try:
            ids, vecs, texts, ms = self._version_row(after)
            self.records.upsert(ids=ids, embeddings=vecs, documents=texts, metadatas=ms)
            self.chunks.delete(where={"doc_id": doc_id})
            self.sentences.delete(where={"doc_id": doc_id})
            self._lex.remove(doc_id)
            intent.unlink(missing_ok=True)
        finally:
            self._committed_now(before, after, {}, [doc_id])

    def _count_removal(self) -> None:
        """A write that did not finish may have removed a record without counting it: count one, so that every
        reader compares the records' metadata once."""
        v = self._version() or Version()
        ids, vecs, texts, ms = self._version_row(Version(v.seq + 1, v.removals + 1))
        self.records.upsert(ids=ids, embeddings=vecs, documents=texts, metadatas=ms)
        self._committed_now()

    def _intend(self, *doc_ids: str) -> Path:
        """Record that a write of these documents starts (durably, before any of their rows is written): one
        file, a document id per line."""
        self._intents.mkdir(exist_ok=True)
        path = self._intents / hashlib.sha1("\n".join(doc_ids).encode()).hexdigest()
        tmp = path.with_suffix(f".{_PROCESS}")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\n".join(doc_ids))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    def reconcile(self) -> int:
        """Delete chunks no committed record points at (left by an interrupted ingest); return how many. Inside
        the writer lock: only the documents whose write left an intent, unless a full pass is needed."""
        self._write_lengths()
        if not self._intents_kept.exists():
            # (not with a shared server: a full pass would delete another node's chunks awaiting their commit)
            total = 0 if self.shared_server else self._reconcile_all()
            self._intents_kept.touch()
            for path in self._intents.glob("*") if self._intents.exists() else ():
                path.unlink(missing_ok=True)
            return total
        total = 0
        docs = self.documents()
        intents = sorted(self._intents.glob("*"))
        if intents:  # a write that did not finish may have committed, or removed, without readers knowing
            self._count_removal()
        for path in intents:
            try:
                doc_ids = path.read_text(encoding="utf-8").splitlines() if "." not in path.name else []
            except (OSError, UnicodeDecodeError):
                doc_ids = []
            for doc_id in filter(None, doc_ids):
                kept = docs.get(doc_id)
                where = {"doc_id": doc_id} if kept is None else {"$and": [{"doc_id": doc_id},
                                                                         {"version": {"$ne": kept.version}}]}
                for coll in (self.chunks, self.sentences):
                    stale = coll.get(where=where, include=[])["ids"]
                    for i in range(0, len(stale), _BATCH):
                        coll.delete(ids=stale[i:i + _BATCH])
                    total += len(stale)
            path.unlink(missing_ok=True)
        self._sync_lexical()
        return total

    def _write_lengths(self) -> None:
        """Records written before they kept their text's length get it (read from their texts when the records
        were read), so later processes read no text to open the index. Not with a shared server: a node holds no
        lock over another's commit, which could replace a record between the read and this write."""
        if self.shared_server:
            return
        docs = self.documents()
        lacking = [d for d in docs.values() if "length" not in self._metas.get(d.doc_id, {"length": 0})]
        for i in range(0, len(lacking), _BATCH):
            part = lacking[i:i + _BATCH]
            self.records.update(ids=[d.doc_id for d in part], metadatas=[{"length": d.length} for d in part])
            for d in part:
                self._metas[d.doc_id]["length"] = d.length

    def _reconcile_all(self) -> int:
        committed = {d.doc_id: d.version for d in self.documents().values()}
        total = 0
        for coll in (self.chunks, self.sentences):
            got = _paged(coll, None, ["metadatas"])
            stale = [i for i, m in zip(got["ids"], got["metadatas"]) if committed.get(m["doc_id"]) != m["version"]]
            for i in range(0, len(stale), _BATCH):
                coll.delete(ids=stale[i:i + _BATCH])
            total += len(stale)
        self._sync_lexical()
        return total

    def _sync_lexical(self) -> dict[str, Document]:
        """Bring the lexical index to exactly the committed versions: build it when it was never built (a new
        index, or one from before the incremental index), else delete versions no record points at and add committed ones it
        lacks (a crash between the steps of a commit, or another node's commit through a shared server).
        Inside the writer lock. Returns the documents it brought the index to."""
        docs = self.documents()
        committed = {d.doc_id: d.version for d in docs.values()}
        if not self._lex.ready():
            self._lex.rebuild(self._rows_of(list(docs.values())))
            shutil.rmtree(self._old_lexical, ignore_errors=True)
            self._old_lexical.with_name(f"{self._old_lexical.name}.lock").unlink(missing_ok=True)
            return docs
        want = {(number(d), number(v)): d for d, v in committed.items()}
        have = self._lex.versions()
        self._lex.remove_versions(have - want.keys())
        for doc_id, version, rows in self._rows_of([docs[want[pair]] for pair in want.keys() - have]):
            self._lex.add(doc_id, version, rows)
        return docs

    def _rows_of(self, docs: list[Document]):
        """(doc id, version, its chunks' indexed texts) of these committed versions, their texts read in groups."""
        for i in range(0, len(docs), _BATCH):
            group = docs[i:i + _BATCH]
            texts = self._texts_of(group)
            for d in group:
                if (d.doc_id, d.version) in texts or not self._metas.get(d.doc_id, {}).get("layout"):
                    yield d.doc_id, d.version, self._version_rows(d.doc_id, d.version, texts.get((d.doc_id, d.version)))
                # (else replaced as this reads: the next sync adds the new version)

    def _version_rows(self, doc_id: str, version: str, text: str | None = None) -> list[tuple[int, str]]:
        """(ordinal, indexed text) of one version's chunks, as the lexical index takes them: from its layout when
        it is the committed version and has one, else read from its rows."""
        doc = self.documents().get(doc_id)
        lay = self._layout_of([doc]).get((doc_id, version)) if doc is not None and doc.version == version else None
        if lay is not None:
            text = doc.text if text is None else text
            return [(o, index_text(_layout_chunk(doc, text, lay, o))) for o in range(len(lay["chunks"]))]
        got = _paged(self.chunks, {"$and": [{"doc_id": doc_id}, {"version": version}]}, ["documents", "metadatas"])
        return sorted((m["ordinal"], index_text(self._chunk(t, m))) for t, m in zip(got["documents"], got["metadatas"]))

    # -- chunks ----------------------------------------------------------------------------
    @staticmethod
    def _chunk_meta(c: Chunk, version: str, lean: bool = False) -> dict:
        """A chunk row's metadata: lean, what filters use (see the module docstring); else all a reader needs."""
        if lean:
            return {"doc_id": c.doc_id, "version": version, "article": c.article}
        return {"doc_id": c.doc_id, "version": version, "ordinal": c.ordinal, "title": c.title,
                "section": json.dumps(c.section, ensure_ascii=False), "article": c.article,
                "char_start": c.char_start, "char_end": c.char_end}

    @staticmethod
    def _sentence_meta(x: Sentence, version: str, lean: bool = False) -> dict:
        if lean:
            return {"doc_id": x.doc_id, "version": version}
        return {"doc_id": x.doc_id, "version": version, "chunk": x.chunk, "ordinal": x.ordinal,
                "char_start": x.char_start, "char_end": x.char_end, "article": x.article, "heading": x.heading}

    @staticmethod
    def _sentence(text: str, m: dict) -> Sentence:
        return Sentence(m["doc_id"], m["chunk"], m["ordinal"], text, m["char_start"], m["char_end"],
                        m.get("article", ""), m.get("heading", ""))

    @staticmethod
    def _chunk(text: str, m: dict) -> Chunk:
        return Chunk(m["doc_id"], m["ordinal"], text, m["char_start"], m["char_end"], m.get("title", ""),
                     json.loads(m.get("section") or "[]"), m.get("article", ""))

    def _committed(self) -> Callable[[dict], bool]:
        """A test of a row's metadata: is it of a committed version (as of now: the documents are read once)."""
        docs = self.documents()

        def committed(m: dict) -> bool:
            doc = docs.get(m["doc_id"])
            return doc is not None and doc.version == m["version"]
        return committed

    def all_chunks(self, doc_id: str | None = None) -> list[tuple[str, Chunk]]:
        """(chunk_id, Chunk) of committed versions, in document order: built from layouts, the rest read."""
        docs = self.documents()
        wanted = [docs[doc_id]] if doc_id in docs else [] if doc_id else list(docs.values())
        found, rest = self._from_layouts([chunk_id(d.doc_id, d.version, o) for d in wanted for o in range(d.chunks)],
                                         _layout_chunk)
        rows = list(found.items())
        if rest:  # versions without a layout (indexed before layouts, or not rebuildable from one): their full rows
            got = _by_ids(self.chunks, rest, ["documents", "metadatas"])
            rows += [(i, self._chunk(t, m)) for i, t, m in zip(got["ids"], got["documents"], got["metadatas"])]
        unnumbered = {d.doc_id for d in wanted if not d.chunks}  # a record from before the count
        if unnumbered:
            got = _paged(self.chunks, {"doc_id": doc_id} if doc_id else None, ["documents", "metadatas"])
            committed = self._committed()
            rows += [(i, self._chunk(t, m)) for i, t, m in zip(got["ids"], got["documents"], got["metadatas"])
                     if committed(m) and m["doc_id"] in unnumbered]
        return sorted(rows, key=lambda r: (r[1].doc_id, r[1].ordinal))

    def count(self) -> int:
        return self._derived("_count_of", self.documents(), lambda docs: sum(d.chunks for d in docs.values()))

    def _derived(self, attr: str, docs: dict, compute: Callable[[dict], object]):
        """compute(docs), kept in attr while the same dict is passed (a new one comes after every change)."""
        held = getattr(self, attr)
        if held is None or held[0] is not docs:
            held = (docs, compute(docs))
            setattr(self, attr, held)
        return held[1]

    @staticmethod
    def _where(doc_ids: Collection[str] | None) -> dict | None:
        """The store's own filter dialect, from the neutral one (a set of document ids, or None for all)."""
        return None if doc_ids is None else {"doc_id": {"$in": sorted(doc_ids)}}

    def _few(self, doc_ids: Collection[str] | None) -> list[Document] | None:
        """The committed versions of doc_ids when a search within them is exact, here (see EXACT_SEARCH): at most
        that many chunks and sentences, each version's layout and counts known; else None (Chroma searches)."""
        if doc_ids is None:
            return None
        docs = self.documents()
        few = [docs[d] for d in sorted(doc_ids) if d in docs]
        sentences = [self._metas.get(d.doc_id, {}).get("sentences") for d in few]
        if not all(d.chunks and d.length and n is not None for d, n in zip(few, sentences)) \
                or sum(d.chunks for d in few) + sum(sentences) > EXACT_SEARCH:
            return None
        lays = self._layout_of(few)
        return few if all((d.doc_id, d.version) in lays for d in few) else None

    def dense(self, vector: np.ndarray, n: int, doc_ids: Collection[str] | None = None) -> list[Hit]:
        """Nearest chunks by cosine similarity (1 - chroma's cosine distance), within doc_ids when given."""
        self._asking()
        total = self.count()
        if total == 0 or (doc_ids is not None and not doc_ids):
            return []
        if (few := self._few(doc_ids)) is not None:
            ids = [chunk_id(d.doc_id, d.version, o) for d in few for o in range(d.chunks)]
            vecs = self._chunk_vectors(ids)
            best = _nearest(vector, [(i, vecs[i]) for i in ids if i in vecs], n)
            rows = self.chunks_by_id([i for i, _ in best])
            return [Hit(rows[i], score) for i, score in best if i in rows]
        got = self.chunks.query(query_embeddings=[vector.tolist()], n_results=min(n, total), where=self._where(doc_ids),
                                include=["distances"])  # the rows: from layouts (see layout) or the row cache
        rows = self.chunks_by_id(got["ids"][0])
        return [Hit(rows[i], 1.0 - d) for i, d in zip(got["ids"][0], got["distances"][0]) if i in rows]

    def sentence_vectors(self, spans: list[tuple[str, int, int]]) -> list[list[tuple[Sentence, np.ndarray]]]:
        """For each (doc_id, start, end): the stored sentences of that document that lie within [start, end),
        with their vectors (by span, not by owning chunk: a sentence in the overlap of two chunks is stored once,
        under the first). One read for all the spans' sentences, none for those read before."""
        docs = self.documents()
        versions = [docs.get(d) if a < b else None for d, a, b in spans]
        # Not a range filter in the where: Chroma answers one by scanning every sentence (190 ms at 40k
        # sentences). A document version's sentence spans are read once (metadata only, cached), then the
        # sentences in the span are fetched by id.
        stored = self._sentence_spans([d for d in versions if d])
        ids = [[i for i, a, b in stored.get((d.doc_id, d.version), ()) if start <= a and b <= end] if d else []
               for d, (_, start, end) in zip(versions, spans)]

        def read(missing: list[str]) -> dict:
            built, rest = self._from_layouts(missing, _layout_sentence)  # from layouts: only the vectors are read

            def by_span(wanted) -> list[list[str]]:  # each id once: one span's vectors may not be loaded here
                left, groups = set(wanted), []
                for group in ids:
                    groups.append([i for i in group if i in left])
                    left.difference_update(groups[-1])
                return groups
            out = {i: (built[i], np.asarray(v, dtype=np.float32))
                   for got in self._loaded(self.sentences, by_span(built), ["embeddings"])
                   for i, v in zip(got["ids"], got["embeddings"])}
            return out | {i: (self._sentence(t, m), np.asarray(v, dtype=np.float32))
                          for got in self._loaded(self.sentences, by_span(rest), ["documents", "metadatas", "embeddings"])
                          for i, t, m, v in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"])}
        rows = self._sentence_rows.fetch([i for group in ids for i in group], read)
        return [[rows[i] for i in group if i in rows] for group in ids]

    def _loaded(self, collection, groups: list[list[str]], include: list[str]) -> list[dict]:
        """Rows by id, these groups of ids in one read. With embedded Chroma some may be another process's rows whose
        vectors are not loaded here yet (see _follow), which fails the read: then group by group, skipping those."""
        ids = [i for g in groups for i in g]
        if not ids:
            return []
        try:
            return [_by_ids(collection, ids, include)]
        except Exception:
            if self.shared_server:
                raise
        parts = []
        for g in filter(None, groups):
            with contextlib.suppress(Exception):
                parts.append(_by_ids(collection, g, include))
        return parts

    def _sentence_spans(self, versions: list[Document]) -> dict[tuple[str, str], list[tuple[str, int, int]]]:
        """(id, char_start, char_end) of these document versions' sentences, by (doc_id, version); versions are
        immutable, so cached (the last SPAN_CACHE versions read)."""
        keys = list(dict.fromkeys((d.doc_id, d.version) for d in versions))
        out = self._spans.get_many(keys)
        for (doc_id, version), lay in self._layout_of([d for d in versions if (d.doc_id, d.version) not in out]).items():
            out[(doc_id, version)] = [(sentence_id(doc_id, version, o), a, b) for o, (_, a, b) in enumerate(lay["sentences"])]
        numbered: dict[tuple[str, str], int] = {}  # (doc id, version) -> its sentence count
        ids = []
        for doc_id, version in (k for k in keys if k not in out):
            meta = self._metas.get(doc_id, {})
            n = meta.get("sentences") if meta.get("version") == version else None
            if n is not None:  # by id (ids are numbered): a filter on doc_id scans every sentence (17 ms at 50k chunks)
                numbered[(doc_id, version)] = n
                ids += [sentence_id(doc_id, version, i) for i in range(n)]
            else:  # a record from before the count
                got = _paged(self.sentences, {"$and": [{"doc_id": doc_id}, {"version": version}]}, ["metadatas"])
                out[(doc_id, version)] = [(i, m["char_start"], m["char_end"]) for i, m in zip(got["ids"], got["metadatas"])]
        if ids:
            got = _by_ids(self.sentences, ids, ["metadatas"])
            for key in numbered:
                out[key] = []
            for i, m in zip(got["ids"], got["metadatas"]):
                out[(m["doc_id"], m["version"])].append((i, m["char_start"], m["char_end"]))
        # kept only when whole (a version being deleted as it is read must not be remembered without sentences)
        self._spans.put_many({k: v for k, v in out.items() if len(v) == numbered.get(k, len(v))})
        return out

    def dense_sentences(self, vector: np.ndarray, n: int, doc_ids: Collection[str] | None = None) -> list[SentenceHit]:
        """Nearest sentences by cosine similarity, within doc_ids when given."""
        if not self.documents() or (doc_ids is not None and not doc_ids):
            return []
        if (few := self._few(doc_ids)) is not None:
            version = {d.doc_id: d.version for d in few}
            rows = [r for group in self.sentence_vectors([(d.doc_id, 0, d.length) for d in few]) for r in group]
            by_id = {x.sentence_id(version[x.doc_id]): (x, v) for x, v in rows}
            return [SentenceHit(by_id[i][0], score)
                    for i, score in _nearest(vector, [(i, v) for i, (_, v) in by_id.items()], n)]
        got = self.sentences.query(query_embeddings=[vector.tolist()], n_results=n, where=self._where(doc_ids),
                                   include=["distances"])
        ids = got["ids"][0]
        found, rest = self._from_layouts(ids, _layout_sentence)
        if rest:  # versions indexed before layouts: their rows' metadata
            read, committed = _by_ids(self.sentences, rest, ["documents", "metadatas"]), self._committed()
            found |= {i: self._sentence(t, m) for i, t, m in zip(read["ids"], read["documents"], read["metadatas"])
                      if committed(m)}
        return [SentenceHit(found[i], 1.0 - d) for i, d in zip(ids, got["distances"][0]) if i in found]

    def _layout_of(self, versions: Collection[Document]) -> dict[tuple[str, str], dict]:
        """The decoded layouts of these committed versions, by (doc id, version); a version without one (indexed
        before layouts) is absent."""
        def read(missing: list[tuple[str, str]]) -> dict:
            out = {}
            for key in missing:
                meta = self._metas.get(key[0], {})
                if meta.get("version") == key[1] and meta.get("layout"):
                    out[key] = json.loads(meta["layout"])
            return out
        return self._layouts.fetch([(d.doc_id, d.version) for d in versions], read)

    def _committed_ids(self, ids: list[str]) -> dict[str, tuple[Document, int]]:
        """The ids (of chunks or sentences) of committed versions, with their document and ordinal."""
        docs, out = self.documents(), {}
        for i in ids:
            p = _parse_id(i)
            d = docs.get(p[0]) if p else None
            if d is not None and d.version[:12] == p[1]:
                out[i] = (d, p[2])
        return out

    def _from_layouts(self, ids: list[str], build: Callable[[Document, str, dict, int], object]
                      ) -> tuple[dict, list[str]]:
        """Rows of committed versions built from their layouts and texts, by id, and the ids of committed versions
        without a layout (to be read); ids of versions not committed (or replaced as this reads) are in neither."""
        parsed = self._committed_ids(ids)
        versions = {d.doc_id: d for d, _ in parsed.values()}.values()
        lays = self._layout_of(versions)
        texts = self._texts_of([d for d in versions if (d.doc_id, d.version) in lays])
        found, rest = {}, []
        for i, (d, o) in parsed.items():
            key = (d.doc_id, d.version)
            lay = lays.get(key)
            if lay is None:
                rest.append(i)
            elif key in texts and (row := build(d, texts[key], lay, o)) is not None:
                found[i] = row
        return found, rest

    def chunk_vectors(self, keys: list[str]) -> dict[str, np.ndarray]:
        """Stored vectors of committed chunks by chunk key, so every candidate gets a dense score."""
        ids = self._chunk_ids(keys)
        return {ids[i]: v for i, v in self._chunk_vectors(list(ids)).items()}

    def _chunk_vectors(self, ids: list[str]) -> dict[str, np.ndarray]:
        """Stored vectors by chunk id (those read before from memory)."""
        def read(missing: list[str]) -> dict:
            by_doc: dict[str, list[str]] = {}
            for i in missing:  # (a group per document: what is read alone when another process's rows fail a read)
                by_doc.setdefault((_parse_id(i) or (i,))[0], []).append(i)
            return {i: np.asarray(v, dtype=np.float32)
                    for got in self._loaded(self.chunks, list(by_doc.values()), ["embeddings"])
                    for i, v in zip(got["ids"], got["embeddings"])}
        return self._chunk_vecs.fetch(ids, read)

    # -- lexical ---------------------------------------------------------------------------
    def lexical(self) -> LexicalIndex:
        """The BM25 index, at its newest commit (it may also hold uncommitted versions: see `_lexical_docs`)."""
        self._lexical_docs()
        return self._lex

    def _lexical_docs(self) -> _LexicalView:
        """The committed versions by document number, for reading the lexical index's rows; after any commit the
        index is reloaded (and built, the first time; with a shared server, brought in step with commits other
        nodes made)."""
        docs = self.documents()
        seen = self._lex_seen
        if seen is not None and seen.generation == self._generation and seen.docs is docs:
            return seen
        with self._lex_lock:  # (not self._lock: a writer that waits for it may be what this waits for)
            synced = True
            generation = self._generation
            view = _LexicalView.of(generation, docs, seen)
            if not self._lex.ready():  # built once: this waits for a writer at work
                with self.writer():
                    docs = self._sync_lexical()
            elif (self.shared_server and (seen is None or seen.docs is not docs)
                  and not self._lex.holds({n: v for n, v in view.versions.items() if docs[view.ids[n]].chunks})):
                # another node committed (a process sharing this directory keeps the index in step itself): bring
                # this node's index in step, unless a writer here is at work (then answer from the index as it is,
                # and try again at the next question)
                try:
                    with self.writer(wait=False):
                        docs = self._sync_lexical()
                except BlockingIOError:
                    synced = False
            self._lex.reload()
            if docs is not view.docs:
                view = _LexicalView.of(generation, docs, view)
            if synced:
                self._lex_seen = view
            return view

    def chunks_by_id(self, ids: list[str]) -> dict[str, Chunk]:
        """Committed chunks by chunk id (those read before from memory: a row never changes under its id); ids of
        other versions (a vector search can still find a replaced version's rows) give nothing."""
        ids = list(self._committed_ids(ids))

        def read(missing: list[str]) -> dict:
            found, rest = self._from_layouts(missing, _layout_chunk)
            if rest:
                got, committed = _by_ids(self.chunks, rest, ["documents", "metadatas"]), self._committed()
                found |= {i: self._chunk(t, m) for i, t, m in zip(got["ids"], got["documents"], got["metadatas"])
                          if committed(m)}
            return found
        return self._chunk_rows.fetch(ids, read)

    def chunks_mentioning(self, doc_id: str, phrase: str) -> list[Chunk]:
        """Committed chunks of one document whose text contains the phrase (e.g. the 第十六条 a penalty cites)."""
        d = self.documents().get(doc_id)
        if d is None:
            return []
        lay = self._layout_of([d]).get((doc_id, d.version))
        if lay is not None:
            text = d.text
            return [_layout_chunk(d, text, lay, o) for o, (a, b, _, _) in enumerate(lay["chunks"]) if phrase in text[a:b]]
        # Filtered here: Chroma answers a text filter by scanning every chunk's text (120 ms at 13k chunks), and a
        # filter on doc_id by scanning every chunk's metadata (10 ms at 50k chunks): by id (ids are numbered).
        got = _by_ids(self.chunks, [chunk_id(doc_id, d.version, o) for o in range(d.chunks)], ["documents", "metadatas"])
        return [self._chunk(t, m) for t, m in zip(got["documents"], got["metadatas"]) if phrase in t]

    def article_chunks(self, article: str, doc_ids: Collection[str] | None = None) -> list[Chunk]:
        """Committed chunks of the article with this number (e.g. '第十一条') in every document, or in doc_ids."""
        if doc_ids is not None and not doc_ids:
            return []
        docs = self.documents()
        found = []
        if doc_ids is not None:  # from layouts, the others by id
            named = [docs[d] for d in sorted(doc_ids) if d in docs]
            lays = self._layout_of(named)
            texts = self._texts_of([d for d in named if any(c[2] == article for c in
                                                            lays.get((d.doc_id, d.version), {}).get("chunks", ()))])
            for d in named:
                lay, text = lays.get((d.doc_id, d.version)), texts.get((d.doc_id, d.version))
                if lay is not None and text is not None:
                    found += [_layout_chunk(d, text, lay, o) for o, c in enumerate(lay["chunks"]) if c[2] == article]
            doc_ids = [d.doc_id for d in named if (d.doc_id, d.version) not in lays]
            if not doc_ids:
                return found
        ids = [chunk_id(d, docs[d].version, o) for d in doc_ids or () if d in docs for o in range(docs[d].chunks)]
        if doc_ids is not None and len(ids) <= ARTICLE_BY_ID:
            # by id, the article filtered here: Chroma answers a filter on article by a scan (230 ms at 50k chunks)
            got = _by_ids(self.chunks, ids, ["documents", "metadatas"])
            keep = [j for j, m in enumerate(got["metadatas"]) if m.get("article") == article]
            got = {k: [got[k][j] for j in keep] for k in ("documents", "metadatas")}
        else:
            where = {"article": article} if doc_ids is None else {"$and": [{"article": article}, self._where(doc_ids)]}
            ids = self.chunks.get(where=where, include=[])["ids"]  # (lean rows have no text: built from layouts)
            return found + list(self.chunks_by_id(ids).values())
        committed = self._committed()
        return found + [self._chunk(t, m) for t, m in zip(got["documents"], got["metadatas"]) if committed(m)]

    def article_documents(self, article: str, doc_ids: Collection[str] | None = None) -> set[str]:
        """The committed documents (within doc_ids) that have an article with this number, without reading a row:
        from the layouts their records carry (a version without one: its rows' ids, by filter)."""
        docs = self.documents()
        probe = json.dumps(article, ensure_ascii=False) + ",["  # as a layout's chunk holds it: '"第九条",[…]'
        out, unlaid = set(), []
        for doc_id in docs if doc_ids is None else [d for d in doc_ids if d in docs]:
            meta = self._metas.get(doc_id, {})
            if meta.get("version") != docs[doc_id].version or not meta.get("layout"):
                unlaid.append(doc_id)
            elif probe in meta["layout"]:
                out.add(doc_id)
        if unlaid:
            where = {"article": article} if len(unlaid) == len(docs) else {"$and": [{"article": article},
                                                                                     self._where(unlaid)]}
            ids = _paged(self.chunks, where, [])["ids"]
            out |= {d.doc_id for d, _ in self._committed_ids(ids).values()} & set(unlaid)
        return out

    def lexical_scores(self, query: str, doc_ids: Collection[str] | None = None) -> LexicalScores:
        """BM25 scores by chunk key of the committed chunks sharing a bigram with the query (within doc_ids): the
        best LEXICAL_ROWS of them, so a candidate found by another retriever gets its lexical score too, not a 0
        for being outside a lexical top n (below that many rows a score is a small share of the best)."""
        view, allowed = self._lexical_allowed(doc_ids)
        nums, _, ordinals, scores = self._lex.score_arrays(query, LEXICAL_ROWS, allowed)
        return LexicalScores(view.ids, nums, ordinals, scores)

    def _lexical_allowed(self, doc_ids: Collection[str] | None) -> tuple[_LexicalView, dict[int, int]]:
        """The committed versions, and those to score (within doc_ids)."""
        view = self._lexical_docs()
        if doc_ids is None:  # the same dict while nothing changes: the lexical index caches what it derives by it
            return view, view.versions
        return view, {n: v for n, v in view.versions.items() if view.ids[n] in doc_ids}

    def _lexical_rows(self, query: str, limit: int | None, doc_ids: Collection[str] | None = None):
        """(doc_id, ordinal, BM25) of committed chunks, best first."""
        view, allowed = self._lexical_allowed(doc_ids)
        return [(view.ids[d], o, score) for d, _, o, score in self._lex.scores(query, limit, allowed)]

    def _chunk_ids(self, keys: list[str]) -> dict[str, str]:
        """Versioned chunk ids of the committed versions, by chunk key."""
        docs = self.documents()
        out = {}
        for key in keys:
            doc_id, _, ordinal = key.rpartition(":")
            d = docs.get(doc_id)
            if d is not None and ordinal.isdigit():
                out[chunk_id(doc_id, d.version, int(ordinal))] = key
        return out

    def chunks_by_key(self, keys: list[str]) -> dict[str, Chunk]:
        ids = self._chunk_ids(keys)
        return {ids[i]: c for i, c in self.chunks_by_id(list(ids)).items()}

    def lexical_search(self, query: str, n: int) -> list[Hit]:
        ranked = [(chunk_key(d, o), s) for d, o, s in self._lexical_rows(query, n)]
        found = self.chunks_by_key([k for k, _ in ranked])
        return [Hit(found[k], s) for k, s in ranked if k in found]
