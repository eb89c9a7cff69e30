"""Hybrid retrieval: dense (Chroma) + BM25 over character bigrams -> reciprocal rank fusion -> passages."""
from __future__ import annotations

import functools
import logging
import re
from dataclasses import asdict, dataclass, field
from typing import Protocol

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from ingest.embed import Embedder
from ingest.lexical import bigrams
from ingest.schema import IndexEmpty
from ingest.store import ChromaIndex, Hit

log = logging.getLogger(__name__)

# Bigrams of question words carry no evidence: "哪些" matching a passage says nothing about relevance.
QUESTION_WORDS = ("什么", "哪些", "多少", "如何", "怎么", "怎样", "是否", "为什么", "哪个", "哪里", "几个", "是多", "少个",
                  "请问", "规定", "要求", "包括", "应当", "主要", "提出", "根据", "关于", "我们", "有关", "可以", "的是")
_QSTOP = set(QUESTION_WORDS)


QUESTION_PHRASES = re.compile(r"(被称为|称为|指的是|是指|什么意思|意思|所说的|所说|有何|何时|哪天|哪年|多长时间|多久|是什么|是多少|有哪些|包括哪些|是哪些|有什么|是否|为什么|怎么样|怎么|怎样|如何|多少|哪些|什么"
                              r"|哪个|哪里|几个|几项|请问|分别|吗|呢|了)")


def query_terms(text: str) -> list[str]:
    """The query's content bigrams (question words removed), deduplicated in order."""
    seen: dict[str, None] = {}
    for t in bigrams(QUESTION_PHRASES.sub(" ", text)):
        # 的 is a particle: its bigrams ("点的", "的目") straddle words and match by accident.
        if t not in _QSTOP and not (len(t) == 2 and any(ch in t for ch in "吗呢么的")):
            seen.setdefault(t, None)
    return list(seen)


@dataclass
class Passage:
    """A retrieved span with its provenance and scores; `n` is its 1-based rank in the answer's sources."""

    n: int
    doc_id: str
    title: str
    section: list[str]
    article: str
    text: str
    char_start: int
    char_end: int
    score: float  # fused RRF score
    dense: float = 0.0  # cosine similarity (0 when only BM25 found it)
    lexical: float = 0.0  # BM25 score (0 when only the dense retriever found it)
    coverage: float = 0.0  # share of the query's content bigrams present in the passage
    chunk_ids: list[str] = field(default_factory=list)

    @property
    def section_path(self) -> str:
        return " > ".join(self.section)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["section_path"] = self.section_path
        return d


def rrf(rankings: list[list[str]], k: int = 60) -> dict[str, float]:
    """Reciprocal rank fusion: sum of 1/(k + rank). k=60 is the constant of Cormack et al. (2009); it damps
    the head of each list so that agreement between retrievers beats a single first place."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, 1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    return scores


class Reranker(Protocol):
    def scores(self, query: str, texts: list[str]) -> list[float]: ...


@functools.lru_cache(maxsize=2)
def _cross_encoder(path: str):
    from sentence_transformers import CrossEncoder

    return CrossEncoder(path, device="cpu", local_files_only=True)


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder (e.g. bge-reranker) from a local directory."""

    def __init__(self, path: str) -> None:
        self.model = _cross_encoder(path)

    def scores(self, query: str, texts: list[str]) -> list[float]:
        return [float(s) for s in self.model.predict([(query, t) for t in texts])]


ARTICLE_REF = re.compile(r"第[一二三四五六七八九十百零〇两\d]+条")


def coverage(terms: list[str], text: str, idf=lambda t: 1.0) -> float:
    """IDF-weighted share of the query's content bigrams found in the text: the evidence measure.
    Weighting by IDF means a missing rare word (one the corpus never uses, like 'GDP') counts most."""
    if not terms:
        return 0.0
    low = text.lower()
    total = sum(idf(t) for t in terms)
    return sum(idf(t) for t in terms if t in low) / total if total else 0.0


class HybridRetriever:
    """Dense + BM25 candidates, fused; optional reranking and merging of adjacent chunks."""

    def __init__(self, index: ChromaIndex, embedder: Embedder, k: int = 5, candidates: int = 30, rrf_k: int = 60,
                 reranker: Reranker | None = None, merge_adjacent: bool = True) -> None:
        self.index, self.embedder = index, embedder
        self.k, self.candidates, self.rrf_k = k, candidates, rrf_k
        self.reranker, self.merge_adjacent = reranker, merge_adjacent

    def require_documents(self) -> None:
        """Raise IndexEmpty (the edges turn it into a 503, a chat message, an exit code) when nothing is indexed."""
        if not self.index.documents():
            raise IndexEmpty("the index is empty: run `python app.py ingest docs/` first")

    def _doc_filter(self, doc_ids: list[str] | None, issuer: str | None) -> set[str] | None:
        if not doc_ids and not issuer:
            return None
        docs = self.index.documents()
        allowed = set(doc_ids) if doc_ids else set(docs)
        if issuer:
            allowed = {d for d in allowed if d in docs and issuer in docs[d].issuer}
        return allowed

    def search(self, query: str, k: int | None = None, doc_ids: list[str] | None = None,
               issuer: str | None = None) -> list[Passage]:
        """The top k passages for the query, best first."""
        self.require_documents()
        k = k or self.k
        allowed = self._doc_filter(doc_ids, issuer)
        if allowed is not None and not allowed:
            return []
        where = {"doc_id": {"$in": sorted(allowed)}} if allowed is not None else None
        idf = self.index.lexical().idf  # also brings BM25 in step with the committed documents, once per query
        dense = self.index.dense(self.embedder.embed_query(query), self.candidates, where)
        lexical = [h for h in self.index.lexical_search(query, self.candidates * (3 if allowed else 1))
                   if allowed is None or h.chunk.doc_id in allowed][: self.candidates]
        hits: dict[str, Hit] = {}
        dense_s: dict[str, float] = {}
        lex_s: dict[str, float] = {}
        for h in dense:
            key = f"{h.chunk.doc_id}:{h.chunk.ordinal}"
            hits[key], dense_s[key] = h, h.score
        for h in lexical:
            key = f"{h.chunk.doc_id}:{h.chunk.ordinal}"
            hits.setdefault(key, h)
            lex_s[key] = h.score
        rankings = [[f"{h.chunk.doc_id}:{h.chunk.ordinal}" for h in dense],
                    [f"{h.chunk.doc_id}:{h.chunk.ordinal}" for h in lexical]]
        for ref in dict.fromkeys(ARTICLE_REF.findall(query)):
            # "第十一条" names an addressable unit: its chunks form a third ranking, ordered by title match.
            arts = [c for c in self.index.article_chunks(ref) if allowed is None or c.doc_id in allowed]
            arts.sort(key=lambda c: -coverage(query_terms(query), c.title))
            for c in arts:
                hits.setdefault(f"{c.doc_id}:{c.ordinal}", Hit(c, 0.0))
            rankings.append([f"{c.doc_id}:{c.ordinal}" for c in arts])
        fused = rrf(rankings, self.rrf_k)
        order = sorted(fused, key=lambda key: -fused[key])
        if self.reranker is not None:
            head = order[: max(k * 3, 10)]
            rs = self.reranker.scores(query, [hits[key].chunk.text for key in head])
            order = [key for _, key in sorted(zip(rs, head), key=lambda p: -p[0])] + order[len(head):]
        terms = query_terms(query)
        passages = []
        for key in order[: k * 2 if self.merge_adjacent else k]:
            c = hits[key].chunk
            passages.append(Passage(0, c.doc_id, c.title, c.section, c.article, c.text, c.char_start, c.char_end,
                                    fused[key], dense_s.get(key, 0.0), lex_s.get(key, 0.0),
                                    coverage(terms, c.title + c.section_path + c.article + c.text, idf), [key]))
        if self.merge_adjacent:
            passages = self._merge(passages)
        passages = passages[:k]
        for n, p in enumerate(passages, 1):
            p.n = n
        return passages

    def _merge(self, passages: list[Passage]) -> list[Passage]:
        """Fold a passage into a better-ranked one when they are neighbouring chunks of the same section."""
        out: list[Passage] = []
        for p in passages:
            host = next((q for q in out if q.doc_id == p.doc_id and q.section == p.section and q.article == p.article
                         and p.char_start <= q.char_end + 1 and q.char_start <= p.char_end + 1), None)
            if host is None:
                out.append(p)
                continue
            doc = self.index.document(p.doc_id)
            host.char_start, host.char_end = min(host.char_start, p.char_start), max(host.char_end, p.char_end)
            host.text = doc.text[host.char_start:host.char_end] if doc else host.text
            host.dense, host.lexical = max(host.dense, p.dense), max(host.lexical, p.lexical)
            host.coverage = max(host.coverage, p.coverage)
            host.chunk_ids += p.chunk_ids
        return out


class PolicyRetriever(BaseRetriever):
    """The hybrid retriever as a LangChain BaseRetriever (metadata carries the provenance)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    hybrid: HybridRetriever
    k: int = 5

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[LCDocument]:
        out = []
        for p in self.hybrid.search(query, self.k):
            meta = p.to_dict()
            meta.pop("text")
            meta["section"] = p.section_path
            meta.pop("chunk_ids")
            out.append(LCDocument(page_content=p.text, metadata=meta))
        return out


