"""What an answer is (Answer, Citation), the Answerer protocol and the offline answerer that quotes the passages.

The LLM answerer is in llm.py; the check every answer passes before it is returned, in verify.py."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, Iterator, Protocol, Sequence

from ingest.chunk import LEAD_IN, list_items, references, sentences

from .injection import addressed_to_the_system
from .lexicon import LIST_CUE, NUMBER_CUE, PENALTY_CUE, expansions, holds_type, one_sentence_types, to_simplified
from .retrieval import ARTICLE_REF, Passage, article_forms, query_terms

FIGURE = re.compile(r"\d+(?:\.\d+)?")


# Said with a refusal when the closest passages are on the topic but none states the kind of fact asked for.
TYPED_MIN = 0.25  # the least a sentence stating the asked-for kind of fact gains (with no share of meaning too)
MAX_LIST_ITEMS = 12  # items of one list in an answer; a longer list ends with "……"
QUOTES_HEADING = "原文："  # in LLM mode, before the quoted sentences under the model's answer
NOT_STATED = "检索到的相关段落没有写明所问的内容；下面列出最接近的段落，仅供参考，不作为回答。"
# Said with a refusal when the question names an article (第X条) that none of the documents searched has.
NO_SUCH_ARTICLE = "所查的文件中没有{}。"


@dataclass
class Citation:
    """A [n] mark resolved to the exact span of the stored document that supports it."""

    n: int
    doc_id: str
    title: str
    section: str
    article: str
    quote: str
    char_start: int
    char_end: int
    score: float

    def label(self) -> str:
        """《title》第十一条 or 《title》section path — how a policy reader names a source."""
        where = self.article or self.section
        return f"《{self.title}》{where}"


@dataclass
class Answer:
    question: str
    answer: str
    refused: bool
    citations: list[Citation] = field(default_factory=list)
    standalone_question: str = ""
    unverified: list[str] = field(default_factory=list)  # claims whose cited passage does not bear them out
    passages: list[Passage] = field(default_factory=list)
    mode: str = "extractive"
    timings_ms: dict = field(default_factory=dict)
    confidence: float | None = None  # probability that the retrieved passages answer the question
    claims: int = 0  # claims the citation check examined (unverified are among them)
    # An LLM answer that did not pass the check and was replaced by the extractive answer (or a refusal):
    # {"reason", "answer", "unverified"} - kept so the reader can see what was withheld and why.
    replaced: dict | None = None

    def with_sources(self) -> str:
        """The answer followed by its sources, for plain-text channels (copy box, OpenAI-style clients)."""
        if self.refused and NOT_STATED in self.answer and self.passages:
            return self.answer + "\n\n最接近的段落（仅供参考）：\n" + "\n".join(
                f"《{p.title}》{p.article or p.section_path}：{p.text[:200]}" for p in self.passages[:3])
        if self.refused or not self.citations:
            return self.answer
        return self.answer + "\n\n来源：\n" + "\n".join(f"[{c.n}] {c.label()}：“{c.quote}”" for c in self.citations)

    @classmethod
    def from_dict(cls, question: str, d: dict) -> "Answer":
        """An answer kept as to_dict() (a stored conversation), back as an Answer to render."""
        names = {f.name for f in fields(Citation)}
        cites = [Citation(**{k: v for k, v in c.items() if k in names}) for c in d.get("citations") or []]
        return cls(question, d.get("answer", ""), bool(d.get("refused")), cites, d.get("standalone_question", ""),
                   list(d.get("unverified") or []), mode=d.get("mode", "extractive"), confidence=d.get("confidence"),
                   replaced=d.get("replaced"))

    def to_dict(self, passages: bool = False) -> dict:
        d = {"question": self.question, "answer": self.answer, "refused": self.refused,
             "citations": [asdict(c) | {"label": c.label()} for c in self.citations],
             "standalone_question": self.standalone_question, "unverified": self.unverified,
             "mode": self.mode, "confidence": self.confidence, "timings_ms": self.timings_ms,
             "replaced": self.replaced}
        if passages:
            d["passages"] = [p.to_dict() for p in self.passages]
        return d


class Answerer(Protocol):
    """Turns a question and numbered passages into answer text with [n] marks, streamed."""

    mode: str

    def stream(self, question: str, passages: list[Passage]) -> Iterator[str]: ...


# -- extractive ------------------------------------------------------------------------------
def _sentence_score(terms: list[str], sentence: str, wants_number: bool, context: str = "",
                    wants_list: bool = False, wants: Sequence[str] = (), refers_to: Sequence[str] = ()) -> float:
    """Share of question terms in the sentence; terms already in the passage's title or section path count a
    fifth, since they say where the sentence is rather than what it says."""
    if not terms:
        return 0.0
    low = sentence.lower()
    weights = {t: 0.2 if t in context else 1.0 for t in terms}
    score = sum(w for t, w in weights.items() if t in low) / sum(weights.values())
    if wants_number and not wants and FIGURE.search(sentence):
        score += 0.25  # a number question is answered by the sentence holding the number
    if refers_to and set(refers_to) & set(references(sentence)):
        score += 0.3  # the penalty clause of the article that states the duty asked about
    if wants_list and (sentence.count("、") + sentence.count("，") >= 3 or LEAD_IN.search(sentence)):
        score += 0.25  # "which ones" is answered by an enumeration, or by the lead-in of one
    return score


# A clause that qualifies the one before its "；": a condition "…的，" (its first comma-parts ending in 的), an
# exception ("但…", "…除外").
QUALIFIES = re.compile(r"^\s*(?:[^，,；;。：:\n]{0,60}?的[，,]|但)|除外[。！？；;]?[”’」』)）]*\s*$")


def _whole(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """A rule's clause joined to the clauses after its "；" that qualify it: a condition ("责令改正；拒不改正的，
    处…罚款", "…；构成犯罪的，依法追究刑事责任"), an exception ("禁止…；因…需要的除外", "…；但…"). Quoted alone,
    the rule would say more than the text does (a ban without its exception) or less (a duty without the fine for
    breaking it). Parallel clauses ("应当…；应当…；") and clauses on separate lines (list items) stay apart."""
    out: list[tuple[int, int]] = []
    for s, e in spans:
        nxt = text[out[-1][1]:e] if out else ""
        if out and text[out[-1][0]:out[-1][1]].rstrip("”’」』)）").endswith(("；", ";")) \
                and "\n" not in nxt.rstrip("\n") and QUALIFIES.search(nxt):
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def _units(text: str, lead_max: int = 16) -> list[tuple[int, int]]:
    """Whole sentences (see _whole), with a short lead-in ("（四）试点目标。", "一是完善了城市功能。") joined to the
    sentence it introduces: the lead carries the words a question uses, the next sentence carries the answer."""
    spans = _whole(text, sentences(text, 0, len(text), 10_000))
    out: list[tuple[int, int]] = []
    pending = None
    for s, e in spans:
        if pending is not None:
            s, pending = pending, None
        elif len(text[s:e].strip()) < lead_max and "\n" not in text[s:e].strip():
            pending = s
            continue
        out.append((s, e))
    if pending is not None:
        out.append((pending, len(text)))
    return out


class ExtractiveAnswerer:
    """Answers with the 1-3 sentences of the passages that best match the question, each with its [n]."""

    mode = "extractive"

    def __init__(self, max_sentences: int = 3, min_score: float = 0.2, semantic: float = 0.5,
                 document_text: Callable[[str], str | None] | None = None) -> None:
        self.max_sentences, self.min_score = max_sentences, min_score
        self.semantic = semantic  # share of sentence-embedding closeness in a sentence's score (the rest: words)
        self.document_text = document_text  # doc_id -> cleaned text, to complete lists past a passage's end

    def _article(self, question: str, passages: list[Passage]) -> list[tuple[int, int, int, str]]:
        """A question that names an article (“第十三条规定了什么？”) is answered with that article, in order:
        the retrieved passage that is that article, from its own first line."""
        refs = {f for ref in ARTICLE_REF.findall(question) for f in article_forms(ref)}
        hits = [p for p in passages if p.article and p.article in refs]
        if not hits:
            return []
        p = hits[0]  # retrieval ranks the article of the document the question names first
        begin = p.text.find(p.article)  # from the article's own first line (a chapter heading may precede it)
        if begin < 0:
            return []
        out = []
        for s, e in _units(p.text[begin:]):
            seg = p.text[begin + s:begin + e]
            sent = seg.strip()
            if sent:
                start = p.char_start + begin + s + len(seg) - len(seg.lstrip())
                out.append((p.n, start, start + len(sent), sent))
        return out[: self.max_sentences + 3]

    def select(self, question: str, passages: list[Passage]) -> list[tuple[int, int, int, str]]:
        """(passage n, start, end, sentence) of the chosen sentences, best passage first."""
        question = to_simplified(question)
        article = self._article(question, passages)
        if article:
            return article
        terms = query_terms(question)
        terms += [t for t in query_terms(" ".join(expansions(question))) if t not in terms]
        wants_number = bool(NUMBER_CUE.search(question))
        wants_list = bool(LIST_CUE.search(question))
        wants = one_sentence_types(question)
        # For a question about consequences, the articles of the two best passages: a sentence that punishes a
        # breach of one of them ("违反第十六条…罚款") answers it.
        refers_to = [p.article for p in passages[:2] if p.article] if PENALTY_CUE.search(question) else []
        # Meaning: each unit's closest indexed sentence, rescaled over all candidates of this question, so the
        # answering sentence wins even when it shares few characters with an everyday-language question.
        cos = [x[2] for p in passages for x in p.sentence_scores]
        lo, hi = (min(cos), max(cos)) if cos else (0.0, 0.0)
        scored = []
        for p in passages:
            prior = 0.08 / p.n  # retrieval rank breaks ties between equally matching sentences
            context = (p.title + p.section_path).lower()
            label = p.section[-1].rstrip("…") if p.section else ""
            for s, e in _units(p.text):
                sent = p.text[s:e].strip()
                if len(sent) < 6 or addressed_to_the_system(sent):
                    continue
                lead = len(p.text[s:e]) - len(p.text[s:e].lstrip())
                start = p.char_start + s + lead
                # A unit that opens with its own heading ("（四）试点目标。到2020年…") states what the heading names,
                # so the heading's words count in full for it.
                ctx = p.title.lower() if label and sent.startswith(label) else context
                sem = max((x[2] for x in p.sentence_scores if x[0] < start + len(sent) and start < x[1]), default=lo)
                sem = (sem - lo) / (hi - lo) if hi > lo and not sent.startswith(p.title) else 0.0
                # (a document's own title line is close to any question naming the document, and answers none)
                lexical = _sentence_score(terms, sent, wants_number, ctx, wants_list, wants, refers_to)
                score = (1 - self.semantic) * lexical + self.semantic * sem + prior
                if wants and any(holds_type(t, sent) for t in wants):
                    # An amount / date / department question is answered by the sentence stating one, however
                    # close another sentence's meaning (the bonus is the whole share of meaning): the asked-for
                    # kind of fact leads the answer.
                    score += max(self.semantic, TYPED_MIN)
                scored.append((score, p.n, start, start + len(sent), sent))
        scored.sort(key=lambda x: -x[0])
        return self._choose(scored, passages, refers_to)

    def _choose(self, scored: list, passages: list[Passage], refers_to: list[str]) -> list[tuple[int, int, int, str]]:
        """The best-scored sentences (up to max_sentences, none far below the best, no span twice), plus the clause
        punishing a chosen duty's breach when consequences were asked for; best passage first."""
        chosen: list[tuple[float, int, int, int, str]] = []
        for item in scored:
            if len(chosen) == self.max_sentences:
                break
            if item[0] < self.min_score or (chosen and item[0] < 0.6 * chosen[0][0]):
                break
            if any(item[2] < c[3] and c[2] < item[3] for c in chosen):  # same span via an overlapping chunk
                continue
            chosen.append(item)
        if refers_to:
            # A duty chosen for a question about consequences brings the clause that punishes its breach.
            by_n = {p.n: p for p in passages}
            duties = {(by_n[c[1]].doc_id, by_n[c[1]].article) for c in chosen if by_n[c[1]].article}
            for item in scored:
                p = by_n[item[1]]
                if item in chosen or not any(d == p.doc_id and a in references(item[4], p.article) for d, a in duties):
                    continue
                if not any(item[2] < c[3] and c[2] < item[3] for c in chosen):
                    chosen.append(item)
                break
        # Best sentence first; further sentences of the same passage keep their reading order after it.
        best_by_n: dict[int, float] = {}
        for c in chosen:
            best_by_n[c[1]] = max(best_by_n.get(c[1], 0.0), c[0])
        chosen.sort(key=lambda c: (-best_by_n[c[1]], c[1], c[2]))
        return [(n, s, e, sent) for _, n, s, e, sent in chosen]

    def stream(self, question: str, passages: list[Passage]) -> Iterator[str]:
        """The chosen sentences, each with its [n]; a sentence that introduces a list ("…下列条件：") is
        followed by the list's items, found in the document past the passage if need be. The passages that hold
        those items are appended to `passages` (numbered on), so every item carries an exact citation."""
        after_list, listed = False, False
        items: list[tuple[str, int, int]] = []  # (doc_id, start, end) of the items already given
        for n, start, end, sent in self.select(question, passages):
            doc_id = next(p.doc_id for p in passages if p.n == n)
            if any(d == doc_id and start < e and s < end for d, s, e in items):
                continue  # already given as an item of a list
            if listed and LEAD_IN.search(sent):
                continue  # one list per answer: a second lead-in would start another enumeration
            marked = sent.replace("\n", f"[{n}]\n")  # each line is a claim of its own and carries the mark
            yield f"{chr(10) if after_list else ''}{marked}[{n}]"
            after_list = False
            if LEAD_IN.search(sent):
                for item, span in self._items(next(p for p in passages if p.n == n), end, passages):
                    after_list = listed = True
                    items.append(span)
                    yield item

    def _items(self, parent: Passage, lead_end: int, passages: list[Passage]) -> Iterator[tuple[str, tuple]]:
        text = self.document_text(parent.doc_id) if self.document_text else None
        if not text:
            return
        found = list_items(text, lead_end, max_items=MAX_LIST_ITEMS + 1)
        groups: list[list[tuple[int, int]]] = []
        for s, e in found[:MAX_LIST_ITEMS]:
            if groups and not text[groups[-1][-1][1]:s].strip(" \n；;，,。"):
                groups[-1].append((s, e))  # contiguous items share one passage
            else:
                groups.append([(s, e)])
        for group in groups:
            start, end = group[0][0], group[-1][1]
            host = next((p for p in passages if p.doc_id == parent.doc_id and p.char_start <= start
                         and end <= p.char_end), None)
            if host is None:
                host = Passage(len(passages) + 1, parent.doc_id, parent.title, parent.section, parent.article,
                               text[start:end], start, end, parent.score, parent.dense, parent.lexical,
                               parent.coverage, parent.sentence, [])
                passages.append(host)
            for s, e in group:
                yield f"\n{text[s:e]}[{host.n}]", (parent.doc_id, s, e)
        if len(found) > MAX_LIST_ITEMS:
            yield "\n……", (parent.doc_id, 0, 0)  # a long list is cut: the rest is in the reader page (查看全文)
