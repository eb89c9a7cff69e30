"""Follow-up questions made standalone, offline: an anaphoric question (那…呢, 其中…) takes the previous question's
subject; the prompt an LLM gets for the same rewrite."""
from __future__ import annotations

import re
from typing import Sequence

from .lexicon import ANSWER_TYPES, FOLLOW_UP_END, FOLLOW_UP_START, PENALTY_CUE, QUESTION_PHRASES

CONDENSE_PROMPT = ("根据对话历史，把用户的后续问题改写成一个不依赖上下文、可以单独理解的完整问题。"
                   "只输出改写后的问题，不要回答。\n\n对话历史：\n{history}\n\n后续问题：{question}")


def user_turns(history: Sequence) -> list[str]:
    """History as [{'role','content'}] or [(user, assistant)] -> the user's questions."""
    out = []
    for turn in history or ():
        if isinstance(turn, dict):
            if turn.get("role") == "user" and turn.get("content"):
                out.append(str(turn["content"]))
        elif isinstance(turn, (list, tuple)) and turn:
            out.append(str(turn[0]))
    return out


def refers_back(question: str) -> bool:
    """An anaphoric question (那…呢, 其中, 它…) that cannot stand alone."""
    q = question.strip()
    return bool(FOLLOW_UP_START.match(q) or FOLLOW_UP_END.search(q))


def elliptical(question: str) -> bool:
    """A question that names no subject of its own ("罚多少？", "归谁管？", "有什么处罚？"): with its question words
    and the words of the kind of fact it asks for taken out, no word of two characters is left. After another
    question, it asks about that one's subject ("物业费多少？" names its own)."""
    from .retrieval import query_terms

    if refers_back(question):
        return False
    core = question
    for rx in [ask for ask, _ in ANSWER_TYPES.values()] + [PENALTY_CUE, QUESTION_PHRASES]:
        core = rx.sub(" ", core)
    return not [t for t in query_terms(core) if len(t) >= 2]


def condense_rule(question: str, history: Sequence) -> str:
    """Offline follow-up rule: an anaphoric question (那…呢, 其中…) gets the previous question's subject."""
    return join_subject(question, history) if refers_back(question) else question.strip()


def join_subject(question: str, history: Sequence) -> str:
    """The question with the previous question's subject in front of it."""
    prev = user_turns(history)
    q = question.strip()
    if not prev:
        return q
    subject = QUESTION_PHRASES.sub("", prev[-1]).strip(" ？?。")
    core = FOLLOW_UP_START.sub("", q).strip()
    core = re.sub(r"呢([？?]?)$", r"\1", core)
    return f"{subject} {core}"


def history_lines(history: Sequence) -> list[str]:
    out = []
    for turn in history:
        if isinstance(turn, dict):
            out.append(str(turn.get("content", "")))
        else:
            out.extend(str(t) for t in turn if t)
    return out
