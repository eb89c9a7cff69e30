"""Assistant.ask(question, history) -> Answer: condense, retrieve, refuse or answer, verify citations."""
from __future__ import annotations

import copy
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from ingest.store import Store

from . import calibration as calib
from . import starters
from .answer import NO_SUCH_ARTICLE, NOT_STATED, QUOTES_HEADING, Answer, Answerer, ExtractiveAnswerer
from .llm import LLMAnswerer, make_chat_model
from .verify import missing_lead_figures, restates, verify
from .followups import CONDENSE_PROMPT, condense_rule, elliptical, history_lines, join_subject, user_turns
from .lexicon import holds_type, one_sentence_types, subject_words
from .retrieval import CrossEncoderReranker, HybridRetriever, Passage, query_terms
from .settings import Settings

log = logging.getLogger(__name__)


def _answers(question: str, quoted: str) -> bool:
    """Whether text quoted for a question that names no subject answers what it asks: one of its words, or the
    kind of fact it asks for (罚多少 an amount, 归谁管 a department), is in it ("天气怎么样？" after a question on
    dogs finds neither in the dog passages)."""
    low = quoted.lower()  # (query terms are lowercase)
    return (any(t in low for t in query_terms(question))
            or any(holds_type(t, quoted) for t in one_sentence_types(question)))


@dataclass
class Retrieval:
    """What one standalone question retrieved: passages, the extractive draft (what an answer would quote, and
    the passages it added for list items), the answerability signals and the probability they answer it."""

    passages: list[Passage]
    draft: list[str]
    draft_passages: list[Passage]
    signals: dict[str, float]
    probability: float
    absent_articles: list[str] = field(default_factory=list)  # named articles none of the documents has


@dataclass
class Event:
    """A streaming event: a token of the answer, then the verified Answer."""

    kind: str  # "token" | "answer"
    text: str = ""
    answer: Answer | None = None


class Assistant:
    """Questions in, cited answers out. Built once by build_assistant(settings)."""

    def __init__(self, retriever: HybridRetriever, answerer: Answerer, refusal: str,
                 calibration: calib.Calibration, condenser=None, draft: ExtractiveAnswerer | None = None,
                 max_concurrent: int = 0) -> None:
        self.retriever, self.answerer, self.refusal = retriever, answerer, refusal
        # Retrieval is CPU work: running more of it at once than there are cores only makes every question (and
        # the event loop's health checks, which need the GIL) wait longer. Extra questions queue here, asleep.
        # Four per core measured best on 2 cores (bench/load.py: 1 per core halves throughput, unbounded lets
        # /healthz p95 reach 1.6 s).
        self._cpu = threading.BoundedSemaphore(max_concurrent or 4 * (os.cpu_count() or 2))
        # The extractive answer is drafted for every question: in extractive mode it is the answer; in every
        # mode, whether it states the kind of fact asked for is an answerability signal.
        self.draft = answerer if isinstance(answerer, ExtractiveAnswerer) else (draft or ExtractiveAnswerer())
        self.use(calibration)
        self.condenser = condenser  # a LangChain chain for follow-ups when an LLM is configured
        self._chain = None  # built on first use (`chain`)

    def use(self, calibration: calib.Calibration) -> None:
        """Take fitted weights, answer-selection share and refusal model (cross-validation swaps them per fold)."""
        self.calibration = calibration
        self.retriever.weights = calibration.weights
        self.draft.semantic = calibration.answer_semantic

    def drafter(self, share: float) -> ExtractiveAnswerer:
        """The extractive answerer with another semantic share (fitting tries several)."""
        out = copy.copy(self.draft)
        out.semantic = share
        return out

    @property
    def index(self) -> Store:
        return self.retriever.index

    @property
    def threshold(self) -> float:
        """Below this probability of being answerable the assistant refuses, in every mode: a small model given
        weaker evidence answered on-topic questions the documents do not answer, and refused everyday ones they
        do (bench/llm_check.py, README)."""
        return self.calibration.threshold

    def documents(self) -> dict:
        """Committed documents by id (what the edges list and render sources from)."""
        return self.index.documents()

    def document(self, doc_id: str):
        """A committed document, with its text: one replaced since this process read the records has none (its
        record holds the new version's), and the store then reads them again."""
        doc = self.index.document(doc_id)
        if doc is not None and doc.length and not doc.text:
            doc = self.index.document(doc_id)
        return doc

    def chunks(self, doc_id: str) -> list:
        """A document's chunks in order, as (chunk id, Chunk)."""
        return self.index.all_chunks(doc_id)

    def cached_documents(self) -> dict | None:
        """The documents without touching the store (None before the first load): for health checks."""
        return self.index.cached_documents()

    def require_documents(self) -> None:
        """Raise the 'nothing indexed' error now (before a stream starts) rather than mid-answer."""
        self.retriever.require_documents()

    def search(self, question: str, k: int | None = None) -> list[Passage]:
        """The passages retrieval ranks for a question, without an answer."""
        return self.retriever.search(question, k)

    @property
    def embedder(self):
        return self.retriever.embedder

    def retrieve(self, question: str, k: int | None = None, doc_ids: list[str] | None = None,
                 issuer: str | None = None) -> Retrieval:
        """Passages for a standalone question, its draft answer and how likely they answer it."""
        pool = self.retriever.gather(question, doc_ids, issuer)
        passages = self.retriever.passages(pool, k)
        cited = list(passages)  # the draft appends the passages of list items it completes
        draft = list(self.draft.stream(pool.query, cited))
        signals = calib.features(pool.query, pool, passages, "".join(draft))
        probability = self.calibration.probability(signals)
        if not re.search(r"[\u3400-\u9fff]", pool.query) and not any(w in "".join(draft)
                                                                     for w in subject_words(pool.query)):
            # No Chinese at all, and what would be quoted holds none of the Chinese words of the question's subject
            # words: a cross-lingual cosine runs as high for "xxxxxxxx" or a question about the weather as for one
            # the documents answer, so it cannot tell.
            probability = 0.0
        if pool.absent_articles:  # the question names articles none of the documents it retrieved has
            probability = 0.0
        return Retrieval(passages, draft, cited, signals, probability, pool.absent_articles)

    def rewrites(self, question: str, history: Sequence) -> list[str]:
        """The question made standalone: the LLM's rewrite (when there is an LLM) and the offline rule's, distinct,
        the LLM's first. The one that retrieves with more evidence is asked (the chain's retrieve step): a small model's rewrite
        can drop what the rule keeps, and the rule can miss what the model resolves."""
        if not history:
            return [question]
        out = []
        if self.condenser is not None:
            lines = "\n".join(f"{'用户' if i % 2 == 0 else '助手'}：{t}" for i, t in enumerate(history_lines(history)))
            try:
                out.append(self.condenser.invoke({"history": lines, "question": question}).strip())
            except Exception as e:  # the LLM may be down; the rule still gives a usable question
                log.warning("condensing with the LLM failed (%s); using the offline rule", e)
        out.append(condense_rule(question, history))
        return [q for q in dict.fromkeys(out) if q] or [question]

    @property
    def chain(self):
        """The answer path as one LangChain (LCEL) chain: {"question", "history"?, "doc_ids"?, "issuer"?, "k"?} ->
        Answer, with invoke / batch / stream. A greeting or a request for a document's outline is answered from
        the documents' own titles and headings; anything else is made standalone and retrieved, refused below
        the calibrated gate, answered in the answerer's slot (the LLM, or the extractive quotes) and checked."""
        from langchain_core.runnables import RunnableBranch, RunnableLambda

        if self._chain is None:  # built once: two first callers at once would build equal chains
            answer = RunnableLambda(self._llm_answer if self.answerer is not self.draft else self._quoted_answer,
                                    name=self.answerer.mode)
            self._chain = (
                RunnableLambda(self._starter_step, name="starter")
                | RunnableBranch(
                    (lambda x: x["starter"] is not None, RunnableLambda(self._started, name="outline")),
                    RunnableLambda(self._retrieve_step, name="retrieve")
                    | RunnableBranch((lambda x: x["retrieval"][1].probability < self.threshold,
                                      RunnableLambda(self._refusal, name="refuse")),
                                     answer)))
        return self._chain

    def stream(self, question: str, history: Sequence = (), doc_ids: list[str] | None = None,
               issuer: str | None = None, k: int | None = None) -> Iterator[Event]:
        """The chain's Answer, its text in pieces (a sentence and its marks at a time) and then whole. Nothing
        streams before the check: a client cannot take back text it was sent."""
        t0 = time.perf_counter()
        answer = self.chain.invoke({"question": question, "history": history, "doc_ids": doc_ids,
                                    "issuer": issuer, "k": k, "t0": t0})
        for piece in re.findall(r"[^。！？\n]*[。！？\n]?(?:\[\d{1,2}\])*", answer.answer):
            if piece:
                yield Event("token", piece)
        yield Event("answer", answer=answer)

    # -- the chain's steps: each takes the state dict ----------------------------------------------------------
    def _starter_step(self, x: dict) -> dict:
        """The state plus its start time and `starter`: a greeting's or an outline's answer, else None."""
        return {**x, "t0": x.get("t0") or time.perf_counter(),
                "starter": self._starter(x["question"], x.get("doc_ids"), x.get("issuer"))}

    @staticmethod
    def _started(x: dict) -> Answer:
        answer = x["starter"]
        answer.timings_ms = {"total": round((time.perf_counter() - x["t0"]) * 1000, 1)}
        return answer

    def _retrieve_step(self, x: dict) -> dict:
        """The state plus `retrieval`: (the standalone question, what it retrieved, when). Of the rewrites, the
        one with more evidence. A question that names no subject ("罚多少？") takes the last question's when what
        that retrieves answers it (see _answers). Any other question is not joined, even when it is refused
        alone: joined, a question about something else ("明天天气怎么样？") retrieved the last question's passages
        and was answered with them, and no question of either set needed that (the cross-validated evaluation
        gave the same figures without it)."""
        question, history, k = x["question"], x.get("history") or (), x.get("k")
        doc_ids, issuer = x.get("doc_ids"), x.get("issuer")
        rewrites = self.rewrites(question, history)  # an LLM call: never while holding a CPU slot
        with self._cpu:
            tried = [(q, self.retrieve(q, k, doc_ids, issuer)) for q in rewrites]
            standalone, r = max(tried, key=lambda t: t[1].probability)  # the first of equals: the LLM's
            if standalone == question and user_turns(history) and elliptical(question):
                joined = join_subject(question, history)
                alt = self.retrieve(joined, k, doc_ids, issuer)
                if alt.probability >= self.threshold and _answers(question, "".join(alt.draft)):
                    standalone, r = joined, alt
        return {**x, "retrieval": (standalone, r, time.perf_counter())}

    def _finish(self, x: dict, answer: Answer) -> Answer:
        standalone, r, t1 = x["retrieval"]
        answer.standalone_question, answer.confidence = standalone, round(r.probability, 3)
        t0, t2 = x["t0"], time.perf_counter()
        answer.timings_ms = {"retrieve": round((t1 - t0) * 1000, 1), "answer": round((t2 - t1) * 1000, 1),
                             "total": round((t2 - t0) * 1000, 1)}
        return answer

    def _refusal(self, x: dict) -> Answer:
        """Below the gate: the refusal, and when the closest passages are on the topic but none states the kind
        of fact asked for, a note that lists them as reference only."""
        r = x["retrieval"][1]
        text = self.refusal
        if r.absent_articles:
            text = f"{self.refusal}{NO_SUCH_ARTICLE.format('、'.join(r.absent_articles))}"
        elif r.signals["type_missing"] and r.passages and r.probability >= self.threshold / 2:
            text = f"{self.refusal}{NOT_STATED}"
        return self._finish(x, Answer(x["question"], text, True, passages=r.passages, mode=self.answerer.mode))

    def _quoted_answer(self, x: dict) -> Answer:
        """Extractive mode: the draft, checked, is the answer."""
        r = x["retrieval"][1]
        return self._finish(x, verify(x["question"], "".join(r.draft), r.draft_passages, self.index.documents(),
                                      self.refusal, self.answerer.mode))

    def _llm_answer(self, x: dict) -> Answer:
        """LLM mode: the model reads the top passages (and those the draft quotes) under a deadline; its reply is
        shown only if it passes the check, otherwise the extractive answer is, with the reply kept."""
        question, (standalone, r, _) = x["question"], x["retrieval"]
        read = self.answerer.reads(r.draft_passages, "".join(r.draft))
        try:
            reply = "".join(self.answerer.stream(standalone, read))
        except Exception as e:  # down, refused, timed out: the user still gets the offline answer
            log.warning("the LLM failed (%s); answering extractively", e)
            reason = f"大模型不可用或超时 / the LLM failed: {type(e).__name__}: {str(e)[:200]}"
            return self._finish(x, self._extractive_instead(question, r, {"reason": reason, "answer": "",
                                                                          "unverified": []}))
        answer = verify(question, reply, read, self.index.documents(), self.refusal, self.answerer.mode)
        answer.passages = r.passages  # checked against what the model read; every retrieved passage is listed
        return self._finish(x, self._verified_or_extractive(question, answer, r))

    def _verified_or_extractive(self, question: str, answer: Answer, r: Retrieval) -> Answer:
        """An LLM answer is shown only when every claim cites, the cited passages bear it out and it keeps the
        figures of the sentence the extractive answer leads with (when that answer would be given); otherwise the
        user gets what extractive mode would give (its quotes, or its refusal when its gate would refuse), and
        the withheld answer travels in `replaced`. Never worse than offline."""
        if answer.refused:
            reason = "模型未作答，但检索到的段落可以回答 / the model declined; the passages answer"
        elif not answer.claims:
            reason = "没有可核实的陈述（只有引用标记或没有引用）/ no checkable claim (marks only, or nothing cited)"
        elif answer.unverified:
            reason = "有陈述未能在引用段落中核实 / claims the cited passages do not bear out"
        elif r.probability >= self.calibration.threshold and (
                dropped := missing_lead_figures(answer.answer, "".join(r.draft))):
            reason = f"漏掉了原文答案中的数字 / leaves out figures the quoted answer states: {'、'.join(dropped)}"
        else:
            return self._with_quotes(question, answer, r) if self.answerer.quotes else answer
        log.info("LLM answer replaced by the extractive one: %s", reason)
        return self._extractive_instead(question, r, {"reason": reason, "answer": answer.answer,
                                                      "unverified": answer.unverified})

    def _with_quotes(self, question: str, answer: Answer, r: Retrieval) -> Answer:
        """The model's answer, then under 原文 the sentences extractive mode quotes for the same retrieval: a small
        model's answer is short and may say 天 where the document says 日, and a reader who must trust it sees the
        documents' own words beside it. Both parts are checked; quotes that fail the check, or that the answer
        already says word for word, are left off."""
        quoted = verify(question, "".join(r.draft), r.draft_passages, self.index.documents(), self.refusal,
                        "extractive")
        if quoted.refused or quoted.unverified or not quoted.claims or restates(answer.answer, quoted.answer):
            return answer
        cites = {c.n: c for c in answer.citations} | {c.n: c for c in quoted.citations}  # the quote's exact span
        answer.answer = f"{answer.answer}\n\n{QUOTES_HEADING}\n{quoted.answer}"
        answer.citations = [cites[n] for n in sorted(cites)]
        answer.claims += quoted.claims
        return answer

    def _extractive_instead(self, question: str, r: Retrieval, withheld: dict) -> Answer:
        """What extractive mode gives for the same retrieval (its quotes, or its refusal when its gate refuses),
        marked `extractive-fallback`, with the reason and the withheld reply in `replaced`."""
        if r.probability >= self.calibration.threshold:
            out = verify(question, "".join(r.draft), r.draft_passages, self.index.documents(), self.refusal,
                         "extractive-fallback")
        else:
            out = Answer(question, self.refusal, True, passages=r.passages, mode="extractive-fallback")
        out.replaced = withheld
        return out

    def _starter(self, question: str, doc_ids: list[str] | None, issuer: str | None = None) -> Answer | None:
        """A greeting gets what can be asked; "这篇讲话的主要内容" gets the named document's outline from its own
        headings, each line cited and checked like any answer. None for everything else."""
        greeting = starters.is_greeting(question)
        if not (greeting or starters.WHOLE.search(question)):
            return None  # an ordinary question: no look at the documents on its path
        allowed = self.retriever._doc_filter(doc_ids, issuer)
        docs = {k: d for k, d in self.index.documents().items() if allowed is None or k in allowed}
        if greeting:
            return Answer(question, starters.greeting(question, docs), False, mode="greeting")
        doc = starters.outline_target(question, docs)
        if doc is None:
            return None
        lead, lines, passages = starters.outline(doc, (c for _, c in self.index.all_chunks(doc.doc_id)))
        if not lines:
            return None
        answer = verify(question, lines, passages, self.index.documents(), self.refusal, "outline")
        answer.answer = f"{lead}\n{answer.answer}"  # the lead names the document; every line after it is checked
        answer.standalone_question = question
        return answer

    def ask(self, question: str, history: Sequence = (), doc_ids: list[str] | None = None,
            issuer: str | None = None, k: int | None = None) -> Answer:
        for event in self.stream(question, history, doc_ids, issuer, k):
            if event.kind == "answer":
                return event.answer
        raise RuntimeError("the answer stream ended without an answer")

    def example_questions(self, candidates: Sequence[str], n: int = 4) -> list[str]:
        """Candidates the indexed documents can answer (evidence above the refusal threshold), else questions
        about the indexed titles - so the examples offered always fit what is indexed."""
        docs = self.index.documents()
        if not docs:
            return []
        out = [q for q in candidates if self.retrieve(q).probability >= self.threshold][:n]
        for d in sorted(docs.values(), key=lambda d: d.doc_id):
            if len(out) >= n:
                break
            out.append(f"《{d.title}》的主要内容是什么？")
        return out



def settle_heap() -> None:
    """For a serving process once its index and model are loaded: what it holds by then (modules, documents, the
    model's handle…) lives as long as it does, so it is moved out of the garbage collector's reach. A full
    collection walked all of it while every thread waited: 117 ms at 100k chunks, 2-3 times per 100 questions;
    9-26 ms after (measured). What is frozen is never collected as a cycle again: the embedded Chroma clients opened by
    then, once a reopen replaces them, are freed by their explicit stop (see ingest.store's _release), their few
    Python objects stay."""
    import gc

    gc.collect()
    gc.freeze()


def build_assistant(settings: Settings, index: Store | None = None, embedder=None, llm=None,
                    reranker=None) -> Assistant:
    """Wire the assistant from settings; tests pass a fake chat model as `llm`."""
    from .components import build_embedder, open_index

    index = index or open_index(settings)
    embedder = embedder or build_embedder(settings)
    r = settings.retrieval
    if reranker is None and r.reranker_path:
        reranker = CrossEncoderReranker(r.reranker_path)
    retriever = HybridRetriever(index, embedder, r.k, r.candidates, reranker, r.merge_adjacent)
    calibration = calib.load(embedder.name, r.calibration_file or None)
    if llm is None and settings.llm.base_url:
        c = settings.llm
        llm = make_chat_model(c.base_url, c.model, c.api_key, c.temperature, c.timeout, c.retries)
    condenser = None
    extractive = ExtractiveAnswerer(settings.answer.max_sentences,
                                    document_text=lambda d: getattr(index.document(d), "text", None))
    match llm:
        case None:
            answerer: Answerer = extractive
        case _:
            from langchain_core.output_parsers import StrOutputParser
            from langchain_core.prompts import ChatPromptTemplate

            answerer = LLMAnswerer(llm, settings.answer.refusal_text, settings.llm.timeout, settings.llm.passages,
                                   settings.llm.quotes)
            condenser = ChatPromptTemplate.from_template(CONDENSE_PROMPT) | llm | StrOutputParser()
    return Assistant(retriever, answerer, settings.answer.refusal_text, calibration, condenser, extractive,
                     r.max_concurrent)
