"""BM25 over character bigrams, in SQLite beside the Chroma index, changed one document at a time.

A commit changes the lexical index by that document's chunks only. The writer adds the new version's rows before
the document record is committed and deletes the other versions' rows after it (the store's write protocol),
each one SQLite transaction that also appends to a commit log: the row ids it added, the row ids it deleted.
A reader keeps the live rows (document, version, ordinal, length) in arrays and brings them up to date from the
log entries after the last one it applied; postings are read per query term. Nothing is re-read in full except
after `rebuild` (a new or damaged index), which starts a new epoch.

Postings are stored per term and per commit ("segments": arrays of row ids and term frequencies as blobs), so a
commit only appends. The writer that touches a term merges its segments of the new one's size class or below
(a class is log base _MERGE_FACTOR of a segment's postings), without their deleted rows, once there are
_MERGE_FACTOR of them: a term keeps a few segments per class, and a posting is rewritten about
log(postings) / log(_MERGE_FACTOR) times in all. Segments are rows appended to a table (an index on term, segment
and size finds them), so a commit writes new pages, not a page for every term it touches.
`python -m bench.lexical --grow 100000` (commits of 50 documents, from empty to 100k chunks): 3.1 ms a document
over the first ten commits (before any merge), 9.1 over the last ten; with a table keyed by term and a term's every
segment merged once it had 16: 4.4 and 24.1.

Scores are exactly those of bm25s's Lucene BM25 (k1 1.5, b 0.75) over the live rows, which the fusion weights and
the answerability model were fitted with. A reader keeps the live postings of the terms it used last across
commits: each is brought up to date by reading only the term's segments written since (a commit touches the terms
of one document); of a merged segment, only the rows after those it holds; its deleted rows are dropped.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import math
import re
import sqlite3
import threading
import uuid
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Collection, Iterable, NamedTuple

import numpy as np

log = logging.getLogger(__name__)
CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+|[A-Za-z]+|\d+(?:\.\d+)?%?")
_EMPTY = "\u0000"  # the token of a chunk with no bigram, so every chunk is a row
FORMAT = "sqlite-2"  # the layout below; another value (or none) means: build it
K1, B = 1.5, 0.75  # bm25s's defaults, which the fusion weights were fitted with
_MERGE_FACTOR = 16  # a term's newest segments are merged when this many are of one size class (see above)
_MAX_SEGMENTS = 128  # ... and all of them when a write leaves more than this many (a bound on what a reader reads)
_FLUSH = 200_000  # postings held in memory by a rebuild before they are written as a segment
POSTINGS_CACHE_BYTES = 16 << 20  # a reader's most recently used terms' live postings, until its view changes
_ENTRY_BYTES = 512  # what a cached term costs besides its arrays (the key, a tuple, two array objects)
_IDF_TERMS = 50_000  # idf values a reader keeps (terms come from users' text: any number of them)
_FOLLOW_DOCS = 64  # documents whose version changed, up to which a rows mask is followed, not made again
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS rows(id INTEGER PRIMARY KEY AUTOINCREMENT, doc INTEGER, ver INTEGER, ordinal INTEGER,
                                length INTEGER);
CREATE INDEX IF NOT EXISTS rows_version ON rows(doc, ver);
CREATE TABLE IF NOT EXISTS postings(term TEXT, seg INTEGER, n INTEGER, ids BLOB, tfs BLOB);
CREATE INDEX IF NOT EXISTS postings_term ON postings(term, seg, n);
CREATE TABLE IF NOT EXISTS log(seq INTEGER PRIMARY KEY AUTOINCREMENT, first INTEGER, last INTEGER, dead BLOB);
"""


class _Held(NamedTuple):
    """One term's live postings as a reader last read them."""
    ids: np.ndarray
    tfs: np.ndarray
    seg: int  # the last of the term's segments read (segment numbers only grow)
    top: int  # the reader's last row id then: every later row of the term is in a later segment
    view: int  # the reader's view they are the live postings of


def _cost(held: _Held) -> int:
    """What one term's cached postings count against POSTINGS_CACHE_BYTES."""
    return held.ids.nbytes + held.tfs.nbytes + _ENTRY_BYTES


def _joined(parts: list[tuple[bytes, bytes]]) -> tuple[np.ndarray, np.ndarray]:
    """Segments' (ids, tfs) blobs as one pair of arrays."""
    return (np.concatenate([np.frombuffer(i, dtype=np.int64) for i, _ in parts]),
            np.concatenate([np.frombuffer(f, dtype=np.int32) for _, f in parts]))


def _size_class(postings: int) -> int:
    c = 0
    while postings >= _MERGE_FACTOR:
        postings //= _MERGE_FACTOR
        c += 1
    return c


def _to_merge(sizes: list[int]) -> list[int]:
    """Given a term's segment sizes (postings, oldest first), which of them to merge into one (none: []). The
    segments of the newest one's size class or below merge when they are _MERGE_FACTOR or more; the result may
    make _MERGE_FACTOR of the next class, which then join the same merge (one rewrite, not a cascade)."""
    if len(sizes) > _MAX_SEGMENTS:
        return list(range(len(sizes)))
    chosen: list[int] = []
    newest = sizes[-1]
    while True:
        top = _size_class(newest)
        pick = [i for i, n in enumerate(sizes) if i not in chosen and _size_class(n) <= top]
        if len(pick) + bool(chosen) < _MERGE_FACTOR:  # (the merge made so far counts as one)
            return sorted(chosen)
        chosen += pick
        newest = sum(sizes[i] for i in chosen)


def bigrams(text: str) -> list[str]:
    """Chinese runs -> overlapping character bigrams (plus single chars of 1-char runs); Latin words and
    numbers whole. Bigrams need no segmenter and measured better than jieba words on the speech
    (R@1 0.80 vs 0.72)."""
    out: list[str] = []
    for m in CJK_RUN.finditer(text.lower()):
        run = m.group(0)
        if "\u3400" <= run[0] <= "\ufaff":
            out.extend(run[i:i + 2] for i in range(len(run) - 1)) if len(run) > 1 else out.append(run)
        else:
            out.append(run)
    return out


@functools.lru_cache(maxsize=1 << 17)  # every document id and version is numbered again after each commit
def number(text: str) -> int:
    """A stable 56-bit number for a document id or version (rows are all numbers)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=7).digest(), "big")


class LexicalIndex:
    """One store's BM25 index: written only inside the store's writer lock, read by any number of threads and
    processes (SQLite's WAL mode: readers never wait for the writer)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "lexical.sqlite3"
        self._lock = threading.RLock()  # one connection per index object, used by one thread at a time
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        if self._outdated():  # an index in an older layout is emptied: not ready, the store builds it again
            self._empty_older_layout()
        self._db.executescript(_SCHEMA)  # (tables that exist are left as they are: no write, no lock)
        # this reader's view: the epoch and last log entry applied, and the rows by id (length 0: no live row)
        self._epoch: str | None = None
        self._seq = 0
        self._doc = self._ver = self._ordinal = self._length = np.zeros(0, dtype=np.int64)
        self._live = 0
        self._total = 0
        self._max_id = 0
        self._pairs: dict[tuple[int, int], int] = {}  # (document, version) -> its live rows in this view
        self._idf_cache: dict[str, float] = {}
        self._view = 0  # counts the changes of this view; postings held for an older one are brought up to date
        # term -> its live postings (in the view they say), most recently used last
        self._postings_cache: OrderedDict[str, _Held] = OrderedDict()
        self._postings_bytes = 0
        self._arrays: tuple[dict, np.ndarray, np.ndarray] | None = None
        self._mask: tuple[dict, np.ndarray] | None = None  # (versions, whether each row is of them): see _of_versions

    def _empty_older_layout(self) -> None:
        """Drop an older layout's tables and make this one's, in one transaction (another process opening the index
        meanwhile finds either). Row ids start again from 1: no reader can hold a view of the old layout's rows
        (this code reads none of it), so none is misled by ids it saw before."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if self._outdated():  # (another process may have done it meanwhile)
                log.info("lexical index at %s is in an older layout: it will be built again", self.path)
                for table in ("meta", "rows", "postings", "log"):
                    self._db.execute(f"DROP TABLE IF EXISTS {table}")
                for statement in _SCHEMA.split(";"):  # (in this transaction: executescript would commit first)
                    if statement.strip():
                        self._db.execute(statement)
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _outdated(self) -> bool:
        """Whether the file holds an index in an older layout: postings without their sizes (sqlite-1, built or
        not), or another format. Read without a lock: opening does not wait for a writer at work."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(postings)")}
        if columns and "n" not in columns:
            return True
        if not self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone():
            return False
        built = self._meta("format")
        return built is not None and built != FORMAT

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    # -- state ---------------------------------------------------------------------------------
    def ready(self) -> bool:
        """Whether a full build finished here (after that, every commit keeps it current)."""
        with self._lock:
            return self._meta("format") == FORMAT

    def reload(self) -> None:
        """Apply the commits made since this reader last looked (by any process): the rows they added and
        deleted, from the log; everything only when the index was rebuilt meanwhile."""
        with self._lock:
            self._db.execute("BEGIN")  # one snapshot: the epoch, the log and the rows it points at
            try:
                epoch = self._meta("epoch")
                if epoch != self._epoch:
                    self._load_all(epoch)
                    return
                entries = self._db.execute("SELECT seq, first, last, dead FROM log WHERE seq > ? ORDER BY seq",
                                           (self._seq,)).fetchall()
                if entries:  # before the view changes: a failure part way must not leave them describing the old one
                    self._view_changed()
                for seq, first, last, dead in entries:
                    if last >= first:
                        self._take(self._db.execute(
                            "SELECT id, doc, ver, ordinal, length FROM rows WHERE id BETWEEN ? AND ?", (first, last)).fetchall())
                    if dead:
                        self._kill(np.frombuffer(dead, dtype=np.int64))
                    self._seq = seq
            finally:
                self._db.execute("COMMIT")

    def _load_all(self, epoch: str | None) -> None:
        self._view_changed()
        self._mask = None  # another epoch: rows are numbered again
        self._postings_cache.clear()  # (and nothing held follows from the log)
        self._postings_bytes = 0
        self._seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM log").fetchone()[0]
        self._doc = self._ver = self._ordinal = self._length = np.zeros(0, dtype=np.int64)
        self._live = self._total = self._max_id = 0
        self._pairs = {}
        self._take(self._db.execute("SELECT id, doc, ver, ordinal, length FROM rows").fetchall())
        self._epoch = epoch

    def _view_changed(self) -> None:
        """What was derived from the rows goes; postings held are brought up to date when next used."""
        self._view += 1
        self._idf_cache.clear()

    def _take(self, rows: list[tuple]) -> None:
        if not rows:
            return
        a = np.array(rows, dtype=np.int64)
        top = int(a[:, 0].max()) + 1
        if top > len(self._length):
            size = max(top, 2 * len(self._length))
            grown = [np.zeros(size, dtype=np.int64) for _ in range(4)]
            for new, old in zip(grown, (self._doc, self._ver, self._ordinal, self._length)):
                new[:len(old)] = old
            self._doc, self._ver, self._ordinal, self._length = grown
        ids = a[:, 0]
        self._max_id = max(self._max_id, top - 1)
        fresh = self._length[ids] == 0
        self._count_pairs(a[fresh, 1], a[fresh, 2], 1)
        self._live += int(fresh.sum())
        self._total += int(a[:, 4].sum() - self._length[ids].sum())
        self._doc[ids], self._ver[ids], self._ordinal[ids], self._length[ids] = a[:, 1], a[:, 2], a[:, 3], a[:, 4]

    def _kill(self, ids: np.ndarray) -> None:
        ids = ids[ids < len(self._length)]
        ids = ids[self._length[ids] > 0]
        self._count_pairs(self._doc[ids], self._ver[ids], -1)
        self._live -= len(ids)
        self._total -= int(self._length[ids].sum())
        self._length[ids] = 0

    def _count_pairs(self, docs: np.ndarray, vers: np.ndarray, sign: int) -> None:
        if not len(docs):
            return
        pairs, counts = np.unique(np.stack([docs, vers], axis=1), axis=0, return_counts=True)
        for (d, v), n in zip(pairs.tolist(), counts.tolist()):
            left = self._pairs.get((d, v), 0) + sign * n
            if left > 0:
                self._pairs[(d, v)] = left
            else:
                self._pairs.pop((d, v), None)

    # -- writing (inside the store's writer lock) ----------------------------------------------
    @contextlib.contextmanager
    def _transaction(self):
        with self._lock:
            self.reload()  # the writer's view is current before it writes (merges read liveness from it)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self.reload()

    def _insert(self, db, doc_id: str, version: str, rows: Iterable[tuple[int, str]],
                postings: dict[str, tuple[list, list]]) -> tuple[int, int, int]:
        """Insert rows; their postings go into `postings`. Returns the first and last row id (last < first: none)
        and the number of postings added."""
        d, v = number(doc_id), number(version)
        rids, added = [], 0
        for ordinal, text in rows:
            counts = Counter(bigrams(text) or [_EMPTY])
            rid = db.execute("INSERT INTO rows(doc, ver, ordinal, length) VALUES (?, ?, ?, ?)",
                             (d, v, ordinal, sum(counts.values()))).lastrowid
            rids.append(rid)
            added += len(counts)
            for term, tf in counts.items():
                ids, tfs = postings.setdefault(term, ([], []))
                ids.append(rid)
                tfs.append(tf)
        return (rids[0], rids[-1], added) if rids else (0, -1, 0)

    def _write_postings(self, db, postings: dict[str, tuple[list, list]]) -> None:
        """The postings as a new segment of each term, then the merges they call for."""
        seg = int(self._meta("next_seg") or 1)
        db.executemany("INSERT INTO postings VALUES (?, ?, ?, ?, ?)",
                       [(t, seg, len(i), np.asarray(i, dtype=np.int64).tobytes(), np.asarray(f, dtype=np.int32).tobytes())
                        for t, (i, f) in postings.items()])
        # Terms that may merge (_MERGE_FACTOR segments at most the new one's size class, or too many segments),
        # counted in the index on term (covering: the postings are not read), the terms of one class at a time.
        by_class: dict[int, list[str]] = {}
        for term, (ids, _) in postings.items():
            by_class.setdefault(_size_class(len(ids)), []).append(term)
        candidates = []
        for c, terms in by_class.items():
            for i in range(0, len(terms), 900):  # (SQLite bounds the variables of one statement)
                part = terms[i:i + 900]
                candidates += [t for (t,) in db.execute(
                    f"SELECT term FROM postings WHERE term IN ({','.join('?' * len(part))}) GROUP BY term "
                    f"HAVING SUM(n < ?) >= ? OR COUNT(*) > ?", part + [_MERGE_FACTOR ** (c + 1), _MERGE_FACTOR,
                                                                       _MAX_SEGMENTS])]
        for term in candidates:
            segs = db.execute("SELECT seg, n FROM postings WHERE term=? ORDER BY seg", (term,)).fetchall()
            chosen = _to_merge([n for _, n in segs])
            if chosen:
                seg += 1
                self._merge(db, term, [segs[i][0] for i in chosen], seg)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('next_seg', ?)", (str(seg + 1),))

    @staticmethod
    def _segments(db, term: str, after: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
        """A term's row ids and term frequencies in its segments numbered above `after`, and the last of them
        (`after` when there is none)."""
        parts = db.execute("SELECT seg, ids, tfs FROM postings WHERE term=? AND seg>? ORDER BY seg",
                           (term, after)).fetchall()
        if not parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32), after
        return (*_joined([(i, f) for _, i, f in parts]), parts[-1][0])

    def _merge(self, db, term: str, segs: list[int], into: int) -> None:
        """These segments of a term as one, numbered `into`, without the rows deleted since they were written."""
        marks = ",".join("?" * len(segs))
        ids, tfs = _joined(db.execute(f"SELECT ids, tfs FROM postings WHERE term=? AND seg IN ({marks})",
                                      [term] + segs).fetchall())
        keep = self._alive(ids)
        db.execute(f"DELETE FROM postings WHERE term=? AND seg IN ({marks})", [term] + segs)
        if keep.any():
            db.execute("INSERT INTO postings VALUES (?, ?, ?, ?, ?)",
                       (term, into, int(keep.sum()), ids[keep].tobytes(), tfs[keep].tobytes()))

    def _alive(self, ids: np.ndarray) -> np.ndarray:
        """Which rows are live, from the writer's own view (current: it reloads after each of its transactions);
        a row newer than that view was inserted by the transaction at work, and is live."""
        known = ids <= self._max_id
        alive = ~known
        alive[known] = self._length[ids[known]] > 0
        return alive

    def _delete(self, db, where: str, args: tuple) -> None:
        dead = np.array([r for (r,) in db.execute(f"SELECT id FROM rows WHERE {where}", args)], dtype=np.int64)
        if len(dead):
            db.execute(f"DELETE FROM rows WHERE {where}", args)
            db.execute("INSERT INTO log(first, last, dead) VALUES (1, 0, ?)", (dead.tobytes(),))

    def add(self, doc_id: str, version: str, rows: Iterable[tuple[int, str]]) -> None:
        """Index one version's chunks, (ordinal, text) each (see add_many)."""
        self.add_many([(doc_id, version, rows)])

    def add_many(self, versions: Iterable[tuple[str, str, Iterable[tuple[int, str]]]]) -> None:
        """Index versions' chunks, (doc_id, version, [(ordinal, text)]) each, in one transaction and one segment
        (readers of the store keep ignoring them until the store commits those versions). A version indexed before
        (a batch retried file by file after the store refused it) is replaced, not indexed twice."""
        with self._transaction() as db:
            postings: dict[str, tuple[list, list]] = {}
            first, last = 0, -1
            for doc_id, version, rows in versions:
                self._delete(db, "doc = ? AND ver = ?", (number(doc_id), number(version)))
                a, b, _ = self._insert(db, doc_id, version, rows, postings)
                if b >= a:
                    first, last = (first if last >= first else a), b
            if postings:
                self._write_postings(db, postings)
            db.execute("INSERT INTO log(first, last, dead) VALUES (?, ?, NULL)", (first, last))

    def remove(self, doc_id: str, keep_version: str | None = None) -> None:
        """Delete a document's rows, or all but those of keep_version."""
        self.remove_many([(doc_id, keep_version)])

    def remove_many(self, pairs: Iterable[tuple[str, str | None]]) -> None:
        """remove() of each (doc_id, keep_version), in one transaction."""
        with self._transaction() as db:
            for doc_id, keep_version in pairs:
                if keep_version is None:
                    self._delete(db, "doc = ?", (number(doc_id),))
                else:
                    self._delete(db, "doc = ? AND ver != ?", (number(doc_id), number(keep_version)))

    def remove_versions(self, pairs: Collection[tuple[int, int]]) -> None:
        """Delete the rows of these (document number, version number) pairs (`versions` gives them)."""
        if not pairs:
            return
        with self._transaction() as db:
            for d, v in pairs:
                self._delete(db, "doc = ? AND ver = ?", (d, v))

    def rebuild(self, versions: Iterable[tuple[str, str, list[tuple[int, str]]]]) -> int:
        """Replace everything by these (doc_id, version, rows), in one transaction; a new epoch makes every
        reader load the rows again. Returns the number of rows."""
        n = 0
        with self._transaction() as db:
            db.execute("DELETE FROM meta WHERE key = 'format'")
            for table in ("rows", "postings", "log"):
                db.execute(f"DELETE FROM {table}")
            postings: dict[str, tuple[list, list]] = {}
            held = 0
            for doc_id, version, rows in versions:
                first, last, added = self._insert(db, doc_id, version, rows, postings)
                n += max(0, last - first + 1)
                held += added
                if held > _FLUSH:
                    self._write_postings(db, postings)
                    postings, held = {}, 0
            if postings:
                self._write_postings(db, postings)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('epoch', ?)", (uuid.uuid4().hex,))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('format', ?)", (FORMAT,))
        log.info("lexical index rebuilt: %d chunks", n)
        return n

    # -- reading -------------------------------------------------------------------------------
    def versions(self) -> set[tuple[int, int]]:
        """Every (document number, version number) pair the index holds, as of now."""
        with self._lock:
            self.reload()
            return set(self._pairs)

    def holds(self, versions: dict[int, int]) -> bool:
        """Whether the index holds exactly these versions ({document number: version number}), as of now: from the
        live rows counted per version, without reading the rows (a reader asks this after every commit it sees)."""
        with self._lock:
            self.reload()
            return len(self._pairs) == len(versions) and all(versions.get(d) == v for d, v in self._pairs)

    def _postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """Live row ids and term frequencies of one term, as this reader knows the rows. Kept, and after a commit
        brought up to date from the segments written since (a question's terms are mostly common ones: read from
        SQLite in full, they were a third of BM25's time, and a reader answering while documents are added would
        read them again after every commit)."""
        held = self._postings_cache.pop(term, None)
        if held is not None:
            self._postings_bytes -= _cost(held)
            if held.view == self._view:
                self._hold(term, held)
                return held.ids, held.tfs
        ids, tfs, seg = self._segments(self._db, term, held.seg if held is not None else 0)
        if held is not None:  # held: every row up to its top; later ones are in later segments, which also hold
            new = ids > held.top  # merges of rows held (rows never change, so what they say of them is held)
            ids, tfs = np.concatenate([held.ids, ids[new]]), np.concatenate([held.tfs, tfs[new]])
        seen = ids <= self._max_id  # a commit after this view's last (read meanwhile) is not in it yet
        whole = bool(seen.all())
        ids, tfs = ids[seen], tfs[seen]
        live = self._length[ids] > 0
        held = _Held(ids[live], tfs[live], seg, self._max_id, self._view)
        if whole:  # (else: rows after this view would be missed once it moves on)
            self._hold(term, held)
        return held.ids, held.tfs

    def _hold(self, term: str, held: _Held) -> None:
        if _cost(held) > POSTINGS_CACHE_BYTES // 8:
            return
        self._postings_cache[term] = held
        self._postings_bytes += _cost(held)
        while self._postings_bytes > POSTINGS_CACHE_BYTES:
            self._postings_bytes -= _cost(self._postings_cache.popitem(last=False)[1])

    def idf(self, term: str) -> float:
        """Inverse document frequency; a term the corpus never uses weighs the most."""
        with self._lock:
            if term not in self._idf_cache:
                if len(self._idf_cache) >= _IDF_TERMS:
                    self._idf_cache.clear()
                self._idf_cache[term] = math.log((self._live + 1) / (len(self._postings(term)[0]) + 0.5))
            return self._idf_cache[term]

    def _version_arrays(self, versions: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Sorted document numbers and their versions; the last dict's arrays are kept (a caller passes the
        same dict until its documents change)."""
        held = self._arrays
        if held is None or held[0] is not versions:
            docs = np.array(sorted(versions), dtype=np.int64)
            held = self._arrays = (versions, docs, np.array([versions[d] for d in docs.tolist()], dtype=np.int64))
        return held[1], held[2]

    def _of_versions(self, rows: np.ndarray, versions: dict[int, int]) -> np.ndarray:
        """Which of these rows belong to the given versions. A dict seen again (the store passes the same one while
        nothing changes) is answered from a mask over every row: a question's rows are tens of thousands at 100k
        chunks, and looking each up cost more than scoring them. The mask follows the next dict when it differs
        from the last by a few documents (the store's next one, after a commit) and rows added since: only their
        rows are looked at (at 100k chunks, during another process's ingest, making it again took 10-15 ms at p95 of
        the questions asked)."""
        held = self._mask
        if held is not None and held[0] is versions and len(held[1]) > self._max_id:
            return held[1][rows]
        mask = self._follow(held, versions) if held is not None else None
        if mask is None:
            seen = self._arrays is not None and self._arrays[0] is versions
            docs, vers = self._version_arrays(versions)
            if not seen:  # (a dict made for one question, e.g. some documents': its hits only)
                return self._matches(rows, docs, vers)
            mask = self._matches(np.arange(self._max_id + 1), docs, vers)
        self._mask = (versions, mask)
        return mask[rows]

    def _follow(self, held: tuple[dict, np.ndarray], versions: dict[int, int]) -> np.ndarray | None:
        """The held mask made for `versions`, or None when they differ by more than a few documents."""
        last, mask = held
        if abs(len(last) - len(versions)) > _FOLLOW_DOCS:
            return None
        changed = [d for d, _ in versions.items() - last.items()] + list(last.keys() - versions.keys())
        if len(changed) > _FOLLOW_DOCS:
            return None
        top = self._max_id + 1
        if len(mask) < top:
            look = [np.arange(len(mask), top)]  # the rows added since
            mask = np.concatenate([mask, np.zeros(top - len(mask), dtype=bool)])
        else:
            mask, look = mask.copy(), []
        if changed:
            look.append(np.nonzero(np.isin(self._doc[:top], np.array(changed, dtype=np.int64)))[0])
        for at in look:
            mask[at] = [versions.get(d) == v for d, v in zip(self._doc[at].tolist(), self._ver[at].tolist())]
        return mask

    def _matches(self, rows: np.ndarray, docs: np.ndarray, vers: np.ndarray) -> np.ndarray:
        at = np.minimum(np.searchsorted(docs, self._doc[rows]), len(docs) - 1)
        return (docs[at] == self._doc[rows]) & (vers[at] == self._ver[rows])

    def scores(self, query: str, limit: int | None = None,
               versions: dict[int, int] | None = None) -> list[tuple[int, int, int, float]]:
        """(document number, version number, ordinal, BM25) of the live rows sharing a bigram with the query,
        best first: the best `limit` (all when None), of the given document versions only when `versions`
        ({document number: version number}, e.g. the committed ones) is given. What is derived from a versions dict
        is kept while the same dict is passed: a caller must not change one it has passed, but pass another."""
        docs, vers, ords, scores = self.score_arrays(query, limit, versions)
        return list(zip(docs.tolist(), vers.tolist(), ords.tolist(), scores.tolist()))

    def score_arrays(self, query: str, limit: int | None = None, versions: dict[int, int] | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """What `scores` gives, as four arrays (document numbers, version numbers, ordinals, float32 BM25)."""
        toks = list(dict.fromkeys(bigrams(query)))
        none = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
        with self._lock:
            if not self._live or not toks:
                return none
            avgdl = self._total / self._live
            acc = np.zeros(len(self._length), dtype=np.float32)  # bm25s's precision: the same scores, the same ties
            for term in toks:
                ids, tfs = self._postings(term)
                if not len(ids):
                    continue
                idf = math.log(1 + (self._live - len(ids) + 0.5) / (len(ids) + 0.5))
                norm = K1 * (1 - B + B * self._length[ids] / avgdl)
                acc[ids] += (idf * tfs / (tfs + norm)).astype(np.float32)  # (a row is once in a term's postings)
            hit = np.nonzero(acc > 0)[0]
            if versions is not None:  # each row's document looked up among the wanted ones, then its version
                if not versions:
                    return none
                hit = hit[self._of_versions(hit, versions)]
            if limit is not None and len(hit) > limit:
                hit = hit[np.argpartition(-acc[hit], limit - 1)[:limit]]
            hit = hit[np.argsort(-acc[hit], kind="stable")]
            return self._doc[hit], self._ver[hit], self._ordinal[hit], acc[hit]
