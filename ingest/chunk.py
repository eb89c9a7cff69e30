"""Structure-aware chunking of Chinese policy text, with exact offsets into the cleaned text."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .schema import Chunk, Sentence

NUM = "一二三四五六七八九十百零〇两"
CHAPTER = re.compile(rf"^第[{NUM}\d]+[章编]")
SECTION = re.compile(rf"^第[{NUM}\d]+节")
ARTICLE = re.compile(rf"^(第[{NUM}\d]+条)(之[{NUM}]+)?")
NUMBERED = re.compile(rf"^[{NUM}]+、")
PAREN = re.compile(rf"^[（(][{NUM}]+[）)]")
LEAD = re.compile(rf"^[{NUM}]+[是要]")
# 一是 / 二是 inside a paragraph, right after the end of a clause: the paragraph is built on them.
INLINE_LEAD = re.compile(rf"(?<=[。:：;；!！])([{NUM}]+是)")
# Sentence ends: full-width 。！？； and the half-width ! ? ; the scraped speech uses. A '.' never ends a
# sentence here, so 6.04 and 1.6万 are safe; closing quotes stay with their sentence.
SENTENCE = re.compile(r"[^。！？；!?;\n]*(?:[。！？；!?;]+[”’」』)）]*|\n|$)")
LEVELS = {"chapter": 0, "section": 1, "numbered": 1, "paren": 2, "lead": 3}


@dataclass
class Segment:
    """A run of text under one section path (or one article) that chunks never cross."""

    start: int
    end: int
    path: list[str] = field(default_factory=list)
    article: str = ""
    heading_only: bool = False
    closed: bool = False  # a paragraph split on 一是/二是: the next paragraph starts afresh


def _label(line: str, limit: int = 40) -> str:
    """A heading's label: the line itself if short, else its lead clause."""
    m = re.match(r"[^。！？!?]*", line)
    head = (m.group(0) if m else line).strip()
    return head if len(head) <= limit else head[:limit] + "…"


def _classify(line: str, in_articles: bool) -> str | None:
    if CHAPTER.match(line):
        return "chapter"
    if SECTION.match(line):
        return "section"
    if ARTICLE.match(line):
        return "article"
    if in_articles:
        return None  # (一)(二) inside a regulation are items of the article, not sections
    if NUMBERED.match(line) and len(line) <= 60:
        return "numbered"
    if PAREN.match(line):
        return "paren"
    if LEAD.match(line) and len(_label(line)) <= 30:
        return "lead"
    return None


def segments(text: str) -> list[Segment]:
    """Cut the cleaned text into structural segments."""
    in_articles = bool(re.search(rf"(^|\n)第[{NUM}]+条", text))
    segs: list[Segment] = []
    path: list[tuple[int, str]] = []
    article = ""
    pos = 0
    for line in text.split("\n"):
        start, end = pos, pos + len(line)
        pos = end + 1
        if not line.strip():
            continue
        kind = _classify(line, in_articles)
        if kind == "article":
            article = ARTICLE.match(line).group(0)
            segs.append(Segment(start, end, [p for _, p in path], article))
            continue
        if kind is not None:
            level = LEVELS[kind]
            path = [(lv, p) for lv, p in path if lv < level] + [(level, _label(line))]
            if kind in ("chapter", "section"):
                article = ""
            heading_only = len(line) <= 60 and not re.search(r"[。！？!?]", line[:-1])
            segs.append(Segment(start, end, [p for _, p in path], "", heading_only))
            if not heading_only:
                segs[-1:] = _split_inline_leads(segs[-1], line)
            continue
        cur = segs[-1] if segs else None
        if cur and not cur.heading_only and not cur.closed and cur.end == start - 1 and cur.article == article:
            # A body line continues the current segment (articles and sections span lines)...
            if not INLINE_LEAD.search(line):
                cur.end = end
                continue
        # ...unless it is a paragraph built on 一是/二是, which gets a segment per point.
        seg = Segment(start, end, [p for _, p in path], article)
        segs.append(seg)
        segs[-1:] = _split_inline_leads(seg, line)
    return _merge_headings(segs)


def _split_inline_leads(seg: Segment, line: str) -> list[Segment]:
    """Split a paragraph built on 一是/二是 into one segment per point, labelled by its lead clause."""
    marks = list(INLINE_LEAD.finditer(line))
    if seg.article or len(marks) < 2 or not marks[0].group(1).startswith("一"):
        return [seg]
    out = [Segment(seg.start, seg.start + marks[0].start(), list(seg.path), "", closed=True)]
    for i, m in enumerate(marks):
        s = seg.start + m.start()
        e = seg.start + marks[i + 1].start() if i + 1 < len(marks) else seg.end
        out.append(Segment(s, e, seg.path + [_label(line[m.start():], 30)], "", closed=True))
    return [s for s in out if s.end > s.start]


def _merge_headings(segs: list[Segment]) -> list[Segment]:
    """A bare heading line starts the next chunk instead of standing alone."""
    out: list[Segment] = []
    pending: Segment | None = None
    for seg in segs:
        if pending is not None:
            seg = Segment(pending.start, seg.end, seg.path, seg.article, seg.heading_only)
            pending = None
        if seg.heading_only:
            pending = seg
            continue
        out.append(seg)
    if pending is not None:
        out.append(pending)
    return out


def sentences(text: str, start: int, end: int, max_len: int) -> list[tuple[int, int]]:
    """Sentence spans (absolute offsets) in text[start:end]; over-long sentences split at commas."""
    spans = []
    for m in SENTENCE.finditer(text, start, end):
        s, e = m.start(), m.end()
        if e <= s:
            continue
        while e - s > max_len:
            cut = max(text.rfind(c, s, s + max_len) for c in "，,、 ")
            cut = cut + 1 if cut > s + max_len // 3 else s + max_len
            spans.append((s, cut))
            s = cut
        spans.append((s, e))
    return spans


def split(text: str, doc_id: str, title: str = "", size: int = 300, overlap: int = 60) -> list[Chunk]:
    """Cleaned text -> chunks of about `size` characters that start at headings and end at sentence ends."""
    chunks: list[Chunk] = []
    for seg in segments(text):
        sents = sentences(text, seg.start, seg.end, size)
        i = 0
        while i < len(sents):
            j = i
            while j + 1 < len(sents) and sents[j + 1][1] - sents[i][0] <= size:
                j += 1
            # A short tail left over is folded into this chunk rather than standing alone.
            if j + 1 < len(sents) and sents[-1][1] - sents[j + 1][0] < size // 4 and sents[-1][1] - sents[i][0] <= size * 1.4:
                j = len(sents) - 1
            s, e = sents[i][0], sents[j][1]
            while e > s and text[e - 1] in "\n ":
                e -= 1
            while s < e and text[s] in "\n ":
                s += 1
            chunks.append(Chunk(doc_id, len(chunks), text[s:e], s, e, title, list(seg.path), seg.article))
            if j + 1 >= len(sents):
                break
            k = j + 1
            # Step back over trailing sentences that fit in the overlap, but always move forward.
            while k - 1 > i and sents[j][1] - sents[k - 1][0] <= overlap:
                k -= 1
            i = k
    return chunks


def sentence_units(text: str, chunks: list[Chunk], min_len: int = 12, max_len: int = 160) -> list[Sentence]:
    """The second, finer granularity: each chunk's sentences, a short one (a heading, a lead-in such as
    "（四）试点目标。") joined to the next so it carries its meaning; each span once per document, owned by
    the first chunk that holds it (chunks overlap). Offsets point into the cleaned text like chunks' do."""
    out: list[Sentence] = []
    seen: set[tuple[int, int]] = set()
    for c in chunks:
        pending: int | None = None
        spans = [(s, e) for s, e in sentences(text, c.char_start, c.char_end, max_len) if text[s:e].strip()]
        for n, (s, e) in enumerate(spans):
            if pending is not None:
                s, pending = pending, None
            body = text[s:e].strip()
            if len(body) < min_len and n + 1 < len(spans):
                pending = s
                continue
            lead = len(text[s:e]) - len(text[s:e].lstrip())
            s, e = s + lead, s + lead + len(body)
            if (s, e) in seen or len(body) < 4:
                continue
            seen.add((s, e))
            out.append(Sentence(c.doc_id, c.ordinal, len(out), text[s:e], s, e, c.article,
                                c.section[-1] if c.section else ""))
    return out


# Item markers of an enumeration, by family; an item line starts with one. 1. / 1、 / （1） are numbered items.
ITEM_FAMILIES = {
    "paren": PAREN,
    "lead": LEAD,
    "numbered": NUMBERED,
    "digit": re.compile(r"^(?:\d{1,2}[.、．](?!\d)|[（(]\d{1,2}[）)])"),
}
# What ends an enumeration when met on a line of its own: a heading of a higher level than the items.
_HIGHER = {"paren": (CHAPTER, SECTION, ARTICLE, NUMBERED), "lead": (CHAPTER, SECTION, ARTICLE, NUMBERED, PAREN),
           "numbered": (CHAPTER, SECTION, ARTICLE), "digit": (CHAPTER, SECTION, ARTICLE, NUMBERED, PAREN)}
LEAD_IN = re.compile(r"[:：]\s*$")


def _family(line: str) -> str | None:
    return next((name for name, rx in ITEM_FAMILIES.items() if rx.match(line)), None)


def list_items(text: str, lead_end: int, max_items: int = 12, max_scan: int = 6000,
               item_chars: int = 120) -> list[tuple[int, int]]:
    """The items a lead-in introduces ("…包括下列内容：", "…体现在四个方面:"), as (start, end) spans of the
    text after `lead_end`: the rest of the lead-in's paragraph when it enumerates inline (一是…二是…), else the
    following lines of one item family ((一) (二) / 一是 二是 / 一、 二、 / 1. 2.), skipping an item's body
    paragraphs, up to a heading of a higher level. An item is its first sentence (the item's own heading)."""
    items: list[tuple[int, int]] = []
    line_end = text.find("\n", lead_end)
    line_end = len(text) if line_end < 0 else line_end
    rest = text[lead_end:line_end]
    if rest.strip():  # inline: 一是…；二是…
        marks = [m.start() for m in re.finditer(rf"[{NUM}]+是", rest)]
        for i, m in enumerate(marks[:max_items]):
            end = marks[i + 1] if i + 1 < len(marks) else len(rest)
            items.append(_first_sentence(text, lead_end + m, lead_end + end, item_chars))
        return items
    family = None
    pos = line_end + 1
    limit = min(len(text), lead_end + max_scan)
    while pos < limit and len(items) < max_items:
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        line = text[pos:end].strip()
        if line:
            f = _family(line)
            if family is None:
                if f is None:
                    break  # the lead-in is not followed by an enumeration
                family = f
            if f == family:
                if items and _restarts(line):
                    break  # the numbering starts again: another list
                start = pos + (len(text[pos:end]) - len(text[pos:end].lstrip()))
                starts = _item_starts(text, start, end, family)
                for i, s in enumerate(starts[:max_items - len(items)]):
                    items.append(_first_sentence(text, s, starts[i + 1] if i + 1 < len(starts) else end, item_chars))
            elif any(rx.match(line) for rx in _HIGHER[family]) or LEAD_IN.search(line):
                break  # a higher heading, or the lead-in of another list
        pos = end + 1
    return items


def _item_starts(text: str, start: int, end: int, family: str) -> list[int]:
    """Where the items of one line start: the line's own, and any other of its family after an item's end on the
    same line ("（三）…构筑物； （四）违章搭建…；" is two items, not one whose first sentence drops the second)."""
    starts = [start]
    for m in re.finditer(r"[；;。]\s*", text[start:end]):
        q = start + m.end()
        last = _item_number(text[starts[-1]:end])
        # the next number only: "（一）…；（一）项所称…" and "一、…。二、三级医院…" hold no second item
        if q < end and ITEM_FAMILIES[family].match(text[q:end]) and last and _item_number(text[q:end]) == last + 1:
            starts.append(q)
    return starts


def _item_number(item: str) -> int | None:
    """The number of an item's marker: （四） 4, 十一、 11, 3. 3."""
    m = re.match(r"[（(]?([一二三四五六七八九十]{1,3}|\d{1,2})", item)
    return None if not m else int(m[1]) if m[1].isdigit() else chinese_number(m[1])


_CN_DIGITS = "零一二三四五六七八九"
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}


def chinese_number(text: str) -> int | None:
    """一百零五 -> 105, 十一 -> 11 (None when it is no number as Chinese texts write them: 九九, 第)."""
    total, digit = 0, None
    for ch in text.replace("两", "二").replace("〇", "零"):
        if ch in _CN_DIGITS:
            if digit:  # two digits in a row
                return None
            digit = _CN_DIGITS.index(ch)
        elif ch in _CN_UNITS:
            total += (1 if digit is None else digit) * _CN_UNITS[ch]
            digit = None
        else:
            return None
    return total + (digit or 0) or None


def _restarts(line: str) -> bool:
    """An item numbered one (（一）, 一是, 一、, 1.): a new list begins."""
    return bool(re.match(r"^(?:[（(]?[一1][）)、.．]|一[是要])", line))


def _first_sentence(text: str, start: int, end: int, limit: int) -> tuple[int, int]:
    """An item's span: up to its first sentence end (an item's heading), or `limit` characters at a comma."""
    for s, e in sentences(text, start, end, limit):
        while e > s and text[e - 1] in "\n ":
            e -= 1
        return start, e
    return start, end


# A clause that points at another article of the same legal text: "违反第十六条", "依照本条例第三十条", "违反本条例
# 第五十七条第二款规定". The reference graph of such a text is how a duty finds its penalty.
ARTICLE_REFERENCE = re.compile(rf"(?:违反|依照|依据|根据|按照|适用)(?:本条例|本办法|本规定)?(第[{NUM}\d]+条)")


def references(text: str, own_article: str = "") -> list[str]:
    """The articles a text refers to (in order, once each; its own article left out)."""
    return [a for a in dict.fromkeys(m.group(1) for m in ARTICLE_REFERENCE.finditer(text)) if a != own_article]
