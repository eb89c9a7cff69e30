"""Conversation starters that are not questions about a passage: a greeting, and "what does this document say"
(answered with the document's outline, from its own headings, each line cited). General Chinese only; what
they find comes from the indexed documents."""
from __future__ import annotations

import re
from typing import Iterable

from ingest.schema import Chunk, Document

from .lexicon import KINDS
from .retrieval import Passage

# A message that is only a greeting or thanks (a few characters, nothing asked).
GREETING = re.compile(r"^(?:你好|您好|嗨|哈喽|hi|hello|hey|在吗|在不在|早上好|上午好|中午好|下午好|晚上好|早|"
                      r"谢谢|多谢|感谢|谢了|thanks|thank you)[呀啊哦吖！!。.~～，,\s]*$", re.I)
THANKS = re.compile(r"谢|thank", re.I)
# Asking for a document as a whole: its main content, gist or outline, or a summary of it.
WHOLE = re.compile(r"主要内容|大意|提纲|大纲|主要讲|讲了(?:些|哪些)?什么|说了(?:些|哪些)?什么|写了(?:些)?什么|"
                   r"(?:总结|概括|归纳|梳理)(?:一下)?|summar", re.I)
# A document pointed at by its kind (这篇讲话, 该条例, 本通知).
POINTED = re.compile(r"(?:这篇|这份|这个|该|本|此|整篇)(" + "|".join(KINDS) + r")|这篇|这份|整篇|全文")
# What may surround the document and the cue in such a request; anything else left over is a topic inside the
# document ("关于物业费的主要内容", "讲话中关于安全生产讲了什么"), answered by retrieval, not by an outline.
FILLER = re.compile(r"请|帮我|帮忙|给我|麻烦|你|能否|可以|一下|简要|简单|地|的|是|有|哪些|什么|吗|呢|了|全部|整体|"
                    r"介绍|内容|文件|文章|《|》|[\s，,。.！!？?：:；;、“”\"'（）()]")
MAX_LINES = 24
MAX_TITLES = 12  # a greeting lists every title up to this many


def is_greeting(question: str) -> bool:
    return bool(GREETING.match(question.strip()))


def greeting(question: str, docs: dict[str, Document]) -> str:
    """A short reply that says what can be asked: the indexed titles."""
    titles = [f"《{d.title}》" for d in sorted(docs.values(), key=lambda d: d.doc_id)]
    # every title of a small collection (cutting 9 at 8 left out one document, the speech); the first 8 of more
    shown = "、".join(titles) if len(titles) <= MAX_TITLES else "、".join(titles[:8]) + f"等 {len(titles)} 份文件"
    head = "不客气！" if THANKS.search(question) else "您好！"
    if not titles:
        return head + "目前还没有收录文件，请管理员先导入文件。"
    return (f"{head}我可以回答已收录文件中的问题，并标出每句话的出处。目前收录了：{shown}。"
            "可以问具体的数字、条款、职责、处罚，或者让我列出某份文件的主要内容。")


def outline_target(question: str, docs: dict[str, Document]) -> Document | None:
    """The document a "主要内容 / 讲了什么 / 总结一下" question asks about as a whole: named by its title, or
    pointed at (这篇讲话) when one indexed document is of that kind; None when anything but the document and the
    request is left (a topic inside it), or when the document is ambiguous."""
    if not WHOLE.search(question) or not docs:
        return None
    q = question.replace("《", "").replace("》", "")
    named = [d for d in docs.values() if d.title and d.title in q]
    fuzzy = [d for d in docs.values() if d.title and _shared(d.title, q) >= 0.6]
    if named or fuzzy:
        candidates = named or fuzzy
        if len(candidates) != 1:
            return None
        doc = candidates[0]
        rest = _without(q, doc.title)
    else:
        pointed = POINTED.search(q)
        if not pointed:
            return None
        kind = pointed.group(1)
        of_kind = [d for d in docs.values() if kind and kind in d.title] if kind else []
        if kind and len(of_kind) == 1:
            doc = of_kind[0]
        elif len(docs) == 1:
            doc = next(iter(docs.values()))
        else:
            return None
        rest = q[:pointed.start()] + q[pointed.end():]
    rest = FILLER.sub("", WHOLE.sub("", rest))
    return doc if len(rest) <= 1 else None


def _without(text: str, title: str) -> str:
    """The text without the runs (2+ characters) it shares with the title: a title quoted in part still goes."""
    out, i = [], 0
    while i < len(text):
        j = i + 1
        while j <= len(text) and text[i:j] in title:
            j += 1
        if j - 1 - i >= 2:
            i = j - 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _shared(title: str, text: str) -> float:
    """Share of a title's character pairs that the text contains."""
    pairs = {title[i:i + 2] for i in range(len(title) - 1)}
    return sum(1 for p in pairs if p in text) / len(pairs) if pairs else 0.0


def outline(doc: Document, chunks: Iterable[Chunk]) -> tuple[str, str, list[Passage]]:
    """(lead, lines, passages): the document's first two heading levels in reading order, one line each with its
    [n], each passage the heading's exact span in the stored text. Empty when the document has no headings."""
    heads: list[tuple[int, str]] = []  # (level, heading) in order of first appearance
    seen: set[tuple[str, ...]] = set()
    for c in sorted(chunks, key=lambda c: c.char_start):
        for level in range(min(2, len(c.section))):
            path = tuple(c.section[:level + 1])
            if path not in seen:
                seen.add(path)
                heads.append((level, c.section[level]))
    note = ""
    if len(heads) > MAX_LINES:
        heads, note = [(lv, h) for lv, h in heads if lv == 0], "（只列出一级标题）"
    lines: list[str] = []
    passages: list[Passage] = []
    cursor, top, text = 0, "", doc.text
    for level, head in heads[:MAX_LINES]:
        probe = head.rstrip("…").strip()
        at = text.find(probe, cursor) if probe else -1
        if at < 0:
            continue
        cursor = at + len(probe)
        top = head if level == 0 else top
        n = len(passages) + 1
        section = [head] if level == 0 else [top, head]
        passages.append(Passage(n, doc.doc_id, doc.title, section, "", probe, at, cursor, 1.0))
        lines.append(f"{'　　' if level else ''}{probe}[{n}]")
    if not lines:
        return "", "", []
    return f"《{doc.title}》的主要内容（按文中的标题）{note}：", "\n".join(lines), passages
