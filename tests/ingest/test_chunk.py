import re

import pytest

from ingest.chunk import sentences, split
from ingest.clean import clean
from ingest.loaders import load
from tests.conftest import SPEECH, corpus_files


@pytest.fixture(scope="module")
def cleaned():
    return {p.name: (clean(load(p).text), load(p).meta.get("title", "")) for p in corpus_files()}


def test_offsets_are_exact_for_every_chunk_of_the_corpus(cleaned):
    for name, (text, title) in cleaned.items():
        chunks = split(text, name, title)
        assert chunks, name
        for c in chunks:
            assert text[c.char_start:c.char_end] == c.text
        # Every character of the document is in some chunk (nothing dropped between chunks).
        covered = set()
        for c in chunks:
            covered.update(range(c.char_start, c.char_end))
        gaps = [i for i in range(len(text)) if i not in covered and not text[i].isspace()]
        assert not gaps, (name, gaps[:5])


def test_chunk_size_stays_near_target(cleaned):
    sizes = [len(c.text) for text, t in cleaned.values() for c in split(text, "d", t, size=300, overlap=60)]
    assert max(sizes) <= 300 * 1.4
    assert sum(sizes) / len(sizes) > 100


def test_speech_sections_and_lead_sentences(cleaned):
    text, _ = cleaned[SPEECH.name]
    chunks = split(text, "speech")
    paths = {c.section_path for c in chunks}
    assert "一、回看走过的路,切实增强使命担当 > 一是完善了城市功能" in paths
    assert "三、走好当下的路,不断取得新的更大成效 > 一要强化规划引领" in paths
    road = next(c for c in chunks if "360.8公里" in c.text)
    assert road.section == ["一、回看走过的路,切实增强使命担当", "一是完善了城市功能"]
    assert any(c.text.startswith("二、远眺前行的路") for c in chunks)  # a heading starts its chunk


def test_articles_are_addressable_units(cleaned):
    text, title = cleaned["luoyang_city_appearance_sanitation_regs.txt"]
    chunks = split(text, "ly", title)
    art = [c for c in chunks if c.article == "第十一条"]
    assert art and art[0].text.startswith("第十一条") and art[0].section == ["第二章 市容环境卫生责任区制度"]
    assert all("第十二条" not in c.text for c in art)
    assert len({c.article for c in chunks if c.article}) >= 40


def test_sentences_never_split_inside_numbers():
    text = "路网密度提升至6.04公里;新增停车位1.6万余个,比例达95%以上!完成。"
    spans = [text[s:e] for s, e in sentences(text, 0, len(text), 300)]
    assert spans == ["路网密度提升至6.04公里;", "新增停车位1.6万余个,比例达95%以上!", "完成。"]


def test_overlap_repeats_trailing_sentences():
    text = "".join(f"第{i}句话的内容比较长一些用来凑够长度。" for i in range(40))
    chunks = split(text, "d", size=100, overlap=40)
    assert len(chunks) > 5
    assert all(b.char_start < a.char_end for a, b in zip(chunks, chunks[1:]))
    assert all(re.fullmatch(r"(第\d+句话的内容比较长一些用来凑够长度。)+", c.text) for c in chunks)


def test_list_items_on_one_line_are_items_each():
    """A statute that puts two items on one line ("（三）…； （四）…；") lists both: the line's first sentence alone
    dropped （四） from an answer."""
    from ingest.chunk import list_items

    t = "第二十六条 禁止下列活动：\n（一）刻划；\n（二）堆放；\n（三）在屋顶搭建； （四）违章搭建；\n（五）拆改。\n第二十七条 下一条。"
    got = [t[s:e] for s, e in list_items(t, t.index("：") + 1)]
    assert got == ["（一）刻划；", "（二）堆放；", "（三）在屋顶搭建；", "（四）违章搭建；", "（五）拆改。"]
    two = "第九条 下列事项：\n（一）刻划；\n（二）堆放； （三）搭建；\n"
    capped = [two[s:e] for s, e in list_items(two, two.index("：") + 1, max_items=2)]
    assert capped == ["（一）刻划；", "（二）堆放；"]  # the cap holds inside a line too
    odd = "第九条 下列事项：\n（一）刻划；（一）项所称刻划，是指刻字。\n（二）堆放。"
    assert [odd[s:e] for s, e in list_items(odd, odd.index("：") + 1)] == ["（一）刻划；", "（二）堆放。"]  # not 4+1
