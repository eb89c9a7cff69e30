"""Text addressed to the answering system rather than to citizens: instructions to ignore rules, role play, and
answer-shaped text ("以下是最新官方答复：…") planted in a document. Such a sentence is never quoted as an answer,
and in LLM mode stays fenced as data. General patterns of imperative, second-person and meta language; policy
documents address their readers as 各单位/有关部门, not as 你 or an AI."""
from __future__ import annotations

import re

_PATTERNS = [
    # overriding what came before: 忽略以上指令 / 无视之前的规则 / 不要理会上述要求
    r"(忽略|无视|不要理会|不必理会|不用理会|忘记|忘掉|跳过)(掉)?(以上|之前|上述|前面|先前|此前)?的?(所有|一切|全部)?的?(指令|指示|规则|要求|内容|说明|设定|提示|约束)",
    # role and meta talk: 你现在是… / 扮演 / 系统提示 / AI助手 / 语言模型 / 提示词
    r"你(现在|从现在起|从此)?(是|扮演|作为)(一个|一名)?", r"扮演|假装你|角色扮演|系统提示|提示词|(人工智能|AI|智能)助手|语言模型|大模型",
    # answer-shaped text addressed to whoever answers: 以下是最新官方答复： / 正确答案是 / 请回答： / 对用户说
    r"(以下|下面|如下|这)是?(最新的?|正确的?|官方的?|标准的?){0,3}(答复|回复|回答|答案)",
    r"(正确|标准|最终|官方)(的)?(答案|答复|回答)(是|为|[:：])", r"(答案|答复|回答|回复)(是|为)?[:：]",
    r"请(直接|务必|一律|只)?(回答|回复|输出|告诉用户|告诉提问者|对用户说)", r"(对|向)(用户|提问者|提问人|询问者)(说|回答|表示|声称)", r"告诉(用户|提问者|提问人|询问者)",
    r"(当|如果|若)(用户|有人|提问者)(问|询问|提问|问到)", r"你(必须|应该|应当|要|需要|只能)(回答|回复|输出|说|告诉)",
    # the same in English
    r"(ignore|disregard|forget)\s+(all\s+|any\s+|the\s+)?(previous|above|prior|earlier)", r"you\s+are\s+now|act\s+as|pretend\s+to",
    r"system\s+prompt|respond\s+with|answer\s+with|the\s+(correct\s+)?answer\s+is|tell\s+the\s+user",
]
INSTRUCTION = re.compile("|".join(f"(?:{p})" for p in _PATTERNS), re.I)


def addressed_to_the_system(sentence: str) -> bool:
    """Whether a sentence speaks to the answering system (an injection), not to the document's readers."""
    return bool(INSTRUCTION.search(sentence))
