"""Hybrid retrieval: dense (Chroma) + sentence vectors + BM25 over character bigrams, every candidate scored by every signal, fused on per-query normalised scores -> passages."""
from __future__ import annotations

import functools
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Mapping, Protocol

import numpy as np

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from ingest.chunk import LEAD_IN, chinese_number, references
from ingest.embed import Embedder
from ingest.lexical import bigrams
from ingest.schema import IndexEmpty
from ingest.store import NO_SCORES, Store, chunk_key

from .pool import Candidate, EVEN_MIX, Pool, Weights, coverage, longest_phrase
from .lexicon import (PENALTY_CUE, QUESTION_PHRASES, QUESTION_WORDS, expansions, named_source, to_simplified,
                      without_format_instructions)

log = logging.getLogger(__name__)
_QSTOP = set(QUESTION_WORDS)


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
    score: float  # fused score (weighted sum of the per-query normalised signals)
    dense: float = 0.0  # cosine similarity of the chunk to the question
    lexical: float = 0.0  # BM25 score of the question's own words
    coverage: float = 0.0  # IDF-weighted share of the query's content bigrams present in the passage
    sentence: float = 0.0  # cosine similarity of the passage's closest sentence
    chunk_ids: list[str] = field(default_factory=list)
    # (char_start, char_end, cosine) of the passage's indexed sentences, absolute offsets; for answer selection
    sentence_scores: list[tuple[int, int, float]] = field(default_factory=list)

    @property
    def section_path(self) -> str:
        return " > ".join(self.section)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["section_path"] = self.section_path
        return d


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


MAX_QUERY_CHARS = 512
ARTICLE_REF = re.compile(r"第[一二三四五六七八九十百千零〇两\d]+条")
# An article none of the candidates' documents has, in a question naming no title: the documents that have it join
# when they are at most this many (every statute of a large index has a 第九条: then none, the question is too vague)
ARTICLE_DOCS = 20
_DIGITS = "零一二三四五六七八九"


def _chinese(n: int) -> str:
    """1-9999 as statutes number articles: 十, 十一, 二十, 一百零五, 一百一十."""
    out = ""
    for value, unit in ((1000, "千"), (100, "百"), (10, "十")):
        d, n = divmod(n, value)
        if d:
            out += ("" if value == 10 and d == 1 and not out else _DIGITS[d]) + unit
        elif out and n:
            out += "零" if not out.endswith("零") else ""
    return out + (_DIGITS[n] if n else "")


def article_forms(ref: str) -> set[str]:
    """An article's number as the question wrote it and in the other way of writing it: 第20条 and 第二十条,
    第一百零五条 and 第105条 (statutes write the one; a document may number its articles in digits)."""
    m = re.fullmatch(r"第(\d{1,4}|[一二三四五六七八九十百千零〇两]+)条", ref)
    if not m:
        return {ref}
    n = int(m[1]) if m[1].isdigit() else chinese_number(m[1])
    if not n or not 0 < n < 10_000:
        return {ref}
    return {ref, f"第{_chinese(n)}条", f"第{n}条"}


def in_statute_numbers(text: str) -> str:
    """第20条 written as statutes write it, 第二十条: what the lexical and vector searches then match."""
    return re.sub(r"第(\d{1,4})条", lambda m: f"第{_chinese(int(m[1]))}条" if 0 < int(m[1]) < 10_000 else m[0], text)


class HybridRetriever:
    """Chunk vectors, sentence vectors and BM25 (with everyday->official expansions) give candidates; every
    candidate is scored by every signal, normalised per query, and fused by weights; adjacent chunks merge."""

    def __init__(self, index: Store, embedder: Embedder, k: int = 5, candidates: int = 30,
                 reranker: Reranker | None = None, merge_adjacent: bool = True, weights: Weights | None = None) -> None:
        self.index, self.embedder = index, embedder
        self.k, self.candidates = k, candidates
        self.reranker, self.merge_adjacent = reranker, merge_adjacent
        self.weights = weights or Weights()
        # Questions are embedded here while the asking thread scores BM25, and the sentence search runs here while
        # it searches chunks: the model and Chroma release the GIL, so on a free core the two overlap (a worker per
        # likely concurrent question: a thread made per question costs more)
        self._workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="retrieve")

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

    def gather(self, query: str, doc_ids: list[str] | None = None, issuer: str | None = None) -> Pool:
        """Candidates from the three retrievers (plus a named article's chunks), each with all raw scores."""
        self.require_documents()
        # The edges bound what users send; this bounds what any caller can make the embedder and BM25 do (e5
        # reads 512 tokens, about as many Chinese characters).
        query = in_statute_numbers(without_format_instructions(to_simplified(query[:MAX_QUERY_CHARS])))
        allowed = self._doc_filter(doc_ids, issuer)
        if allowed is None:  # a question that says where its answer is ("讲话里…") is answered from there
            named = named_source(query, self.index.documents())
            allowed = {named.doc_id} if named else None
        expanded = expansions(query)
        embedding = self._workers.submit(self.embedder.embed_query, query)
        nothing_allowed = allowed is not None and not allowed

        def lexical(text: str) -> Mapping[str, float]:
            return self.index.lexical_scores(text, allowed) if text.strip() and not nothing_allowed else NO_SCORES
        lex, exp = lexical(query), lexical(" ".join(expanded))
        vector = embedding.result()
        pool = Pool(query, vector, query_terms(query), expanded, {}, [], [])
        if nothing_allowed:
            return pool
        n = self.candidates
        cands = pool.candidates
        # the two vector searches at once (with a Chroma server each is an HTTP call)
        sentence_search = self._workers.submit(self.index.dense_sentences, vector, n * 3, allowed)
        for h in self.index.dense(vector, n, allowed):
            cands[chunk_key(h.chunk.doc_id, h.chunk.ordinal)] = Candidate(h.chunk, dense=h.score)
        pool.dense_background = sorted((c.dense for c in cands.values()), reverse=True)
        sentence_hits = sentence_search.result()
        pool.sentence_background = sorted((h.score for h in sentence_hits), reverse=True)
        best_sentence: dict[str, float] = {}
        for h in sentence_hits:
            best_sentence[h.chunk_key] = max(best_sentence.get(h.chunk_key, -1.0), h.score)
        lex_top, exp_top = lex.top(n), exp.top(n // 2)
        sent_top = sorted(best_sentence, key=lambda k: -best_sentence[k])[:n]
        missing = [k for k in dict.fromkeys(lex_top + exp_top + sent_top) if k not in cands]
        for key, chunk in self.index.chunks_by_key(missing).items():
            cands[key] = Candidate(chunk)
        self._add_named_articles(pool, allowed)
        # A sentence in the overlap of two chunks is stored once, under the first: credit every candidate chunk
        # that holds its span, so the second chunk is not scored as if it had no close sentence.
        by_doc: dict[str, list] = {}
        for h in sentence_hits:
            by_doc.setdefault(h.sentence.doc_id, []).append(h)
        for key, cand in cands.items():
            c = cand.chunk
            for h in by_doc.get(c.doc_id, ()):
                if c.char_start <= h.sentence.char_start and h.sentence.char_end <= c.char_end:
                    best_sentence[key] = max(best_sentence.get(key, -1.0), h.score)
        self._score(pool, list(cands), lex, exp, best_sentence)
        added = self._add_continuations(pool)
        if added:  # scored before referrers are picked: an unscored list chunk must not take a top slot there
            self._score(pool, added, lex, exp, best_sentence)
        if PENALTY_CUE.search(query):
            added = self._add_referrers(pool)
            self._score(pool, added, lex, exp, best_sentence)
        return pool

    def _add_named_articles(self, pool: Pool, allowed: set[str] | None) -> None:
        """"第十一条" names an addressable unit: its chunks join, the document the question names first. Every
        document has a 第九条: the one whose title the question names best is the one meant (1.0); the others stay
        candidates, well below (0.3 at most). The documents among the candidates are looked in first: a question
        naming a document brings its chunks there (their indexed text carries the title and article), and every
        document's 第九条 is thousands of rows in a large index. When none of them has it, the documents allowed that
        have it are found from their layouts (no row read): it is not absent, and those whose title the question
        names best join (with no title named, all of them up to ARTICLE_DOCS)."""
        cands = pool.candidates
        docs = {c.chunk.doc_id for c in cands.values()}
        scope = docs if allowed is None else docs & allowed
        refs = list(dict.fromkeys(ARTICLE_REF.findall(pool.query)))
        found = set()
        for ref in refs:
            forms = article_forms(ref)
            arts = [c for f in forms for c in self.index.article_chunks(f, scope)] if scope else []
            if not arts:  # none of the candidates' documents has it: which documents allowed have it? Of those,
                # the ones whose title the question names best join (every statute of a large index has a 第九条)
                having = set().union(*(self.index.article_documents(f, allowed) for f in forms))
                every = self.index.documents()
                titled = {d: coverage(pool.terms, every[d].title) for d in having if d in every}
                top = max(titled.values(), default=0.0)
                meant = {d for d, v in titled.items() if v == top} if top > 0 or len(having) <= ARTICLE_DOCS else set()
                arts = [c for f in forms for c in self.index.article_chunks(f, meant)] if meant else []
                if having:
                    found.add(ref)
            if arts:
                found.add(ref)
            named = {c.doc_id: coverage(pool.terms, c.title) for c in arts}
            best = max(named.values(), default=0.0)
            for c in arts:
                key = chunk_key(c.doc_id, c.ordinal)
                mark = 1.0 if best > 0 and named[c.doc_id] == best else 0.3 * (named[c.doc_id] / best if best else 1.0)
                cand = cands.setdefault(key, Candidate(c))
                cand.article = max(cand.article, mark)
        if refs and not found:  # (“第二百条” of a statute of ninety articles: retrieval would offer others)
            pool.absent_articles = refs

    def _score(self, pool: Pool, keys: list[str], lex: Mapping[str, float], exp: Mapping[str, float],
               best_sentence: dict[str, float]) -> None:
        """Every candidate gets every score: the dense cosine from its stored vector, BM25 from the full scores,
        its best sentence, how well the question names its document."""
        cands = pool.candidates
        no_dense = [k for k in keys if cands[k].dense == 0.0]
        for key, vec in self.index.chunk_vectors(no_dense).items():
            cands[key].dense = float(vec @ pool.vector)
        docs = self.index.documents()
        terms = pool.terms + [t for t in query_terms(" ".join(pool.expanded)) if t not in pool.terms]
        titles = {d: coverage(terms, f"{docs[d].title} {docs[d].issuer}") if d in docs else 0.0
                  for d in {cands[k].chunk.doc_id for k in keys}}
        for key in keys:
            c = cands[key]
            c.lexical, c.expansion = lex.get(key, 0.0), exp.get(key, 0.0)
            c.sentence = best_sentence.get(key)
            c.title = titles[c.chunk.doc_id]
            c.phrase = float(longest_phrase(pool.query, c.chunk.text))
        pool.invalidate()

    def _add_continuations(self, pool: Pool, head: int = 3) -> list[str]:
        """A best candidate that ends by announcing a list ("…主要体现在四个方面：") is completed by the chunk
        after it, which holds the list: that chunk joins the pool and ranks at least just below it. 'Best' is
        the even mix, as for referrers (a pool must not depend on a fit)."""
        follow: dict[str, str] = {}
        for key, _ in pool.rank(EVEN_MIX)[:head]:
            c = pool.candidates[key].chunk
            if LEAD_IN.search(c.text):
                follow[chunk_key(c.doc_id, c.ordinal + 1)] = key
        added: list[str] = []
        new = [k for k in follow if k not in pool.candidates]
        for key, chunk in self.index.chunks_by_key(new).items():
            pool.candidates[key] = Candidate(chunk)
            added.append(key)
        pool.follows.update({k: lead for k, lead in follow.items() if k in pool.candidates})
        pool.invalidate()
        return added

    def _add_referrers(self, pool: Pool, head: int = 3) -> list[str]:
        """A question about consequences: the articles that refer to the best candidates' articles ("违反本条例
        第十六条…处…罚款") join the pool, flagged like a named article, so the fine is found with the duty.
        'Best' here is the even mix of dense and BM25, not the fitted weights: what joins a pool must not
        depend on a fit (cross-validation builds pools once, before fitting)."""
        added: list[str] = []
        ranked = [pool.candidates[k] for k, _ in pool.rank(EVEN_MIX)[:head]]
        for cand in ranked:
            art = cand.chunk.article
            if not art:
                continue
            for c in self.index.chunks_mentioning(cand.chunk.doc_id, art):
                if art in references(c.text, c.article):
                    key = chunk_key(c.doc_id, c.ordinal)
                    if key not in pool.candidates:
                        pool.candidates[key] = Candidate(c)
                        added.append(key)
                    pool.candidates[key].article = max(pool.candidates[key].article, 0.75)
        pool.invalidate()
        return added

    def search(self, query: str, k: int | None = None, doc_ids: list[str] | None = None,
               issuer: str | None = None) -> list[Passage]:
        """The top k passages for the query, best first."""
        return self.passages(self.gather(query, doc_ids, issuer), k)

    def passages(self, pool: Pool, k: int | None = None, weights: Weights | None = None) -> list[Passage]:
        """Rank a pool with the weights and turn the head into passages (merged, with sentence scores)."""
        k = k or self.k
        order = pool.rank(weights or self.weights)
        if self.reranker is not None and order:
            head = order[: max(k * 3, 10)]
            rs = self.reranker.scores(pool.query, [pool.candidates[key].chunk.text for key, _ in head])
            order = [item for _, item in sorted(zip(rs, head), key=lambda p: -p[0])] + order[len(head):]
        idf = self.index.lexical().idf
        terms = pool.terms + [t for t in query_terms(" ".join(pool.expanded)) if t not in pool.terms]
        floor = min(pool.sentence_background, default=0.0)
        passages = []
        for key, fused in order[: k * 2 if self.merge_adjacent else k]:
            cand = pool.candidates[key]
            c = cand.chunk
            passages.append(Passage(0, c.doc_id, c.title, c.section, c.article, c.text, c.char_start, c.char_end,
                                    fused, cand.dense, cand.lexical,
                                    coverage(terms, c.title + c.section_path + c.article + c.text, idf),
                                    cand.sentence if cand.sentence is not None else floor, [key]))
        if self.merge_adjacent:
            passages = self._merge(passages)
        passages = passages[:k]
        for n, p in enumerate(passages, 1):
            p.n = n
        self._score_sentences(passages, pool.vector)
        return passages

    def _score_sentences(self, passages: list[Passage], vector: np.ndarray) -> None:
        """Attach each passage's sentence cosines (stored vectors: no embedding at question time)."""
        stored = self.index.sentence_vectors([(p.doc_id, p.char_start, p.char_end) for p in passages])
        for p, sentences in zip(passages, stored):
            p.sentence_scores = sorted((x.char_start, x.char_end, float(vec @ vector)) for x, vec in sentences)
            if p.sentence_scores:
                p.sentence = max(p.sentence, max(x[2] for x in p.sentence_scores))

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
            host.coverage, host.sentence = max(host.coverage, p.coverage), max(host.sentence, p.sentence)
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


