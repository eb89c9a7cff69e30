"""Issue 14.11: a greeting says what can be asked; "这篇讲话的主要内容" gets the document's outline, cited."""
import pytest

from assistant import starters
from ingest.schema import Chunk, Document

SPEECH = Document("speech", "speech.txt", "2023年度在全市百城建设提质暨文明城市创建工作推进会上讲话",
                  "讲话\n一、回看走过的路\n一是完善了城市功能。正文。\n二是提升了城市品质。正文。\n二、远眺前行的路\n正文。\n")
REGS = Document("regs", "regs.txt", "测试市养犬管理规定", "测试市养犬管理规定\n第一章 总则\n第一条 正文。\n")
DOCS = {"speech": SPEECH, "regs": REGS}


@pytest.mark.parametrize("text, expected", [
    ("你好", True), ("您好！", True), ("谢谢", True), ("hello", True),
    ("你好，公厕建了多少座？", False), ("好", False), ("谢谢你们的工作有哪些规定", False),
])
def test_greetings_are_only_greetings(text, expected):
    assert starters.is_greeting(text) is expected


def test_a_greeting_lists_what_is_indexed():
    reply = starters.greeting("你好", DOCS)
    assert "《测试市养犬管理规定》" in reply and "《2023年度" in reply
    assert starters.greeting("谢谢", DOCS).startswith("不客气")
    assert "还没有收录" in starters.greeting("你好", {})
    nine = {f"d{i}": Document(f"d{i}", f"d{i}.txt", f"第{i}号文件", "正文") for i in range(9)}
    assert all(f"《第{i}号文件》" in starters.greeting("你好", nine) for i in range(9))  # nine: every one
    many = {f"d{i:02d}": Document(f"d{i:02d}", "x.txt", f"文件{i:02d}", "正文") for i in range(20)}
    assert "等 20 份文件" in starters.greeting("你好", many) and "《文件08》" not in starters.greeting("你好", many)


@pytest.mark.parametrize("question, doc_id", [
    ("总结一下这篇讲话的主要内容", "speech"),
    ("这篇讲话讲了什么？", "speech"),
    ("《测试市养犬管理规定》的主要内容是什么？", "regs"),
    ("五项治理的主要内容是什么？", None),  # a topic's content, not a document's
    ("讲话总结的“五个推进”分别是哪五个？", None),  # a list inside the speech
    ("心得体会15篇讲了什么？", None),  # no indexed document named
    ("这份条例的罚款标准是多少？", None),  # not about the whole document
    ("讲话中关于安全生产讲了什么？", None),  # a topic inside the speech
    ("这篇讲话总结了哪些成绩？", None),
    ("《测试市养犬管理规定》关于犬只登记的主要内容是什么？", None),
    ("试点方案对产业结构调整有什么要求？", None),
    ("讲话的主要内容", None),  # a kind, not pointed at: which speech?
    ("请概括一下本讲话", "speech"),
    ("测试市养犬管理规定主要讲了什么", "regs"),
])
def test_which_document_an_outline_question_names(question, doc_id):
    found = starters.outline_target(question, DOCS)
    assert (found.doc_id if found else None) == doc_id


def test_with_one_document_a_pointer_alone_names_it():
    one = {"speech": SPEECH}
    assert starters.outline_target("全文讲了什么？", one) is SPEECH
    assert starters.outline_target("基本内容讲了什么？", one) is None  # 本 inside a word points at nothing


def test_the_outline_quotes_each_heading_at_its_exact_place():
    t = SPEECH.text
    chunks = [Chunk("speech", 0, "", t.index("一是"), t.index("二是"), section=["一、回看走过的路", "一是完善了城市功能"]),
              Chunk("speech", 1, "", t.index("二是"), t.index("二、"), section=["一、回看走过的路", "二是提升了城市品质"]),
              Chunk("speech", 2, "", t.index("二、"), len(t), section=["二、远眺前行的路"])]
    lead, lines, passages = starters.outline(SPEECH, reversed(chunks))
    assert SPEECH.title in lead
    assert lines.splitlines() == ["一、回看走过的路[1]", "　　一是完善了城市功能[2]", "　　二是提升了城市品质[3]",
                                  "二、远眺前行的路[4]"]
    for p in passages:
        assert t[p.char_start:p.char_end] == p.text
    assert passages[2].section == ["一、回看走过的路", "二是提升了城市品质"]
    assert starters.outline(SPEECH, []) == ("", "", [])


@pytest.mark.integration
def test_starters_through_the_assistant(corpus_assistant):
    hello = corpus_assistant.ask("你好")
    assert not hello.refused and "《河南省物业管理条例》" in hello.answer and hello.mode == "greeting"
    a = corpus_assistant.ask("总结一下这篇讲话的主要内容")
    assert not a.refused and a.mode == "outline" and not a.unverified
    assert len(a.citations) >= 3 and "一、回看走过的路" in a.answer
    docs = corpus_assistant.documents()
    for c in a.citations:
        assert docs[c.doc_id].text[c.char_start:c.char_end] == c.quote
    assert corpus_assistant.ask("五项治理指哪五项？").mode == "extractive"  # ordinary questions are untouched
