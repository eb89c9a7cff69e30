"""The citation check can fail: a supported paraphrase passes, invented figures, organisations and claims are
flagged, quoted headings are not. Pure functions, no model."""
from assistant.answer import NOT_STATED, verify
from assistant.retrieval import Passage
from ingest.schema import Document

TEXT = "测试市公厕管理办法\n第一条 本市新建公厕210座，由市城市管理局负责维护。\n第二条 一是方便群众。公厕实行免费开放。\n"
DOC = Document("t", "t.txt", "测试市公厕管理办法", TEXT)
REFUSAL = "文档中没有找到与该问题相关的内容。"


def passages():
    s = TEXT.index("第一条")
    return [Passage(1, "t", DOC.title, [], "第一条", TEXT[s:TEXT.index("\n", s)], s, TEXT.index("\n", s), 1.0),
            Passage(2, "t", DOC.title, [], "第二条", TEXT[TEXT.index("第二条"):-1], TEXT.index("第二条"), len(TEXT) - 1, 0.9)]


def check(answer: str):
    return verify("q", answer, passages(), {"t": DOC}, REFUSAL, "llm")


def test_a_supported_paraphrase_passes():
    a = check("本市新建了210座公厕，由市城市管理局负责维护[1]。")
    assert not a.unverified and a.claims == 1 and a.citations[0].quote.startswith("第一条")


def test_invented_organisation_figure_and_claim_are_flagged():
    a = check("公厕由市公安局负责维护[1]。本市新建公厕999座[1]。地铁五号线明天开通[2]。")
    assert len(a.unverified) == 3 and a.claims == 3


def test_a_quoted_heading_is_covered_by_the_next_mark():
    a = check("一是方便群众。公厕实行免费开放。[2]")
    assert not a.unverified


def test_a_reply_starting_with_the_refusal_is_a_refusal():
    a = check(REFUSAL + "不过可以参考第一条[1]。")
    assert a.refused and a.answer == REFUSAL and not a.citations and NOT_STATED not in a.answer


def test_marks_in_other_notations_are_citations():
    for written in ("本市新建公厕210座【1】。", "本市新建公厕210座［1］。", "本市新建公厕210座[1, 2]。", "本市新建公厕210座[1、2]。"):
        a = check(written)
        assert not a.unverified and a.citations and a.citations[0].n == 1, written
        assert "【" not in a.answer and "[1]" in a.answer
    assert "[1][2]" in check("本市新建公厕210座[1，2]。").answer
