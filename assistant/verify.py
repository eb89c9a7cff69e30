"""The citation check every answer passes before it is returned: [n] marks resolved to quotes at their exact
offsets, and claims whose cited passages do not bear them out flagged."""
from __future__ import annotations

import re

from ingest.chunk import sentences
from ingest.clean import normalise
from ingest.lexical import bigrams
from ingest.schema import Document

from .answer import Answer, Citation
from .retrieval import Passage

MARK = re.compile(r"\[(\d{1,2})\]")
# A figure as a claim states it: the number with its unit, so "5万" is not borne out by "1.5万" or "95".
CLAIMED_FIGURE = re.compile(r"\d+(?:\.\d+)?(?:%|‰|万|亿|千|百)?")
# An amount as a claim states it, in Arabic or Chinese numerals, with its unit: a fine, a deadline, a count.
AMOUNT = re.compile(r"(?:\d+(?:\.\d+)?|[零一二两三四五六七八九十百千万亿]+)\s*(?:元|日|天|个|年|月|倍|%|平方米|公里|座|项|处|人)")
# A claim: text up to its sentence end, plus the [n] marks that follow the end mark (LLMs put them either side).
CLAIM = re.compile(r"[^。！？!?；;\n]+[。！？!?；;]*(?:\s*\[\d{1,2}\])*")


def _best_span(claim: str, p: Passage) -> tuple[int, int]:
    """The sentence of the passage that best supports the claim (absolute offsets)."""
    claim_terms = set(bigrams(claim))
    best, best_score = (p.char_start, p.char_end), -1.0
    for s, e in sentences(p.text, 0, len(p.text), 10_000):
        seg = p.text[s:e]
        lead, trail = len(seg) - len(seg.lstrip()), len(seg) - len(seg.rstrip())
        if len(seg.strip()) < 4:
            continue
        score = len(claim_terms & set(bigrams(seg)))
        if score > best_score:
            best, best_score = (p.char_start + s + lead, p.char_start + e - trail), score
    return best


# A claim restating its source shares most of its character pairs with it; under half is not a restatement.
# Quoted sentences share all of them. Not fitted on LLM answers (there is no set of them yet): a documented constant.
SUPPORT_MIN = 0.5
# An organisation named in a claim ("市公安局", "城市管理部门") must be named in its source, by the two characters
# before its generic tail (公安局 vs 管理局). The tail includes the words departments' titles share (行政, 主管,
# 管理, 执法, 职能), so "物业管理行政主管部门" is checked whole, not as the "主管部门" that a passage on
# 规划行政主管部门 also holds.
ORGANISATION = re.compile(r"[\u4e00-\u9fff]{2}(?:行政|主管|管理|综合|执法|职能){0,3}(?:局|厅|委员会|部门|政府|办公室|机关)")


def supported(claim: str, source: str) -> bool:
    """Whether a cited source bears a claim out: its organisations are named there, and at least SUPPORT_MIN of
    its content character pairs occur there."""
    if any(m.group(0) not in source for m in ORGANISATION.finditer(claim)):
        return False
    pairs = [t for t in dict.fromkeys(bigrams(claim)) if not any(ch in t for ch in "的了是在和与及")]
    if not pairs:
        return True
    low = source.lower()
    return sum(1 for t in pairs if t in low) / len(pairs) >= SUPPORT_MIN


def _says_nothing(claim: str) -> bool:
    """Too short to claim anything, punctuation only (the "……" that ends a cut list), or a department's name alone
    (with its level, 县级以上…): its passage names it, but what for is the question's, which the check cannot hold
    against the passage (a small model picks the wrong one of the departments an article lists)."""
    named = re.sub(r"[省市县区乡镇级以上各]", "", ORGANISATION.sub("", claim))
    return len(_norm(claim)) < 4 or not re.search(r"\w", named)


def _norm(text: str) -> str:
    return re.sub(r"\s+", "", normalise(text))


# How models write a citation besides [1]: full-width brackets 【1】［1］, several numbers in one mark [1, 2] /
# [1、2] / [1,2] (general notation, not one model's habit).
_LOOSE_MARK = re.compile(r"[\[【［]\s*(\d{1,2}(?:\s*[,，、;；]\s*\d{1,2})*)\s*[\]】］]")


def normalise_marks(text: str) -> str:
    """Every citation mark written as [n], one number per mark: 【1】 -> [1], [1, 2] -> [1][2]."""
    return _LOOSE_MARK.sub(lambda m: "".join(f"[{int(n)}]" for n in re.findall(r"\d{1,2}", m.group(1))), text)


def verify(question: str, raw: str, passages: list[Passage], docs: dict[str, Document], refusal: str,
           mode: str) -> Answer:
    """Resolve [n] marks to verified quotes; drop marks that point nowhere; flag claims the passages don't bear."""
    if mode.startswith("llm"):  # an extractive answer's marks are ours; its quoted text keeps any brackets it has
        raw = normalise_marks(raw)
    by_n = {p.n: p for p in passages}
    text = MARK.sub(lambda m: m.group(0) if int(m.group(1)) in by_n else "", raw).strip()
    if not text or _norm(text).startswith(_norm(refusal)) or (
            _norm(refusal) in _norm(text) and len(_norm(text)) < len(_norm(refusal)) + 10):
        return Answer(question, refusal, True, mode=mode, passages=passages)
    citations: dict[int, Citation] = {}
    unverified: list[str] = []
    claims = [c for c in (m.group(0).strip() for m in CLAIM.finditer(text)) if c]
    checked = 0
    for i, claim in enumerate(claims):
        marks = [int(m) for m in MARK.findall(claim)]
        bare = MARK.sub("", claim).strip()
        if _says_nothing(bare):
            continue
        if not marks:
            # A heading or lead-in quoted with the sentence after it ("一是完善了城市功能。着眼于…[1]"): the
            # next mark covers it when its passage holds it word for word.
            later = next((MARK.findall(c) for c in claims[i + 1:] if MARK.search(c)), [])
            marks = [int(m) for m in later if _norm(bare) in _norm(by_n[int(m)].text)]
        if not marks:
            unverified.append(bare)  # every claim must cite; an uncited one is never shown as proven
            continue
        cited_text = _norm("".join(by_n[n].text for n in marks))
        checked += 1
        if any(not re.search(rf"(?<![\d.]){re.escape(f)}(?![\d])", cited_text) for f in CLAIMED_FIGURE.findall(_norm(bare))):
            unverified.append(bare)  # a figure the cited passages do not contain
        elif not supported(bare, cited_text) or grafted(bare, cited_text + _norm("".join(by_n[n].title for n in marks))):
            unverified.append(bare)  # words or an organisation the cited passages do not bear out
        for n in marks:
            p = by_n[n]
            s, e = _best_span(bare, p)
            if n in citations:  # several claims cite one passage: the quote spans all their sentences
                s, e = min(s, citations[n].char_start), max(e, citations[n].char_end)
            doc = docs.get(p.doc_id)
            quote = doc.text[s:e] if doc else ""
            if not quote or p.text[s - p.char_start:e - p.char_start] != quote:
                continue  # never cite what cannot be shown verbatim, at its own offsets
            citations[n] = Citation(n, p.doc_id, p.title, p.section_path, p.article, quote, s, e, round(p.score, 5))
    ordered = [citations[n] for n in dict.fromkeys(int(m) for m in MARK.findall(text)) if n in citations]
    return Answer(question, text, False, ordered, unverified=unverified, passages=passages, mode=mode,
                  claims=checked)


def missing_lead_figures(answer: str, quoted: str) -> list[str]:
    """The figures of the quoted (extractive) answer's lead sentence that `answer` leaves out. A model's answer
    that drops the numbers of the sentence the offline answer leads with answers something else, or less: it is
    not shown in place of the quotes (never worse than offline)."""
    for claim in CLAIM.finditer(quoted):
        bare = _norm(MARK.sub("", claim.group(0)))
        if len(bare) >= 6:  # past a salutation or heading ("同志们：")
            said = _norm(MARK.sub("", answer))
            return [f for f in dict.fromkeys(CLAIMED_FIGURE.findall(bare))
                    if not re.search(rf"(?<![\d.]){re.escape(f)}(?![\d])", said)]
    return []


def restates(answer: str, quoted: str) -> bool:
    """Whether `answer` already holds every sentence of `quoted` word for word (punctuation and marks aside)."""
    said = re.sub(r"[^\w]", "", _norm(MARK.sub("", answer)))
    return all(re.sub(r"[^\w]", "", _norm(MARK.sub("", c.group(0)))) in said for c in CLAIM.finditer(quoted))


def grafted(claim: str, cited_text: str) -> str:
    """A phrase of an amount-stating claim that its cited passages never contain (a new word of 3 or more
    characters: 5 or more characters with its neighbours), or "".
    An amount is what a reader acts on, so the claim must be about what its passage is about: a small model grafts
    the asked-about subject onto another clause's fine ("露天烧烤的……处五千元以上罚款" from a clause on dogs)."""
    if not AMOUNT.search(claim):
        return ""
    said = re.sub(r"\W", "", _norm(claim))
    cited = re.sub(r"\W", "", cited_text)
    have = {cited[i:i + 2] for i in range(len(cited) - 1)}
    run, best = "", ""
    for i in range(len(said) - 1):
        if said[i:i + 2] in have:
            run = ""
            continue
        run = run + said[i + 1] if run else said[i:i + 2]
        best = max(best, run, key=len)
    return best if len(best) >= 5 else ""  # a 2-character word put in ("共" -> "一共") is a paraphrase
