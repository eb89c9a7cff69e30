"""The question lexicon in one place: general Chinese question words and cues, answer types, the everyday ->
official vocabulary (data/everyday_lexicon.tsv) and traditional -> simplified conversion. Every entry is general
language; none is taken from a test question."""
from __future__ import annotations

import functools
import re
from importlib import resources

# Words that make a sentence a question but say nothing about its subject: their bigrams carry no evidence.
QUESTION_WORDS = (
    "什么",  # what
    "哪些",  # which (plural)
    "多少",  # how many / how much
    "如何", "怎么", "怎样",  # how
    "是否",  # whether
    "为什么",  # why
    "哪个", "哪里",  # which / where
    "几个",  # how many (counted)
    "是多", "少个",  # straddling bigrams of 是多少 / 多少个
    "请问",  # polite opener
    "规定", "要求", "包括", "应当", "主要", "提出", "根据", "关于", "有关", "可以",  # verbs every policy text uses
    "我们",  # the asker
    "的是",  # a particle bigram
)

# Question phrases removed before a question's content words are taken (longest first inside the alternation).
QUESTION_PHRASES = re.compile(
    r"(被称为|称为|指的是|是指|什么意思|意思|所说的|所说|有何|何时|哪天|哪年|多长时间|多久|是什么|是多少|有哪些|包括哪些"
    r"|是哪些|有什么|是否|为什么|怎么样|怎么|怎样|如何|多少|哪些|什么|哪个|哪里|几个|几项|请问|分别|吗|呢|了)")

# How the asker wants the answer shaped ("请用表格回答", "分点列出", "用一句话概括"): says nothing about the subject, and
# its words would pull retrieval toward passages about tables or summaries. Removed before retrieval; an LLM still
# sees the whole question.
FORMAT_INSTRUCTION = re.compile(
    r"[，,。；;\s]*(?:请|麻烦|能否|可以)?(?:你)?(?:用|以|按)(?:表格|列表|要点|分点|条目|一句话|一段话|几句话|简短的话|简洁的语言|"
    r"通俗的话|大白话|英文|中文|markdown)(?:的)?(?:形式|方式|格式)?(?:来)?(?:回答|作答|说明|列出|总结|概括|表示|输出|介绍)?(?:一下)?[。！!]?"
    r"|[，,。；;\s]*(?:请)?(?:分点|逐条|简要|简单|简短|详细)(?:地)?(?:列出|回答|说明|介绍|概括|总结)(?:一下)?[。！!]?", re.I)


def without_format_instructions(question: str) -> str:
    """The question without instructions on the answer's shape (the rest unchanged; never empty)."""
    out = FORMAT_INSTRUCTION.sub("", question).strip(" ：:，,；;")
    return out or question


# A question asking for several items is answered by an enumeration.
LIST_CUE = re.compile(r"哪些|哪几|包括什么|包含什么|有什么|有几|几个方面|几项|都有")
# A question asking for a figure: a count, a rate, an amount, a period, a date.
NUMBER_CUE = re.compile(r"多少|几|比例|比率|数量|百分|率|面积|规模|金额|期限|时间|何时|哪年|日|多久|多长|多大|多高|多宽")

# A question about consequences: the penalty is often in another article that points back ("违反第十六条…").
PENALTY_CUE = re.compile(r"罚|处罚|处理|后果|责任|追究|怎么办|penalt|fine", re.I)

# Follow-up cues: a question that starts by pointing back (那/其中/它…) or ends with 呢 leans on the previous one.
FOLLOW_UP_START = re.compile(r"^(那么?|其中|另外|还有|此外|它|其|这个|这些|该|又|以及|and|what about)", re.I)
FOLLOW_UP_END = re.compile(r"呢[？?]?$")

# What kind of fact a question asks for, and the pattern of text that states such a fact. A question whose
# kind of fact no retrieved sentence states is a sign the documents don't answer it.
_NUM = r"[\d一二三四五六七八九十百千万两半]+(?:\.\d+)?"
# Units that follow 多少/几 in a question ("多少个工作日", "几年", "多少平方米"); 钱 is stated in 元.
_UNITS = ("个工作日", "工作日", "个月", "小时", "分钟", "平方米", "公顷", "公里", "千米", "万元", "元", "钱", "天", "日",
          "月", "年", "周", "米", "亩", "吨", "倍", "层", "辆", "座", "条", "项", "名", "位", "人", "户", "家", "所", "处",
          "次", "届", "个")
# (哪几个 / 哪几条 ask which ones, not how many: a list, not a count; 那几个 / 这几个 point at some, ask nothing.)
_ASKED_UNIT = re.compile(r"(?<![哪那这])(?:多少|几)(" + "|".join(_UNITS) + ")")
# Units a text may state in another word: 天 is written 日 in legal texts, money is stated in 元.
_SAME_UNIT = {"钱": "元", "天": "天|日", "日": "天|日", "个": "个|项|座|条|处|家|名"}
ANSWER_TYPES: dict[str, tuple[re.Pattern, re.Pattern]] = {
    # money: a fine or a price is stated in 元 (or as a share of a cost: 百分之五以上…罚款)
    "amount": (re.compile(r"罚多少|罚款多少|多少钱|金额|罚几|收费标准|how much", re.I),
               re.compile(_NUM + r"(?:元|万元|亿元)|百分之" + _NUM + r"|" + _NUM + r"倍")),
    # a period: 多久 / 多长时间 / 期限 is stated as a number of days, months, years
    "period": (re.compile(r"多久|多长时间|期限|有效期|how long", re.I),
               re.compile(_NUM + r"(?:个)?(?:工作日|日|天|个月|月|年|周|小时)")),
    # a year: 哪一年 / 哪年 is stated as a year (2025年, 年底 of a named year), not a day or "from promulgation"
    "year": (re.compile(r"哪一?年|几几年|which year", re.I),
             re.compile(r"\d{4}年|[〇零一二三四五六七八九]{4}年|今年|明年|去年|年内|年底")),
    # a point in time: 哪天 / 什么时候 / 何时
    "date": (re.compile(r"哪一?天|什么时候|何时|几月|when", re.I),
             re.compile(r"\d{4}年|" + _NUM + r"月|" + _NUM + r"日|之日|施行|年底|年前|以前")),
    # when a text takes effect: every statute states it in one sentence, "本条例自…起施行" (a date asked with
    # 施行 / 生效 is this one; see asked_types)
    "in_force": (re.compile(r"(?:施行|生效)(?:的|了)?(?:日期|时间)|(?:哪一?天|什么时候|何时|几月|when)[^，,。？?]{0,8}(?:施行|生效)"
                            r"(?![前后以])|(?:施行|生效)(?![前后以])[^，,。？?]{0,8}(?:哪一?天|什么时候|何时)|take effect|in force"
                            r"|effective date", re.I),  # (施行前 / 施行后 / 施行以来 date something else)
                 re.compile(r"自[^。；;]{0,40}起(?:施行|生效|实施)|(?:施行|生效|实施)之日")),
    # an organisation: 哪个部门 / 谁负责 / 由谁
    "who": (re.compile(r"哪(?:个|些|几个)(?:部门|单位|机关)|什么部门|谁负责|由谁|谁来|找谁|归谁|who", re.I),
            re.compile(r"部门|政府|委员会|机关|单位|企业|机构|办公室|局|厅|部|人员|负责人|主任|书记|市长")),
    # a document's number (文号): the issuing office's abbreviation, the year in 〔〕 and a serial, 国办发〔2018〕128号
    "docnum": (re.compile(r"文号|发文字号|文件号|document number", re.I),  # (字号 alone is also a trade name)
               re.compile(r"[\u4e00-\u9fff]{1,8}[〔［\[(（]\d{4}[〕］\])）]\s*\d+\s*号")),
    # a person: 哪位 / 谁讲的 is stated by a name with a title or 同志 (同志们 addresses an audience and 有关同志 "those
    # concerned": they name no one)
    "person": (re.compile(r"哪位|谁讲的|谁写的|谁作的|作者是谁|讲话人是谁"),
               re.compile(r"书记|市长|省长|县长|区长|主任|部长|局长|厅长|总理|主席|(?<!有关|各位|广大|全体|相关|其他)同志(?!们)|先生|女士")),
}


# A question about a breach asks what it costs the offender even without the word 罚 ("乱停车被抓到要交多少钱"):
# its amount is a fine, not a price.
_BREACH = re.compile(r"违反|违规|违法|违章|违建|乱|不按|没按|擅自|随意|随便|被抓|被查|被逮|抓到|查到|逮到|逮住|抓住")
# "哪四条 / 哪五个 / 哪七项" asks for that many items by name: a text that lists fewer does not answer it.
_ASKED_COUNT = re.compile(r"哪([两二三四五六七八九十]|\d{1,2})(?:条|项|个|类|种|件|点|方面|大|部分|步|句|化|字|招|策)")
_CN_DIGIT = {"一": 1, "两": 2, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
# An item marker that starts a clause: 一是 / 二是 … (the speech's enumeration), （一）（二）… and 1. 2. …
_ORDINAL = re.compile(r"(?:^|[。；;：:，,\s“”\"])([一二三四五六七八九十]{1,2})是|[（(]([一二三四五六七八九十]{1,2}|\d{1,2})[）)]"
                      r"|(?:^|\s)(\d{1,2})[.．、]")
# "哪些城市 / 哪几个地方" asks for places by name: two named places in a row (XX市、YY县) state some.
_ASKED_PLACES = re.compile(r"哪(?:些|几个|几座)(?:城市|地方|地区|省份|省|市|县)")
_PLACES = re.compile(r"(?<![城全本该各我])[\u4e00-\u9fff]{2,4}[市县省](?:、|和|及|与)[\u4e00-\u9fff]{2,4}[市县省]")

# "有哪些X / 什么X" asks for the items themselves; a text whose every mention of them hands the matter on
# ("X由…确定", "另行制定") names the body that will decide, not the items.
# (为什么 asks why; 什么时候 / 什么是 / 什么样 … are no named items.)
_ASKED_NAMED = re.compile(r"(?:哪些|哪几种|哪几类|(?<!为)什么)(?!时候|意思|样|地方|[是叫要能会可有在做算就都])"
                          r"([\u4e00-\u9fff]{2})")
_DEFERRED = re.compile(r"由[^，,。；;]{1,40}?(?:确定|规定|制定|公布)|另行(?:规定|制定|确定|公布)")

# A Latin-letter term in a Chinese question (GDP, PPP, PM2.5) names one thing with no everyday paraphrase: a
# text that has neither it nor its Chinese name (from the lexicon) does not speak of it.
_LATIN_TERM = re.compile(r"(?<![A-Za-z])[A-Za-z]{2,}(?:\d+(?:\.\d+)?)?(?![A-Za-z])")
# Where a clause ends (a list of items and a fine's amount stay within one) and where a sentence ends.
_CLAUSE_END = re.compile(r"[，,。；;！？!?]")
_SENTENCE_END = re.compile(r"[。；;！？!?]")


def _number(token: str) -> int:
    """A small count written in digits or Chinese numerals (一 … 十九)."""
    if token.isdigit():
        return int(token)
    if len(token) == 2 and token[0] == "十":
        return 10 + _CN_DIGIT.get(token[1], 0)
    if len(token) == 2 and token[1] == "十":
        return 10 * _CN_DIGIT.get(token[0], 0)
    return _CN_DIGIT.get(token, 0)


def listed_items(text: str) -> int:
    """How many items a text lists at most: its highest item marker, or its longest run of 、-separated items
    within one clause (a generous count: it only ever says a text lists too few)."""
    marked = max((_number(next(g for g in m.groups() if g)) for m in _ORDINAL.finditer(text)), default=0)
    runs = max((part.count("、") + 1 for part in _CLAUSE_END.split(text) if "、" in part), default=0)
    return max(marked, runs)


def asked_types(question: str) -> list[str]:
    """The kinds of fact a question asks for (possibly none: an open or yes/no question); a quantity asked
    with its unit ('多少个工作日') is its own kind, 'unit:工作日', and so is a number of items asked by name
    ('哪四条', 'count:4'). An amount asked with no word of penalty is a price, a fee or a grant, which a fine
    does not state: 'price'."""
    kinds = [name for name, (ask, _) in ANSWER_TYPES.items() if ask.search(question)]
    if "amount" in kinds and not (PENALTY_CUE.search(question) or _BREACH.search(question)):
        kinds[kinds.index("amount")] = "price"
    if "in_force" in kinds:  # the date asked is the one the text takes effect on, not any date it states
        kinds = [k for k in kinds if k not in ("date", "year")]
    for unit in _ASKED_UNIT.findall(question):
        kinds.append(f"unit:{unit}")
    for count in _ASKED_COUNT.findall(question):
        if _number(count) >= 2:
            kinds.append(f"count:{_number(count)}")
    if _ASKED_PLACES.search(question):
        kinds.append("places")
    for noun in _ASKED_NAMED.findall(question):
        kinds.append(f"named:{noun}")
    if han_share(question) >= 0.5:
        kinds.extend(f"term:{t}" for t in _LATIN_TERM.findall(question))
    return kinds


def one_sentence_types(question: str) -> list[str]:
    """The asked kinds one sentence can state (a list of items or of places is gathered from several)."""
    return [t for t in asked_types(question) if not t.startswith(("count:", "named:", "term:")) and t != "places"]


def holds_type(kind: str, text: str) -> bool:
    """Whether a text states a fact of this kind."""
    if kind == "price":  # an amount in a clause that is not a fine
        return any(ANSWER_TYPES["amount"][1].search(c) and "罚" not in c for c in _CLAUSE_END.split(text))
    if kind.startswith("count:"):
        return listed_items(text) >= int(kind[6:])
    if kind == "places":
        return bool(_PLACES.search(text))
    if kind.startswith("term:"):
        names = (kind[5:],) + everyday_lexicon().get(kind[5:].upper(), ())
        return any(n.lower() in text.lower() for n in names)
    if kind.startswith("named:"):  # unknown unless every clause naming the items defers them to someone else
        noun = kind[6:]
        naming = [s for s in _SENTENCE_END.split(text) if noun in s]
        return not naming or any(not (m := _DEFERRED.search(s)) or s.find(noun) > m.start() for s in naming)
    if kind.startswith("unit:"):
        unit = kind[5:]
        units = _SAME_UNIT.get(unit, unit.removeprefix("个"))
        # A count of days is not the day of a date: "3月1日" states no number of days.
        after_month = r"(?<![月\d〇零一二三四五六七八九十两])" if unit in ("天", "日") else ""
        return bool(re.search(after_month + _NUM + r"\s*(?:个|余|多)?(?:" + units + ")", text))
    return bool(ANSWER_TYPES[kind][1].search(text))


@functools.lru_cache(maxsize=1)
def everyday_lexicon() -> dict[str, tuple[str, ...]]:
    """everyday word -> official words, from data/everyday_lexicon.tsv."""
    out: dict[str, tuple[str, ...]] = {}
    text = resources.files("assistant").joinpath("data/everyday_lexicon.tsv").read_text(encoding="utf-8")
    for line in text.splitlines():
        if not line.strip() or line.startswith("#") or "\t" not in line:
            continue
        key, _, values = line.partition("\t")
        out[key.strip()] = tuple(v.strip() for v in values.split(",") if v.strip())
    return out


@functools.lru_cache(maxsize=1)
def english_lexicon() -> dict[str, tuple[tuple[str, ...], bool]]:
    """English word or phrase -> (official Chinese words, whether it shows a question is about the documents'
    subjects), from data/english_lexicon.tsv (a key marked ~ does not)."""
    out: dict[str, tuple[tuple[str, ...], bool]] = {}
    text = resources.files("assistant").joinpath("data/english_lexicon.tsv").read_text(encoding="utf-8")
    for line in text.splitlines():
        if not line.strip() or line.startswith("#") or "\t" not in line:
            continue
        key, _, values = line.partition("\t")
        out[key.strip().lstrip("~").lower()] = (tuple(v.strip() for v in values.split(",") if v.strip()),
                                                not key.startswith("~"))
    return out


def _english_matches(question: str) -> list[tuple[int, int, str]]:
    """(start, end, key) of the English lexicon's entries in a question: whole words, any case, a plural or
    -ed/-ing form too; from the left, the longest entry at each place, no overlaps."""
    if not re.search(r"[A-Za-z]{2}", question):
        return []
    keys, pattern = _english_pattern()
    return [(m.start(), m.end(), keys[int(m.lastgroup[1:])]) for m in pattern.finditer(question)]


@functools.lru_cache(maxsize=1)
def _english_pattern() -> tuple[list[str], re.Pattern]:
    """One pattern for every entry, the longest first (an alternation takes its first match at a place)."""
    keys = sorted(english_lexicon(), key=len, reverse=True)
    alts = "|".join(f"(?P<k{i}>" + _inflected(k) + ")" for i, k in enumerate(keys))
    return keys, re.compile(rf"(?<![A-Za-z])(?:{alts})(?![A-Za-z])", re.I)


def _inflected(key: str) -> str:
    """An entry's words, its last in any regular form: policy/policies, fine/fined/fining, own/owned/owning."""
    *head, last = re.split(r"[\s-]+", key)
    if last.endswith("y") and len(last) > 2 and last[-2] not in "aeiou":
        tail = re.escape(last[:-1]) + "(?:y|ies|ied)"
    elif last.endswith("e"):
        tail = re.escape(last[:-1]) + "(?:e|es|ed|ing)"
    else:
        tail = re.escape(last) + "(?:s|es|ed|ing)?"
    return r"[\s-]+".join([re.escape(w) for w in head] + [tail])


def subject_words(question: str) -> list[str]:
    """The Chinese words of the documents' subjects an English question uses (its unmarked entries' words)."""
    lex = english_lexicon()
    return [w for _, _, key in _english_matches(question) if lex[key][1] for w in lex[key][0]]


def expansions(question: str) -> list[str]:
    """Official words for the everyday words in a question (longest match first, no overlaps), excluding
    words the question already uses; for an English question, the Chinese words of its English ones."""
    lex = everyday_lexicon()
    found: list[str] = []
    taken = [False] * len(question)
    for key in sorted(lex, key=len, reverse=True):
        for m in re.finditer(re.escape(key), question):
            if any(taken[m.start():m.end()]):
                continue
            taken[m.start():m.end()] = [True] * (m.end() - m.start())
            found.extend(v for v in lex[key] if v not in question and v not in found)
    english = english_lexicon()
    for _, _, key in _english_matches(question):
        found.extend(v for v in english[key][0] if v not in question and v not in found)
    return found


@functools.lru_cache(maxsize=1)
def _t2s():
    from opencc_purepy import OpenCC

    return OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Traditional (and variant) characters to simplified, with OpenCC's tables; simplified text is unchanged."""
    if not any("\u3400" <= ch <= "\u9fff" for ch in text):
        return text
    return _t2s().convert(text)


def han_share(text: str) -> float:
    """Share of a text's letters that are Chinese characters (an English question scores near 0)."""
    letters = [ch for ch in text if ch.isalpha()]
    return sum(1 for ch in letters if "\u3400" <= ch <= "\u9fff") / len(letters) if letters else 0.0


# Kinds of document (这篇讲话, 该条例, 本通知, 讲话里…).
KINDS = ("讲话", "条例", "通知", "方案", "办法", "规定", "意见", "决定", "细则", "文件", "报告", "文章")

# A document named as where something is said: a kind that is no everyday word (讲话里, 条例中规定), or any kind
# pointed at (这份通知, 该方案, 本办法); "通知上说", "设计方案中" use the words for everyday things.
DOCUMENT_WORDS = ("讲话", "条例")  # kinds of document that are no everyday word
SOURCE = re.compile(rf"({'|'.join(DOCUMENT_WORDS)})(?:里|中|上|说|提|讲|要求|指出|强调|明确|规定|写)"
                    rf"|(?:这篇|这份|该|本|此)({'|'.join(KINDS)})")


def named_source(question: str, docs: dict) -> object | None:
    """The one document a question says its answer is in: named by its whole title (not when it is inside a
    longer title whose place the question names too), or by a kind of document only one indexed document is, as where something is said (讲话里… when
    one speech is indexed). None when it names none, or more than one (a comparison), or mentions a kind other
    documents are too ("条例怎么罚")."""
    q = question.replace("《", "").replace("》", "")
    named = {d.doc_id: d for d in docs.values() if d.title and d.title in q}
    named = {k: d for k, d in named.items()  # the longest title named: 甲市X条例 holds X条例
             if not any(o.doc_id != k and d.title in o.title for o in named.values())}
    for d in list(named.values()):  # a title inside a longer one the question names in part, by its place
        for o in docs.values():     # ("甲市的X条例" means 甲市X条例, not the X条例 inside it)
            place = o.title.replace(d.title, "").rstrip("市省县区") if o.doc_id != d.doc_id and d.title in o.title else ""
            if place and place in q:
                return None
    rest = q
    for d in named.values():
        rest = rest.replace(d.title, " ")
    sources = {k for pair in SOURCE.findall(rest) for k in pair if k}
    for kind in (k for k in KINDS if k in rest):
        of_kind = [d for d in docs.values() if kind in d.title]
        if kind in sources:
            if len(of_kind) != 1:
                return None  # which document of the kind is meant is not said
            named[of_kind[0].doc_id] = of_kind[0]
        elif kind in DOCUMENT_WORDS and any(d.doc_id not in named for d in of_kind):
            return None  # another document is mentioned
    return next(iter(named.values())) if len(named) == 1 else None
