"""What fusion works on: a question's candidate chunks, each with every raw signal, and the weights that sum the
per-query normalised signals into one score (fitted on folds by calibration.py; answering ranks the same way)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ingest.schema import Chunk


def coverage(terms: list[str], text: str, idf=lambda t: 1.0) -> float:
    """IDF-weighted share of the query's content bigrams found in the text: the evidence measure.
    Weighting by IDF means a missing rare word (one the corpus never uses, like 'GDP') counts most."""
    if not terms:
        return 0.0
    low = text.lower()
    total = sum(idf(t) for t in terms)
    return sum(idf(t) for t in terms if t in low) / total if total else 0.0


@dataclass
class Weights:
    """How the per-query normalised signals are summed into the fused score (fitted on folds: calibrate)."""

    dense: float = 0.3
    sentence: float = 0.4
    lexical: float = 0.3
    article: float = 0.5  # a chunk of an article the question names (第十六条)
    title: float = 0.0  # the question names the chunk's document ("河南的…条例", "讲话里", "国务院的…")
    expansion: float = 0.15  # BM25 of the official words the question's everyday words stand for
    phrase: float = 0.0  # the longest run of the question's own characters found verbatim in the chunk

    def vector(self) -> np.ndarray:
        return np.array([getattr(self, name) for name in SIGNALS], dtype=np.float64)


# The signals every candidate is scored by, in the order of Weights.vector() and Pool.matrix().
SIGNALS = ("dense", "sentence", "lexical", "article", "title", "expansion", "phrase")
LIST_MARK = "、"  # the enumeration comma: it joins the items of one list


def longest_phrase(query: str, text: str) -> int:
    """Length of the longest run of the question's characters that joins items with 、 and that the text holds
    verbatim ("交通、能源、水利"), 0 if none: the same items listed in the same order say more than the words
    found apart. Runs without 、 are left to bigram BM25: they mostly repeat names (a title, a 工作) that many
    chunks share. Linear in the question: for each end, the longest run ending there that the text holds."""
    q, low = "".join(query.lower().split()), text.lower()
    if LIST_MARK not in q:
        return 0
    best, i = 0, 0
    for j in range(len(q)):
        while i <= j and q[i:j + 1] not in low:
            i += 1
        # a 、 strictly inside the run: an item on each side of it
        if j - i + 1 > best and LIST_MARK in q[i + 1:j]:
            best = j - i + 1
    return best


@dataclass
class Candidate:
    """A chunk with every retriever's raw score for one query."""

    chunk: Chunk
    dense: float = 0.0
    lexical: float = 0.0
    expansion: float = 0.0  # BM25 of the expansions alone: a guess at the meaning, weighted on its own
    sentence: float | None = None
    article: float = 0.0
    title: float = 0.0  # share of the question's words found in the document's title and issuer
    phrase: float = 0.0  # longest_phrase of the question in the chunk


@dataclass
class Pool:
    """Everything retrieval knows about one query before ranking: fitting weights re-ranks a pool, it never
    embeds again."""

    query: str
    vector: np.ndarray
    terms: list[str]
    expanded: list[str]
    candidates: dict[str, Candidate]
    sentence_background: list[float]  # the query's top sentence cosines over the whole index
    dense_background: list[float]  # the query's top chunk cosines over the whole index
    follows: dict[str, str] = field(default_factory=dict)  # a chunk that completes a lead-in -> the lead-in's chunk
    absent_articles: list[str] = field(default_factory=list)  # articles the question names that no candidate has

    _signals: dict | None = None

    def invalidate(self) -> None:
        self._signals = None

    def signals(self) -> dict[str, dict[str, float]]:
        """Each signal normalised per query to 0-1 over the pool (min-max), so weights mean the same for
        every question: a BM25 score of 40 or of 4 says nothing until set against the query's other scores."""
        if self._signals is None:
            self._signals = self._normalise()
        return self._signals

    def _normalise(self) -> dict[str, dict[str, float]]:
        floor = min(self.sentence_background, default=0.0)
        raw = {name: {k: getattr(c, name) for k, c in self.candidates.items()} for name in SIGNALS}
        raw["sentence"] = {k: c.sentence if c.sentence is not None else floor for k, c in self.candidates.items()}
        out = {}
        for name, vals in raw.items():
            lo, hi = min(vals.values(), default=0.0), max(vals.values(), default=0.0)
            out[name] = {k: (v - lo) / (hi - lo) if hi > lo else (1.0 if hi > 0 else 0.0) for k, v in vals.items()}
        return out

    def matrix(self) -> tuple[list[str], np.ndarray]:
        """The candidates' keys and their normalised signals, one row each in SIGNALS order."""
        sig = self.signals()
        keys = list(self.candidates)
        return keys, np.array([[sig[name][k] for name in SIGNALS] for k in keys], dtype=np.float64).reshape(-1, len(SIGNALS))

    def fused(self, weights: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Fused scores of every candidate under each row of weights (candidates x rows). A chunk that completes
        a lead-in ranks at least just below it: the list is what the lead-in announces."""
        keys, m = self.matrix()
        # element-wise, not a matrix product: one weight row or the whole grid, each score is summed the same
        # way, so fitting ranks exactly as answering does
        fused = (m[:, None, :] * weights[None, :, :]).sum(axis=-1)
        pos = {k: i for i, k in enumerate(keys)}
        # The article a question names, of the one document it names (mark 1.0), is what it asks for: it ranks
        # first, whatever else shares the question's words ("…条例第四十八条" against 第四条, 第四十四条 of the same
        # title), its chunks in their own order. Not when several documents' articles are marked (no title named).
        named = [pos[k] for k, c in self.candidates.items() if c.article >= 1.0 and k in pos]
        if named and len({self.candidates[keys[i]].chunk.doc_id for i in named}) == 1:
            fused[named] += fused.max(axis=0) - fused[named].min(axis=0) + 1e-6
        for key, lead in self.follows.items():
            if key in pos and lead in pos:
                fused[pos[key]] = np.maximum(fused[pos[key]], fused[pos[lead]] - 1e-6)
        return keys, fused

    def rank(self, w: Weights) -> list[tuple[str, float]]:
        keys, fused = self.fused(w.vector()[None, :])
        fused = fused[:, 0]
        order = np.argsort(-fused, kind="stable")  # ties keep the candidates' order
        return [(keys[i], float(fused[i])) for i in order]


EVEN_MIX = Weights(0.5, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0)  # dense and BM25 alike: what joins a pool fits nothing
