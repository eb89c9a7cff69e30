"""BM25 over character bigrams, persisted beside the Chroma index."""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import logging
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path


log = logging.getLogger(__name__)
CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+|[A-Za-z]+|\d+(?:\.\d+)?%?")


@contextlib.contextmanager
def _locked(directory: Path, mode: int):
    """A file lock beside a saved index (exclusive to swap it in, shared to read it)."""
    with open(directory.with_name(f"{directory.name}.lock"), "a+") as lock:
        fcntl.flock(lock, mode)
        yield


def _bm25s():
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG (after import)
    return bm25s


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


class LexicalIndex:
    """A bm25s index over chunk texts, tagged with the fingerprint of the committed documents it covers."""

    def __init__(self, ids: list[str], texts: list[str], fingerprint: str) -> None:
        bm25s = _bm25s()
        self.ids, self.fingerprint = ids, fingerprint
        self.bm25 = bm25s.BM25()
        tokens = [bigrams(t) or ["\u0000"] for t in texts]
        self.df: dict[str, int] = {}
        for toks in tokens:
            for t in set(toks):
                self.df[t] = self.df.get(t, 0) + 1
        if ids:
            self.bm25.index(tokens, show_progress=False)

    def idf(self, term: str) -> float:
        """Inverse document frequency; a term the corpus never uses weighs the most."""
        n = len(self.ids)
        return math.log((n + 1) / (self.df.get(term, 0) + 0.5))

    def search(self, query: str, n: int) -> list[tuple[str, float]]:
        """(chunk_id, score) best first; empty when no query bigram is in the index."""
        toks = bigrams(query)
        if not self.ids or not toks:
            return []
        vocab = self.bm25.vocab_dict
        toks = [t for t in toks if t in vocab]
        if not toks:
            return []
        docs, scores = self.bm25.retrieve([toks], k=min(n, len(self.ids)), show_progress=False, n_threads=1)
        return [(self.ids[int(d)], float(s)) for d, s in zip(docs[0], scores[0]) if s > 0]

    def scores(self, query: str) -> dict[str, float]:
        """BM25 score of every chunk that shares a bigram with the query, by chunk id: so a candidate found by
        another retriever gets its lexical score too, not a 0 for being outside the lexical top n."""
        if not self.ids:
            return {}
        vocab = self.bm25.vocab_dict
        toks = list(dict.fromkeys(t for t in bigrams(query) if t in vocab))
        if not toks:
            return {}
        s = self.bm25.get_scores(toks)
        nz = s.nonzero()[0]
        return {self.ids[int(i)]: float(s[i]) for i in nz}

    def save(self, directory: Path) -> None:
        """Write atomically: a reader sees the old index or the new one, never half of each."""
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".lexical-", dir=directory.parent))
        if self.ids:
            self.bm25.save(str(tmp), show_progress=False)
        (tmp / "meta.json").write_text(json.dumps({"fingerprint": self.fingerprint, "ids": self.ids, "df": self.df}, ensure_ascii=False))
        # The swap is two renames: savers in other threads and processes take turns (a file lock), so no two
        # interleave; a unique name for the old copy keeps leftovers of a killed saver out of the way.
        old = directory.with_name(f"{directory.name}.old-{os.getpid()}-{tmp.name[-8:]}")
        with _locked(directory, fcntl.LOCK_EX):
            if directory.exists():
                os.replace(directory, old)
            os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, directory: Path) -> "LexicalIndex | None":
        """The saved index, or None when there is none or it cannot be read (then the caller rebuilds)."""
        try:
            with _locked(directory, fcntl.LOCK_SH):  # not between a saver's two renames
                return cls._load(directory)
        except OSError:  # no directory to hold the lock file: nothing saved
            return None

    @classmethod
    def _load(cls, directory: Path) -> "LexicalIndex | None":
        try:
            meta = json.loads((directory / "meta.json").read_text())
            obj = cls.__new__(cls)
            obj.ids, obj.fingerprint, obj.df = meta["ids"], meta["fingerprint"], meta["df"]
            bm25s = _bm25s()
            obj.bm25 = bm25s.BM25.load(str(directory)) if obj.ids else bm25s.BM25()
            return obj
        except (OSError, ValueError, KeyError) as e:
            log.info("lexical index at %s not usable (%s); it will be rebuilt", directory, e)
            return None




class LexicalCache:
    """The BM25 lifecycle of one store, apart from the store: the index for exactly the committed documents,
    loaded from its directory when it is current there, rebuilt when the store's fingerprint has moved (one
    rebuild at a time per process; saves across processes take turns in `LexicalIndex.save`).

    `rows()` gives (chunk_id, text) of every committed chunk and `fingerprint()` names the committed set; a
    store with an incremental index would replace `rebuild` and nothing else."""

    def __init__(self, directory: Path, rows, fingerprint) -> None:
        self.directory, self.rows, self.fingerprint = Path(directory), rows, fingerprint
        self._index: LexicalIndex | None = None
        self._lock = threading.RLock()

    def current(self) -> LexicalIndex:
        fp, lex = self.fingerprint(), self._index
        if lex is not None and lex.fingerprint == fp:
            return lex
        with self._lock:  # concurrent requests after a commit: one rebuilds, the others wait and reuse it
            fp, lex = self.fingerprint(), self._index
            if lex is not None and lex.fingerprint == fp:
                return lex
            lex = LexicalIndex.load(self.directory)
            if lex is None or lex.fingerprint != fp:
                return self.rebuild()
            self._index = lex
            return lex

    def rebuild(self) -> LexicalIndex:
        with self._lock:
            fp = self.fingerprint()
            rows = self.rows()
            lex = LexicalIndex([i for i, _ in rows], [t for _, t in rows], fp)
            lex.save(self.directory)
            self._index = lex
            log.info("lexical index rebuilt: %d chunks", len(rows))
            return lex

    def forget(self) -> None:
        self._index = None
