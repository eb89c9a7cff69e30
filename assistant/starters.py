"""Conversation starters that are not questions about a passage: a greeting, and "what does this document say"
(answered with the document's outline, from its own headings, each line cited). General Chinese only; what
they find comes from the indexed documents."""
from __future__ import annotations

import re
from typing import Iterable

from ingest.schema import Chunk, Document

from .retrieval import Passage

# A message that is only a greeting or thanks (a few characters, nothing asked).
GREETING = re.compile(r"^(?:你好|您好|嗨|哈喽|hi|hello|hey|在吗|在不在|早上好|上午好|中午好|下午好|晚上好|早|"
                      r"谢谢|多谢|感谢|谢了|thanks|thank you)[呀啊哦吖！!。.~～，,\s]*$", re.I)
THANKS = re.compile(r"谢|thank", re.I)
# Asking for a document as a whole: its main content, gist, outline, or a summary of it.
WHOLE = re.compile(r"主要内容|大意|要点|提纲|大纲|框架|结构|目录|主要讲|讲了(?:些|哪些)?什么|说了(?:些|哪些)?什么|写了(?:些)?什么|"
                   r"(?:总结|概括|归纳|梳理)(?:一下)?(?:它|其|这篇|该|本)?[^的]{0,16}[？?。！!]*$|summar", re.I)
# A document named by its kind, pointed at (这篇讲话, 该条例) or alone (讲话的主要内容).
KINDS = ("讲话", "条例", "通知", "方案", "办法", "规定", "意见", "决定", "细则", "文件", "报告")
KIND = re.compile(r"(?:这篇|这份|这个|该|本|此)?(" + "|".join(KINDS) + r")")
MAX_LINES = 24


def is_greeting(question: str) -> bool:
    return bool(GREETING.match(question.strip()))


def greeting(question: str, docs: dict[str, Document]) -> str:
    """A short reply that says what can be asked: the indexed titles."""
    titles = [f"《{d.title}》" for d in sorted(docs.values(), key=lambda d: d.doc_id)]
    shown = "、".join(titles[:8]) + (f"等 {len(titles)} 份文件" if len(titles) > 8 else "")
    head = "不客气！" if THANKS.search(question) else "您好！"
    if not titles:
        return head + "目前还没有收录文件，请管理员先导入文件。"
    return (f"{head}我可以回答已收录文件中的问题，并标出每句话的出处。目前收录了：{shown}。"
            "可以问具体的数字、条款、职责、处罚，或者让我列出某份文件的主要内容。")


def outline_target(question: str, docs: dict[str, Document]) -> Document | None:
    """The document a "主要内容 / 讲了什么 / 总结一下" question asks about, when it names one unambiguously: by
    (most of) its title, or by its kind when only one indexed document is of that kind."""
    q = question.replace("《", "").replace("》", "")
    if not WHOLE.search(q) or not docs:
        return None
    named = [d for d in docs.values() if d.title and (d.title in q or _shared(d.title, q) >= 0.6)]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        return max(named, key=lambda d: (_shared(d.title, q), len(d.title)))
    kinds = {m.group(1) for m in KIND.finditer(q)}
    if len(docs) == 1 and (kinds or re.search(r"这篇|这份|该文|本文", q)):
        return next(iter(docs.values()))
    of_kind = [d for d in docs.values() if any(k in d.title for k in kinds)]
    return of_kind[0] if len(of_kind) == 1 else None


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
    cursor, top = 0, ""
    for level, head in heads[:MAX_LINES]:
        probe = head.rstrip("…").strip()
        at = doc.text.find(probe, cursor) if probe else -1
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
