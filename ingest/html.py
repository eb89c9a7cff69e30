"""HTML -> text: keep the main content block, drop navigation, scripts and page furniture."""
from __future__ import annotations

import re

from bs4 import BeautifulSoup

BLOCK_TAGS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "section", "article", "td"}
DROP_TAGS = ["script", "style", "noscript", "nav", "header", "footer", "iframe", "form", "button", "select", "aside"]
# gov.cn's metadata table labels: 标题 / 发文机关 / 发文字号 / 成文日期 / 发布日期
META_LABELS = {"标题": "title", "发文机关": "issuer", "发文字号": "doc_number", "成文日期": "date", "发布日期": "published"}


def _meta_table(soup: BeautifulSoup) -> dict:
    meta: dict = {}
    cells = soup.find_all("td")
    for i, td in enumerate(cells[:-1]):
        label = re.sub(r"[\s\u3000:：]", "", td.get_text())
        if label in META_LABELS and META_LABELS[label] not in meta:
            value = cells[i + 1].get_text(" ", strip=True)
            if value:
                meta[META_LABELS[label]] = value
    return meta


def _main_block(soup: BeautifulSoup):
    """The smallest container that still holds 90% of the page's paragraph text: the article body on almost
    every CMS page (the outer containers also hold navigation, the inner ones lose paragraphs)."""
    sizes = [(el, sum(len(p.get_text(strip=True)) for p in el.find_all("p")))
             for el in soup.find_all(["div", "td", "article", "section", "main"])]
    most = max((n for _, n in sizes), default=0)
    if most == 0:
        return soup.body or soup
    return min((el for el, n in sizes if n >= 0.9 * most), key=lambda el: len(el.get_text()))


def html_to_text(html: str) -> tuple[str, dict]:
    """Return (text with one block per line, metadata found in the page)."""
    soup = BeautifulSoup(html, "lxml")
    meta = _meta_table(soup)
    if not meta.get("title") and soup.title and soup.title.string:
        meta["page_title"] = soup.title.string.strip()
    for tag in soup(DROP_TAGS):
        tag.decompose()
    block = _main_block(soup)
    for br in block.find_all("br"):
        br.replace_with("\n")
    for el in block.find_all(BLOCK_TAGS):
        el.insert_before("\n")
        el.insert_after("\n")
    text = block.get_text()
    text = "\n".join(line.strip() for line in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return text, meta
