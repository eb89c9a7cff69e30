"""The citation check can fail: a supported paraphrase passes, invented figures, organisations and claims are
flagged, quoted headings are not. Pure functions, no model."""
from assistant.answer import NOT_STATED
from assistant.verify import verify
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


def test_a_department_is_named_by_its_whole_title_not_the_generic_words_it_shares():
    """A model that answers with another department whose title ends in the same words ("…行政主管部门") as the
    one the passage names has not been borne out by it; the passage's own department, in other words, has."""
    from assistant.verify import supported

    source = "规划行政主管部门负责对违法建筑的认定;城市管理执法部门负责查处违法建筑、毁坏绿地等行为;"
    assert not supported("物业管理行政主管部门负责查处违法建筑", source)
    assert not supported("交通管理执法部门负责查处违法建筑", source)
    assert supported("违法建筑由城市管理执法部门负责查处", source)
    assert supported("规划行政主管部门负责认定违法建筑", source)
    named = check("市城市管理局。[1]")  # the name alone: no claim the check can hold against the passage
    assert named.claims == 0 and check("由市城市管理局负责维护。[1]").claims == 1


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


def test_a_withheld_draft_is_behind_a_control_and_escaped():
    """Issue 13.1: the user sees why the model's draft was withheld and can open it; its text is never markup."""
    from assistant.answer import Answer
    from assistant.ui import render_answer

    a = Answer("q", "新建公厕210座。[1]", False, mode="extractive-fallback",
               replaced={"reason": "有陈述未能在引用段落中核实 / claims the cited passages do not bear out",
                         "answer": "<b>新建停车场有55个</b>[1]", "unverified": ["新建停车场有55个"]})
    html = render_answer(a)
    assert "<details" in html and "查看未通过核实的草稿" in html and "有陈述未能在引用段落中核实" in html
    assert "&lt;b&gt;新建停车场有55个" in html and "<b>" not in html
    down = Answer("q", "新建公厕210座。[1]", False, mode="extractive-fallback",
                  replaced={"reason": "大模型不可用或超时 / the LLM failed", "answer": "", "unverified": []})
    assert "<details" not in render_answer(down) and "大模型暂不可用或超时" in render_answer(down)


def test_the_model_reads_the_top_passages_and_those_the_draft_quotes_each_line_numbered():
    """Issue 13.3: a small model reads fewer passages (on a CPU, reading is most of an answer's time), numbers
    kept so its marks still point at the right source, and every line carries its passage's number."""
    from assistant.llm import LLMAnswerer
    from tests.fakes import fake_chat

    ps = [Passage(n, "t", DOC.title, [], "", f"第{n}段第一行\n第{n}段第二行", 0, 13, 1.0) for n in range(1, 7)]
    llm = LLMAnswerer(fake_chat("x"), REFUSAL, passages=2)
    assert [p.n for p in llm.reads(ps, "甲。[5]乙。[1]")] == [1, 2, 5]
    messages = llm.prompt.format_messages(**llm.inputs("q", llm.reads(ps, "")))
    lines = messages[1].content.splitlines()
    assert lines[0] == "<资料>" and lines[-3:] == ["</资料>", "问题：q", "回答："]
    assert [ln[:3] for ln in lines[1:-3]] == ["[1]"] * 3 + ["[2]"] * 3 and "第2段第二行" in lines[6]
    assert REFUSAL in messages[0].content and "示例" in messages[0].content


def test_a_model_answer_that_drops_the_quoted_answers_figures_is_caught():
    from assistant.verify import missing_lead_figures

    quoted = "同志们：[1]8月3日至4日，全省推进会在XX召开。[1]会议总结了经验。[2]"
    assert missing_lead_figures("推进会于2023年召开。[1]", quoted) == ["8", "3", "4"]
    assert missing_lead_figures("推进会8月3日至4日在XX召开。[1]", quoted) == []
    assert missing_lead_figures("新建公厕1210座。[1]", "新建公厕210座。[1]") == ["210"]  # a figure is whole
    assert missing_lead_figures("任期五年。[1]", "业主委员会每届任期不超过五年。[1]") == []


def test_an_amount_grafted_onto_another_subject_is_not_verified():
    """A model's claim that takes a fine from a clause on one subject and states it for the subject asked about is
    unverified, though every figure and most words are in the cited passage; a paraphrase of the clause is not."""
    from assistant.verify import grafted

    text = "第八十五条 在物业管理区域内饲养烈性犬和大型犬的，由公安机关没收犬只，并处五千元以上一万元以下罚款。"
    doc = Document("d", "d.txt", "某条例", text)
    ps = [Passage(1, "d", "某条例", [], "第八十五条", text, 0, len(text), 1.0)]
    graft = "露天烧烤的，由公安机关没收犬只，并处五千元以上一万元以下罚款。[1]"
    a = verify("露天烧烤罚多少？", graft, ps, {"d": doc}, REFUSAL, "llm")
    assert a.unverified == [graft[:-3]]
    plain = "饲养大型犬的，公安机关没收犬只，并可处五千元以上一万元以下罚款。[1]"
    assert not verify("养大型犬罚多少？", plain, ps, {"d": doc}, REFUSAL, "llm").unverified
    assert grafted("没收犬只。", "x") == ""  # no amount: the ordinary support check decides


def test_a_kept_answer_whose_document_changed_shows_its_own_quote():
    """A conversation reopened after its document was replaced: the card shows the quote the answer had, marked as
    such, never a highlight at the old offsets of the new text."""
    from assistant.answer import Answer, Citation
    from assistant.ui import render_sources

    c = Citation(1, "t", DOC.title, "", "第二条", "新建公厕210座", 5, 13, 1.0)
    changed = Document("t", "t.txt", DOC.title, "第一条 全部改写了。第二条 新的条文内容完全不同。")
    html_ = render_sources(Answer("q", "新建公厕210座。[1]", False, [c]), {"t": changed})
    assert "<mark>新建公厕210座</mark>" in html_ and "原文已更新或删除" in html_
    assert "<mark>新建公厕210座</mark>" in render_sources(Answer("q", "新建公厕210座。[1]", False, [c]), {})
