"""What is fitted on questions, in one file per embedder: the fusion weights and the answerability model.

Answerability is a logistic regression over signals that mean "the documents answer this", not "the topic is
present": how close the closest sentence is, by how much it stands out from the question's background scores,
lexical coverage, and whether the kind of fact asked for (an amount, a date, a department…) is present in the
closest sentences. Everything here is fitted by `python app.py calibrate FILE…` and, for evaluation, on folds.
"""
from __future__ import annotations

import itertools
import json
import logging
import statistics
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

from .lexicon import asked_types, han_share, holds_type
from .pool import Pool, Weights
from .retrieval import Passage

log = logging.getLogger(__name__)
# The model's inputs. Six, for ~200 fitting questions: the closest sentence's cosine and its margin over the
# question's background, IDF-weighted coverage, BM25 per query term, whether the asked-for kind of fact is
# absent from what the answer would cite, and whether the question is not in Chinese (a cross-lingual cosine
# runs lower, so the model needs to know). The other signals below are reported only.
FEATURES = ("sentence_best", "sentence_margin", "coverage", "lexical_per_term", "type_missing", "non_chinese")
SIGN = {"sentence_best": 1, "sentence_margin": 1, "coverage": 1, "lexical_per_term": 1, "type_missing": -1,
        "type_missing_passages": -1, "dense_best": 1, "dense_margin": 1}  # the direction each signal may push
SIGNALS = FEATURES + ("dense_best", "dense_margin", "han", "type_missing_passages")
# Signals that only mean something for a question written in Chinese: for a question in another language
# (under half its letters Chinese) they are missing, and the model uses their typical value instead.
LEXICAL = ("coverage", "lexical_per_term")


def features(question: str, pool: Pool, passages: Sequence[Passage], cited: str) -> dict[str, float]:
    """The answerability signals of one retrieval; `cited` is the text the extractive answer would quote."""
    han = han_share(question)
    if not passages:
        return {name: 0.0 for name in SIGNALS} | {"han": han, "non_chinese": float(han < 0.5), "type_missing": 1.0,
                                                   "type_missing_passages": 1.0}
    s_best = max(p.sentence for p in passages)
    d_best = max(p.dense for p in passages)
    s_bg = statistics.median(pool.sentence_background) if pool.sentence_background else s_best
    d_bg = statistics.median(pool.dense_background) if pool.dense_background else d_best
    cov = max(p.coverage for p in passages[:3])
    top = " ".join(p.text for p in passages)  # everything an answer could cite
    wanted = asked_types(question)
    # BM25 of the best passage per query term: how much of the question's wording the documents share at all.
    lex = max(p.lexical for p in passages) / max(1, len(pool.terms))
    if han < 0.5:  # not a Chinese question: no Chinese bigrams to share
        cov = lex = float("nan")
    # The kind of fact asked for (an amount, a year, a department…) must be in what the answer quotes: the
    # passages are long and full of figures, so "some passage has an amount" says little; "the sentences
    # chosen for this question state none" says the documents don't answer it.
    return {"sentence_best": s_best, "sentence_margin": s_best - s_bg, "dense_best": d_best,
            "lexical_per_term": lex,
            "dense_margin": d_best - d_bg, "coverage": cov,
            "type_missing": float(any(not holds_type(t, cited) for t in wanted)),
            "type_missing_passages": float(any(not holds_type(t, top) for t in wanted)),
            "han": han, "non_chinese": float(han < 0.5)}


@dataclass
class Calibration:
    """Fusion weights and the answerability model, for one embedder."""

    embedder: str
    weights: Weights = field(default_factory=Weights)
    features: list[str] = field(default_factory=lambda: list(FEATURES))
    mean: list[float] = field(default_factory=lambda: [0.0] * len(FEATURES))
    scale: list[float] = field(default_factory=lambda: [1.0] * len(FEATURES))
    coef: list[float] = field(default_factory=lambda: [0.0] * len(FEATURES))
    intercept: float = 0.0
    answer_semantic: float = 0.3  # share of sentence-embedding closeness when the extractive answer picks sentences
    threshold: float = 0.5  # refuse below this probability of being answerable (extractive mode)
    # the lowest score of an answerable fitting question; reported by `calibrate`, not a gate (LLM mode refuses
    # like extractive mode: a lower gate let a small model answer what the documents do not say)
    llm_threshold: float = 0.1
    fill: list[float] = field(default_factory=lambda: [0.0] * len(FEATURES))  # typical values, for missing ones
    fitted_on: dict = field(default_factory=dict)

    def vector(self, f: dict[str, float]) -> np.ndarray:
        x = np.array([f[name] for name in self.features], dtype=float)
        return np.where(np.isnan(x), np.array(self.fill), x)

    def probability(self, f: dict[str, float]) -> float:
        x = (self.vector(f) - np.array(self.mean)) / np.array(self.scale)
        return float(1.0 / (1.0 + np.exp(-(x @ np.array(self.coef) + self.intercept))))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        d = dict(d)
        d["weights"] = Weights(**d.get("weights", {}))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def generic(embedder_name: str) -> Calibration:
    """For an embedder nobody calibrated: refuse when under a fifth of the question's content words (IDF
    weighted) are in the passages - the lexical half of the old gate, so unknown embedders still refuse."""
    cal = Calibration(embedder_name, features=["coverage"], mean=[0.0], scale=[1.0], coef=[20.0], intercept=-4.0,
                      fill=[0.2], threshold=0.5, llm_threshold=0.3)
    cal.fitted_on = {"generic": True}
    return cal


def default_path(embedder_name: str) -> Path:
    """The calibration shipped in the package for an embedder (assistant/calibration/<name>.json)."""
    slug = embedder_name.replace("/", "--")
    return Path(str(resources.files("assistant").joinpath(f"calibration/{slug}.json")))


def load(embedder_name: str, path: str | Path | None = None) -> Calibration:
    """The calibration for this embedder; a missing or mismatched file is warned about, never silently used."""
    p = Path(path) if path else default_path(embedder_name)
    if not p.exists():
        log.warning("no calibration for embedder %s at %s: using a generic gate (refuse below 20%% lexical "
                    "coverage); run `python app.py calibrate QUESTIONS.jsonl` to fit one", embedder_name, p)
        return generic(embedder_name)
    try:
        cal = Calibration.from_dict(json.loads(p.read_text(encoding="utf-8")))
        n = len(cal.features)
        unknown = set(cal.features) - set(SIGNALS)
        if unknown or not all(len(x) == n for x in (cal.mean, cal.scale, cal.coef, cal.fill)):
            raise ValueError(f"unknown signals {sorted(unknown)}" if unknown else "vectors of different lengths")
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"the calibration file {p} cannot be used ({e}): refit it with `python app.py calibrate`") from e
    if cal.embedder != embedder_name:
        log.warning("calibration %s was fitted for embedder %s, not %s: refusals will be miscalibrated; run "
                    "`python app.py calibrate QUESTIONS.jsonl`", p, cal.embedder, embedder_name)
    return cal


# -- fitting ---------------------------------------------------------------------------------
@dataclass
class Sample:
    """One fitting example: its retrieval pool, which candidates hold its evidence, and whether it is answerable."""

    question: str
    pool: Pool
    gold: set[str]
    answerable: bool
    facts: list[str] = field(default_factory=list)
    features: dict[str, float] | None = None  # filled once the weights are fixed


def _reciprocal_ranks(sample: Sample, grid: np.ndarray, k: int = 5) -> np.ndarray:
    """1/rank of the sample's first evidence chunk under every weight row of the grid (0 past rank k), ranked
    as Pool.rank ranks: by fused score, ties in the candidates' order."""
    keys, fused = sample.pool.fused(grid)  # candidates x weights
    gold = [i for i, key in enumerate(keys) if key in sample.gold]
    if not gold:
        return np.zeros(len(grid))
    idx = np.arange(len(keys))[:, None]
    best = np.full(len(grid), np.inf)
    for g in gold:
        ahead = (fused > fused[g]) | ((fused == fused[g]) & (idx < g))
        best = np.minimum(best, ahead.sum(axis=0) + 1)
    return np.where(best <= k, 1.0 / best, 0.0)


# The grid for the fusion weights: shares of dense / sentence / lexical in steps of 0.1, article boost 0.25-1,
# named-document boost 0 or 0.3, expansion BM25 0-0.3, verbatim phrase 0-0.3.
# Coarse on purpose: ~60 answerable questions per fold cannot support finer distinctions.
_GRID = [Weights(d / 10, s / 10, (10 - d - s) / 10, a, t, x, p) for d, s in itertools.product(range(11), range(11))
         if d + s <= 10 for a in (0.25, 0.5, 1.0) for t in (0.0, 0.3) for x in (0.0, 0.15, 0.3) for p in (0.0, 0.15, 0.3)]


def fit_weights(samples: Sequence[Sample]) -> Weights:
    """The grid weights with the best MRR@5 on the answerable samples (ties: the most even split)."""
    ans = [s for s in samples if s.answerable and s.gold]
    if not ans:
        return Weights()
    grid = np.array([w.vector() for w in _GRID])
    mrr = sum(_reciprocal_ranks(s, grid) for s in ans) / len(ans)
    return max(zip(_GRID, mrr), key=lambda wm: (round(float(wm[1]), 4),
                                                -abs(wm[0].dense - wm[0].lexical) - abs(wm[0].sentence - wm[0].lexical)))[0]


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 50) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method (X standardised); small data, exact optimum."""
    n, d = X.shape
    Xb = np.hstack([X, np.ones((n, 1))])
    w = np.zeros(d + 1)
    reg = np.eye(d + 1) * l2
    reg[-1, -1] = 0.0  # the intercept is not shrunk
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(Xb @ w)))
        grad = Xb.T @ (p - y) + reg @ w
        hess = Xb.T @ (Xb * (p * (1 - p))[:, None]) + reg + np.eye(d + 1) * 1e-9
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1])


def fit_answerability(cal: Calibration, samples: Sequence[Sample], false_refusal_cost: float = 1.0) -> Calibration:
    """Fit the logistic model on the samples' features and pick the threshold with the lowest cost, a wrong
    refusal costing `false_refusal_cost` times a wrong answer. 1.0 (plain accuracy) measured as good as 2 or 3
    on false refusals and better on refusals, cross-validated on both question sets."""
    X = np.array([[s.features[name] for name in cal.features] for s in samples], dtype=float)
    y = np.array([1.0 if s.answerable else 0.0 for s in samples])
    fill = np.nanmean(np.where(y[:, None] == 1, X, np.nan), axis=0)  # typical of answerable questions
    cal.fill = np.nan_to_num(fill).tolist()
    X = np.where(np.isnan(X), np.array(cal.fill), X)
    mean, scale = X.mean(0), X.std(0)
    scale[scale < 1e-6] = 1.0
    Z = (X - mean) / scale
    # Monotone by design: a closer sentence, more shared words never make a question less answerable, and a
    # missing kind of fact never makes it more. A signal whose fitted sign says otherwise (collinearity on a
    # couple of hundred questions) is dropped and the rest refitted, so the model cannot extrapolate backwards.
    signs = np.array([SIGN.get(name, 0) for name in cal.features])
    active = np.ones(len(cal.features), bool)
    while True:
        coef_a, intercept = fit_logistic(Z[:, active], y)
        coef = np.zeros(len(cal.features))
        coef[active] = coef_a
        wrong = active & (signs * coef < 0)
        if not wrong.any():
            break
        active &= ~wrong
    cal.mean, cal.scale, cal.coef, cal.intercept = mean.tolist(), scale.tolist(), coef.tolist(), intercept
    probs = np.array([cal.probability(s.features) for s in samples])
    best = (float("inf"), 0.5)
    levels = np.unique(probs)
    # Candidate thresholds halfway between neighbouring probabilities: no sample sits on its own threshold.
    for t in list((levels[1:] + levels[:-1]) / 2) + [float(levels[0]) - 1e-9, 0.5]:
        cost = false_refusal_cost * np.sum((probs < t) & (y == 1)) + np.sum((probs >= t) & (y == 0))
        best = min(best, (float(cost), float(t)))
    cal.threshold = best[1]
    answerable = probs[y == 1]
    # With an LLM the model reads the passages and decides; the gate only stops what no answerable question
    # of the fitting set ever looked like.
    cal.llm_threshold = float(min(cal.threshold, answerable.min() * 0.99)) if len(answerable) else 0.1
    return cal


# Shares of meaning (vs shared words) tried when fitting how the extractive answer picks its sentences.
_SEMANTIC_GRID = (0.0, 0.15, 0.3, 0.45, 0.6, 0.75)


def fit_semantic(samples: Sequence[Sample], fact_recall) -> float:
    """The semantic share with the best mean fact recall on the answerable samples (ties: the smaller share).
    `fact_recall(sample, share) -> float` answers one sample with that share."""
    ans = [s for s in samples if s.answerable and s.facts]
    if not ans:
        return 0.3
    return max(_SEMANTIC_GRID, key=lambda x: (round(sum(fact_recall(s, x) for s in ans) / len(ans), 4), -x))


def fit(embedder: str, samples: Sequence[Sample], score_features, fact_recall=None,
        fitted_on: dict | None = None) -> Calibration:
    """Weights first (retrieval), then the answer's semantic share, then the answerability model on features
    computed with those weights and that share. `score_features(sample, weights, share) -> dict` and
    `fact_recall(sample, weights, share) -> float` need the retriever, so the caller supplies them."""
    cal = Calibration(embedder, fit_weights(samples))
    if fact_recall is not None:
        cal.answer_semantic = fit_semantic(samples, lambda s, x: fact_recall(s, cal.weights, x))
    for s in samples:
        s.features = score_features(s, cal.weights, cal.answer_semantic)
    cal = fit_answerability(cal, samples)
    cal.fitted_on = fitted_on or {}
    return cal
