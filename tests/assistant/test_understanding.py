"""The parts of understanding a question that need no index: what kind of fact it asks for, whether a text
states one, the answerability features and the fitted model (its sign constraints, its file)."""
import json
import logging

import numpy as np
import pytest

from assistant import calibration as calib
from assistant.lexicon import asked_types, expansions, holds_type, to_simplified, without_format_instructions
from assistant.pool import Pool
from assistant.retrieval import Passage


@pytest.mark.parametrize("question, kinds", [
    ("这项补贴一共多少钱？", ["price", "unit:钱"]),  # no word of penalty: a grant or a price, not a fine
    ("乱扔垃圾罚多少钱？", ["amount", "unit:钱"]),
    ("乱停车被抓到要交多少钱？", ["amount", "unit:钱"]),  # a breach: what it costs is a fine
    ("讲话说的“三项措施”是哪三项？", ["count:3"]),
    ("哪一条规定了这件事？", []),  # 哪一 asks which one, not a number of items
    ("试点最后选了哪几个城市？", ["places"]),
    ("这种狗属于哪些品种？", ["named:品种"]),
    ("今年的GDP是多少？", ["term:GDP"]),
    ("What is the GDP?", []),  # an English question: every word is Latin, none is a term of a Chinese one
    ("办完要几个工作日？", ["unit:个工作日"]),
    ("哪几个部门参加？", ["who"]),  # which ones: not a count of 个
    ("哪几条原则？", []),
    ("公园是哪一年建成的？", ["year"]),
    ("条例什么时候施行？", ["in_force"]),  # the date it takes effect, not any date it states
    ("本条例施行前建的违法建筑什么时候要拆？", ["date"]),  # a date before it took effect
    ("When does the regulation take effect?", ["in_force"]),
    ("停车场什么时候建成？", ["date"]),
    ("报告是哪位同志作的？", ["person"]),
    ("这件事由谁负责？", ["who"]),
    ("为什么要这样做？", []),
    ("那几个县以后怎么发展？", []),  # 那几个 points at some: no count asked
    ("这份通知的文号是多少？", ["docnum"]),
])
def test_asked_types(question, kinds):
    assert asked_types(question) == kinds


@pytest.mark.parametrize("kind, text, holds", [
    ("unit:天", "自收到通知之日起15日内提出", True),  # regulations write 天 as 日
    ("unit:天", "自2024年3月1日起施行", False),  # a date's day is not a number of days
    ("unit:钱", "处二百元以上一千元以下罚款", True),  # money is stated in 元
    ("unit:钱", "按照有关规定缴纳", False),
    ("year", "到2025年底基本建成", True),
    ("year", "自公布之日起施行", False),  # a date, but not a year
    ("date", "自公布之日起施行", True),
    ("in_force", "本条例自2012年1月1日起施行。", True),
    ("in_force", "2004年12月24日通过的《管理办法》同时废止。", False),  # a date, not the one it takes effect
    ("person", "同志们：今天我们召开会议", False),  # an audience, not a speaker
    ("person", "市长在会上指出", True),
    ("unit:个工作日", "应当在十二个月内开工", False),
    ("person", "刚才，有关同志通报了情况", False),  # those concerned: no one named
    ("docnum", "关于印发工作方案的通知国办发〔2018〕128号", True),
    ("docnum", "依照本条例第十六号规定", False),
    ("price", "违反规定的，处一百元以上五百元以下罚款", False),  # a fine states no price
    ("price", "收费标准为每次五角，处一百元罚款", False),
    ("price", "每户补助二千元", True),
    ("count:4", "坚持以绿荫城、以水润城、以文化城、以业兴城“四条路径”一起发力", True),
    ("count:4", "一是高位推进。二是精准推进。三是统筹推进。四是有序推进。", True),
    ("count:7", "一是交通秩序“治堵”。通过分时段免费乘坐公交、智能化疏“堵”提速、倡导文明出行等方式", False),
    ("count:3", "推动人才、土地等要素流动，努力开创融合、协调发展新局面", False),  # runs end at a comma
    ("places", "在全国选择10个左右有条件、有基础的城市开展试点", False),
    ("places", "深圳市、包头市、铜陵市等11个城市", True),
    ("named:品种", "禁止饲养烈性犬，具体品种和标准由省公安机关会同有关部门确定", False),  # handed on
    ("named:品种", "禁止饲养下列品种：藏獒、比特犬", True),
    ("named:品种", "禁止饲养烈性犬", True),  # not mentioned: unknown, not missing
    ("named:部门", "具体标准由市人民政府有关部门确定", True),  # the body named after 由 is no deferral of it
    ("term:GDP", "全市地区生产总值增长6%", True),  # its Chinese name, from the lexicon
    ("term:GDP", "城市建设提质取得成效", False),
])
def test_holds_type(kind, text, holds):
    assert holds_type(kind, text) is holds


def test_everyday_words_expand_to_official_ones_and_traditional_is_simplified():
    assert "罚款" in expansions("乱扔东西罚多少？")
    assert to_simplified("違法建設怎麼處罰") == "违法建设怎么处罚"


def test_english_words_expand_to_official_ones_whole_words_longest_first():
    from assistant.lexicon import subject_words

    got = expansions("Who fined the Urban Management bureau for demolished buildings?")
    assert {"罚款", "城市管理", "拆除"} <= set(got) and "城市" not in got  # the longest entry, any case, any form
    assert "政策" in expansions("Which policies apply?")  # policy, policies
    assert expansions("undefined parkway") == []  # whole words only: not "fine" in "undefined", "park" in "parkway"
    assert {"讲话", "停车"} <= set(subject_words("What does the speech say about parking?"))
    assert subject_words("What is the population of the city?") == []  # common words alone (marked ~)
    assert subject_words("Is it fine to eat raw fish?") == []  # fine is also "good"
    assert subject_words("xxxxxxxx") == [] and subject_words("123456") == []


def _passage(text: str, sentence: float = 0.9) -> Passage:
    return Passage(1, "d", "文件", [], "", text, 0, len(text), 1.0, dense=0.9, lexical=5.0, coverage=0.5,
                   sentence=sentence)


def _pool(query: str) -> Pool:
    return Pool(query, np.zeros(4), ["罚款"], [], {}, [0.8, 0.82, 0.85], [0.8, 0.81])


def test_the_asked_kind_of_fact_is_looked_for_in_what_the_answer_cites_not_in_every_passage():
    passages = [_passage("第一条 养护由管理单位负责。"), _passage("第九条 违反规定的，处五十元罚款。")]
    q = "不养护的罚多少钱？"
    cited_without_amount = calib.features(q, _pool(q), passages, "第一条 养护由管理单位负责。[1]")
    cited_with_amount = calib.features(q, _pool(q), passages, "第九条 违反规定的，处五十元罚款。[2]")
    assert cited_without_amount["type_missing"] == 1.0 and cited_without_amount["type_missing_passages"] == 0.0
    assert cited_with_amount["type_missing"] == 0.0
    english = calib.features("How much is the fee?", _pool("x"), passages, "处五十元罚款")
    assert english["non_chinese"] == 1.0 and np.isnan(english["coverage"])  # no lexical gate on English


def test_fitted_signs_are_the_natural_ones(caplog):
    """A signal whose fitted sign contradicts its meaning (here: more coverage, less answerable) is dropped."""
    rng = np.random.default_rng(0)
    samples = []
    for i in range(200):
        answerable = i % 4 != 0
        f = {"sentence_best": 0.9 + (0.03 if answerable else 0.0) + rng.normal(0, 0.01),
             "coverage": (0.2 if answerable else 0.6) + rng.normal(0, 0.05)}  # backwards on purpose
        samples.append(calib.Sample("q", None, set(), answerable, features=f))
    cal = calib.Calibration("e", features=["sentence_best", "coverage"], mean=[0, 0], scale=[1, 1], coef=[0, 0],
                            fill=[0, 0])
    cal = calib.fit_answerability(cal, samples)
    coef = dict(zip(cal.features, cal.coef))
    assert coef["sentence_best"] > 0 and coef["coverage"] == 0.0
    probs = [cal.probability(s.features) for s in samples]
    accuracy = np.mean([(p >= cal.threshold) == s.answerable for p, s in zip(probs, samples)])
    assert accuracy > 0.9


def test_calibration_file_round_trip_mismatch_warning_and_broken_file(tmp_path, caplog):
    cal = calib.Calibration("embedder-a", fill=[0.0] * len(calib.FEATURES), threshold=0.4)
    path = tmp_path / "cal.json"
    cal.save(path)
    assert calib.load("embedder-a", path).threshold == 0.4
    with caplog.at_level(logging.WARNING):
        calib.load("embedder-b", path)
    assert "embedder-a" in caplog.text and "miscalibrated" in caplog.text
    broken = json.loads(path.read_text())
    broken["coef"] = broken["coef"][:2]
    path.write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="calibrate"):
        calib.load("embedder-a", path)
    with caplog.at_level(logging.WARNING):
        generic = calib.load("embedder-c", tmp_path / "missing.json")
    assert generic.features == ["coverage"] and "generic gate" in caplog.text


@pytest.mark.parametrize("question, core", [
    ("停车位新增了多少个？请用表格回答。", "停车位新增了多少个？"),
    ("请分点列出城市更新的重点任务", "城市更新的重点任务"),
    ("公厕由谁负责维护，用一句话回答", "公厕由谁负责维护"),
    ("用英文回答：公厕由谁负责维护？", "公厕由谁负责维护？"),
    ("表格里的数据是什么意思？", "表格里的数据是什么意思？"),  # a question about a table is not an instruction
])
def test_instructions_on_the_answers_shape_are_not_retrieved_on(question, core):
    assert without_format_instructions(question) == core


def test_a_list_found_as_written_counts_only_with_its_enumeration_comma():
    from assistant.pool import longest_phrase

    text = "尤其是坚持规划、建设、管理一起做，城市建设提质"
    assert longest_phrase("规划、建设、管理指什么？", text) == len("规划、建设、管理")
    assert longest_phrase("建设、管理和规划", text) == len("建设、管理")
    assert longest_phrase("规划和建设和管理", text) == 0  # the words apart: bigram BM25's business
    assert longest_phrase("城市建设提质是什么", text) == 0  # a shared name is no list
    assert longest_phrase("绿化、 管理", "绿化、管理") == 5  # spaces in a question are not characters of the text
    assert longest_phrase("、", "、") == 0 and longest_phrase("", text) == 0
    assert longest_phrase("规划、", text) == 0  # a trailing 、 has no item after it
    long = "、".join(["交通", "能源", "水利"] * 170)  # a pasted list: linear, not quadratic
    assert longest_phrase(long, "交通、能源、水利") == len("交通、能源、水利")


def test_weights_are_fitted_by_the_ranking_the_retriever_uses():
    import random

    from assistant.pool import SIGNALS, Candidate, Weights
    from ingest.schema import Chunk

    rng = random.Random(7)
    samples = []
    for q in range(12):
        pool = Pool(f"q{q}", np.zeros(4), [], [], {}, [0.8], [0.8])
        for i in range(15):
            chunk = Chunk(doc_id="d", ordinal=i, text="x", char_start=0, char_end=1)
            cand = Candidate(chunk, **{name: rng.choice([0.0, 0.5, 1.0, rng.random()]) for name in SIGNALS})
            pool.candidates[f"d:{q}:{i}"] = cand
        gold = {f"d:{q}:{rng.randrange(15)}"}
        samples.append(calib.Sample(f"q{q}", pool, gold, True))
    grid = calib._GRID[::97]
    by_grid = calib._reciprocal_ranks(samples[0], np.array([w.vector() for w in grid]))
    for w, rr in zip(grid, by_grid):
        order = [k for k, _ in samples[0].pool.rank(w)]
        rank = 1 + min(order.index(g) for g in samples[0].gold)
        assert rr == pytest.approx(1 / rank if rank <= 5 else 0.0)
    best = calib.fit_weights(samples)
    assert isinstance(best, Weights) and best in calib._GRID


def test_the_one_document_a_question_names_as_its_source():
    from types import SimpleNamespace as D

    from assistant.lexicon import named_source

    docs = {d.doc_id: d for d in (D(doc_id="s", title="在全市推进会上的讲话"), D(doc_id="a", title="河南省物业管理条例"),
                                  D(doc_id="b", title="洛阳市城乡规划条例"))}
    assert named_source("讲话里对老旧小区改造是怎么说的？", docs).doc_id == "s"  # the one speech
    assert named_source("《河南省物业管理条例》第十条规定了什么？", docs).doc_id == "a"  # its whole title
    assert named_source("条例规定罚多少？", docs) is None  # two documents are 条例
    assert named_source("讲话和《河南省物业管理条例》都提到什么？", docs) is None  # two named: a comparison
    assert named_source("在公共场所大声讲话罚款吗？", docs) is None  # 讲话 as what people do, not where it is said
    docs |= {"n": D(doc_id="n", title="关于印发试点工作方案的通知"), "g": D(doc_id="g", title="城市市容和环境卫生管理条例"),
             "l": D(doc_id="l", title="洛阳市城市市容和环境卫生管理条例")}
    assert named_source("物业公司通知上说要涨物业费，需要业主同意吗？", docs) is None  # an everyday notice
    assert named_source("建设工程设计方案中要包括哪些内容？", docs) is None  # an everyday plan
    assert named_source("这份通知要求哪些城市试点？", docs).doc_id == "n"  # pointed at
    assert named_source("洛阳的城市市容和环境卫生管理条例怎么罚？", docs) is None  # inside another, whose place is named
    assert named_source("城市市容和环境卫生管理条例什么时候施行？", docs).doc_id == "g"  # named exactly
    assert named_source("洛阳市城市市容和环境卫生管理条例什么时候施行？", docs).doc_id == "l"  # the longest title


def test_article_numbers_in_digits_and_as_statutes_write_them():
    from assistant.retrieval import article_forms, in_statute_numbers

    assert article_forms("第20条") == {"第20条", "第二十条"} and article_forms("第一百零五条") == {"第一百零五条", "第105条"}
    assert article_forms("第110条") >= {"第一百一十条"} and article_forms("第十条") >= {"第10条"}
    assert in_statute_numbers("条例第48条和第105条") == "条例第四十八条和第一百零五条"



def test_the_named_article_of_the_one_named_document_ranks_first_in_its_order():
    from assistant.pool import Candidate, Pool, Weights
    from ingest.schema import Chunk

    def cand(doc, o, dense, article=0.0):
        return Candidate(Chunk(doc, o, "正文", 0, 2, doc, [], ""), dense=dense, article=article)

    pool = Pool("q", np.zeros(4), [], [], {"a:0": cand("a", 0, 0.9), "b:5": cand("b", 5, 0.2, 1.0),
                                          "b:6": cand("b", 6, 0.1, 1.0)}, [], [])
    w = Weights(1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert [k for k, _ in pool.rank(w)] == ["b:5", "b:6", "a:0"]  # first, and its two chunks in their order
    pool.candidates["c:5"] = cand("c", 5, 0.3, 1.0)  # two documents' 第五条 marked: no document named
    pool.invalidate()
    assert [k for k, _ in pool.rank(w)][0] == "a:0"


def test_a_question_that_names_no_subject():
    from assistant.followups import elliptical

    assert all(elliptical(q) for q in ("罚多少？", "归谁管？", "有什么处罚？", "罚款吗？"))
    assert not any(elliptical(q) for q in ("物业费多少？", "天气怎么样？", "洛阳GDP？", "那物业呢？"))  # 那…呢 refers back
