"""Fitting on questions without fooling ourselves: samples from test questions, k-fold cross-validation of the
whole answer path (every weight and threshold fitted on the other folds), and the `calibrate` fit on all."""
from __future__ import annotations

import hashlib
import logging
from typing import Callable, Sequence

from ingest.schema import Document

from . import calibration as calib
from .evaluate import Question, Result, evaluate, gold_span, holds_evidence, make_report, norm
from .pool import Weights
from .service import Assistant, condense_rule

log = logging.getLogger(__name__)


def _history(q: Question) -> list[dict]:
    return [{"role": "user", "content": t} for t in q.turns[:-1]]


def samples(assistant: Assistant, questions: Sequence[Question], docs: dict[str, Document]) -> list[calib.Sample]:
    """One fitting sample per question: the pool of its (standalone) last turn and which candidates hold its
    evidence. Follow-ups are made standalone by the offline rule, as in answering."""
    out = []
    for q in questions:
        history = _history(q)
        text = q.turns[-1]
        if history:
            text = condense_rule(text, history)
        pool = assistant.retriever.gather(text)
        gold = gold_span(q, docs)
        keys = {key for key, c in pool.candidates.items()
                if holds_evidence(c.chunk.text, c.chunk.doc_id, c.chunk.char_start, c.chunk.char_end, q, gold)}
        out.append(calib.Sample(text, pool, keys, q.answerable, list(q.facts)))
    return out


class _Drafts:
    """sample, weights, semantic share -> (passages, extractive answer text), memoised: folds share most of their
    training samples, and features and fact recall read the same drafts (no embedding: pools are kept)."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self.passages: dict[tuple, list] = {}
        self.texts: dict[tuple, tuple[list, str]] = {}

    def __call__(self, s: calib.Sample, w: Weights, share: float) -> tuple[list, str]:
        key = (id(s), *w.vector().tolist())
        if key not in self.passages:
            self.passages[key] = self.assistant.retriever.passages(s.pool, weights=w)
        if key + (share,) not in self.texts:
            passages = list(self.passages[key])
            text = "".join(self.assistant.drafter(share).stream(s.question, passages))
            self.texts[key + (share,)] = (self.passages[key], text)
        return self.texts[key + (share,)]


def feature_fn(assistant: Assistant, drafts: _Drafts | None = None) -> Callable[[calib.Sample, Weights, float], dict]:
    """sample, weights, semantic share -> its answerability features."""
    drafts = drafts or _Drafts(assistant)
    cache: dict[tuple, dict] = {}

    def score(s: calib.Sample, w: Weights, share: float) -> dict:
        key = (id(s), w.dense, w.sentence, w.lexical, w.article, w.title, w.expansion, share)
        if key not in cache:
            passages, text = drafts(s, w, share)
            cache[key] = calib.features(s.pool.query, s.pool, passages, text)
        return cache[key]
    return score


def fact_recall_fn(assistant: Assistant, drafts: _Drafts | None = None) -> Callable[[calib.Sample, Weights, float], float]:
    """sample, weights, semantic share -> fact recall of the extractive answer."""
    drafts = drafts or _Drafts(assistant)

    def recall(s: calib.Sample, w: Weights, share: float) -> float:
        text = norm(drafts(s, w, share)[1])
        return sum(1 for f in s.facts if norm(f) in text) / len(s.facts)
    return recall


def folds(questions: Sequence[Question], k: int) -> list[int]:
    """A fold number per question, stratified by kind and answerability, stable across runs (hash order)."""
    groups: dict[tuple, list[int]] = {}
    for i, q in enumerate(questions):
        groups.setdefault((q.kind, q.answerable), []).append(i)
    fold = [0] * len(questions)
    offset = 0
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda i: hashlib.sha1(f"{questions[i].source}:{questions[i].id}".encode()).hexdigest())
        for j, i in enumerate(members):
            fold[i] = (offset + j) % k
        offset += len(members)
    return fold


def fit_all(assistant: Assistant, questions: Sequence[Question], docs: dict[str, Document],
            fitted_on: dict | None = None) -> calib.Calibration:
    """The calibration fitted on every question (what `calibrate` writes)."""
    ss = samples(assistant, questions, docs)
    drafts = _Drafts(assistant)
    return calib.fit(assistant.embedder.name, ss, feature_fn(assistant, drafts),
                     fact_recall_fn(assistant, drafts), fitted_on)


def cross_validate(assistant: Assistant, questions: Sequence[Question], docs: dict[str, Document], k: int = 5,
                   n_folds: int = 5, on_progress=None) -> dict:
    """Evaluate every question with a calibration fitted on the other folds; returns the usual report plus
    'cv' (the folds' fitted parameters). The assistant's own calibration is restored afterwards."""
    ss = samples(assistant, questions, docs)
    fold_of = folds(questions, n_folds)
    drafts = _Drafts(assistant)
    score, recall = feature_fn(assistant, drafts), fact_recall_fn(assistant, drafts)
    original = assistant.calibration
    results: list[Result] = []
    fitted = []
    done = 0
    try:
        for f in range(n_folds):
            train = [s for s, fo in zip(ss, fold_of) if fo != f]
            test = [q for q, fo in zip(questions, fold_of) if fo == f]
            cal = calib.fit(assistant.embedder.name, train, score, recall, {"fold": f, "n": len(train)})
            assistant.use(cal)
            fitted.append({"fold": f, "weights": cal.weights.__dict__, "answer_semantic": cal.answer_semantic,
                           "threshold": round(cal.threshold, 4)})

            def progress(i, n, r, base=done):
                if on_progress:
                    on_progress(base + i, len(questions), r)
            rep = evaluate(test, lambda q, h: assistant.ask(q, h), docs, k, progress)
            done += len(test)
            results += [Result(**r) for r in rep["questions"]]
    finally:
        assistant.use(original)
    order = {(q.id, " → ".join(q.turns)): i for i, q in enumerate(questions)}
    results.sort(key=lambda r: order.get((r.id, r.question), 0))
    out = make_report(results, k)
    out["cv"] = {"folds": n_folds, "fitted": fitted}
    return out
