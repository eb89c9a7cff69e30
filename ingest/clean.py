"""Boilerplate removal and normalisation: general rules for scraped pages and gov.cn HTML."""
from __future__ import annotations

import re
import unicodedata

# Lines that are page furniture on Chinese CMS and content-farm sites, wherever they occur.
FURNITURE = re.compile(
    r"^(欢迎(访问|光临|来到)\S{0,30}[!！。]?$"
    r"|(当前位置|您的位置|您现在的位置|所在位置)\s*[:：]"
    r"|.{0,10}(浏览次数|阅读次数|点击次数|点击数|访问量|浏览量)\s*[:：]"
    r"|[【\[]?\s*(打印|关闭|打印本页|关闭窗口|收藏|纠错|返回顶部)\s*[】\]]?(\s*[【\[]?\s*(打印|关闭|打印本页|关闭窗口|收藏|纠错|返回顶部)\s*[】\]]?)*$"
    r"|[【\[(（]?\s*责任编辑\s*[:：]"
    r"|(字号|分享到|扫一扫|来源)\s*[:：]?\s*[【\[]?(大|中|小|微信|微博)"
    r"|(上一篇|下一篇)\s*[:：]"
    # a navigation bar: three or more short links between bars ("首页 | 新闻 | 联系我们"); a Markdown table row
    # starts with a bar and is kept
    r"|[^|。；，]{1,12}(\s*\|\s*[^|。；，]{1,12}){2,}$"
    # a Markdown table's alignment row (|---|:--:|) is markup
    r"|\|?(\s*:?-{3,}:?\s*\|)+(\s*:?-{3,}:?\s*)?$"
    r")"
)
# A site footer: a short line with a copyright or ICP licence mark. A sentence or an article that mentions
# 版权所有 (an article of a copyright law) is body text, so only short lines that are not sentences count.
FOOTER = re.compile(r"版权所有|ICP备|Copyright|©", re.I)
# "下面是小编为大家整理的……供大家参考" and its variants: an editor's preface, not the document.
PREFACE = re.compile(r"^(下面|以下)是.{0,12}(为大家|为您|给大家)(整理|收集|准备|精心).{0,200}(供大家|供您|希望|欢迎).{0,12}$")
# From here on a scraped page lists other articles; nothing after it belongs to the document.
TAIL = re.compile(r"^(推荐访问|推荐阅读|相关阅读|相关文章|相关推荐|热门排行|热门文章|猜你喜欢|延伸阅读|本文链接|上一篇|下一篇)")
HEADING = re.compile(
    r"^(第[一二三四五六七八九十百零〇\d]+[章节条编]|[一二三四五六七八九十]+[、.]|[(（][一二三四五六七八九十\d]+[)）]"
    r"|\d+[.、]|[一二三四五六七八九十]+[是要]|首先|其次|最后)"
)
MD_MARKUP = re.compile(r"^\s{0,3}#{1,6}\s+|^\s*>\s?|\*\*")
COMMENT = re.compile(r"<!--.*?-->", re.S)
SENTENCE_END = "。！？!?：:”’」』…"


def normalise(text: str) -> str:
    """NFKC (no-break spaces, full-width digits and letters), but keep Chinese full-width punctuation."""
    out = []
    for ch in text:
        code = ord(ch)
        if 0xFF01 <= code <= 0xFF5E and not ch.isalnum():
            out.append(ch)
        else:
            out.append(unicodedata.normalize("NFKC", ch))
    return "".join(out)


def _footer(line: str) -> bool:
    return bool(FOOTER.search(line)) and len(line) <= 60 and not HEADING.match(line) and line[-1:] not in "。；;"


def drop_furniture(lines: list[str]) -> list[str]:
    """Remove navigation, counters, print/close links, editor credits, footers and prefaces."""
    return [ln for ln in lines if not (FURNITURE.match(ln) or PREFACE.match(ln) or _footer(ln))]


def cut_tail(lines: list[str]) -> list[str]:
    """Drop everything from a 'recommended / related / top ranking' marker in the second half of a page."""
    total = sum(len(ln) for ln in lines) or 1
    seen = 0
    for i, ln in enumerate(lines):
        if TAIL.match(ln) and seen > total * 0.5:
            return lines[:i]
        seen += len(ln)
    return lines


def _title_key(line: str) -> str:
    """A title with its year and spaces removed: the same title of another year is a copy, "第2季度" is not."""
    return re.sub(r"\d{4}|\s", "", line)


def drop_repeated_title(lines: list[str], window: int = 8) -> list[str]:
    """A scraped page repeats its title above the body (sometimes with a different year); keep the last copy."""
    keys = [_title_key(ln) for ln in lines[: window + 1]]
    drop = set()
    for i in range(min(window, len(lines))):
        ln = lines[i]
        if len(ln) < 6 or len(ln) > 80 or ln[-1] in SENTENCE_END + "。;；,，":
            continue
        if any(keys[j] == keys[i] for j in range(i + 1, len(keys))):
            drop.add(i)
    return [ln for i, ln in enumerate(lines) if i not in drop]


def join_broken_lines(lines: list[str]) -> list[str]:
    """Join a line to the next when the sentence plainly continues (no end mark, next is not a heading)."""
    out: list[str] = []
    for ln in lines:
        if out and out[-1] and ln and not (ln.startswith("|") or out[-1].startswith("|")):  # table rows stay rows
            prev = out[-1]
            continues = prev[-1] not in SENTENCE_END and len(prev) >= 20
            if continues and not HEADING.match(ln) and not HEADING.match(prev[:12]) or (
                prev[-1] in ";；" and not HEADING.match(ln) and not HEADING.match(prev)
            ):
                out[-1] = prev + ln
                continue
        out.append(ln)
    return out


def clean(text: str) -> str:
    """Raw document text -> cleaned text: the text every chunk offset points into."""
    text = COMMENT.sub("", normalise(text))
    lines = [MD_MARKUP.sub("", ln) for ln in text.split("\n")]
    lines = [re.sub(r"[ \t\u3000]+", " ", ln).strip() for ln in lines]
    lines = cut_tail(drop_furniture(lines))
    # Blank lines separate paragraphs in the source; keep that as an empty marker for joining, then drop.
    lines = join_broken_lines(lines)
    lines = drop_repeated_title([ln for ln in lines if ln])
    return "\n".join(lines).strip()
