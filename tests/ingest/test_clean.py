from ingest.clean import clean, cut_tail, drop_furniture, drop_repeated_title, join_broken_lines, normalise
from tests.conftest import SPEECH


def test_nfkc_replaces_no_break_space_and_keeps_chinese_punctuation():
    assert normalise("95%\u00a0和76.5%，（一）１２") == "95% 和76.5%，（一）12"


def test_furniture_lines_are_dropped_on_any_page():
    lines = ["欢迎访问某某网!", "当前位置: 首页 > 政策", "| 浏览次数:", "阅读次数：35", "【打印】 【关闭】", "打印本页 关闭窗口",
             "责任编辑：张三", "(责任编辑: 李四)", "版权所有：某市人民政府", "正文第一句。"]
    assert drop_furniture(lines) == ["正文第一句。"]


def test_editor_preface_is_dropped():
    assert drop_furniture(["下面是小编为大家整理的2023年度工作总结,供大家参考。", "正文。"]) == ["正文。"]
    assert drop_furniture(["以下是为大家整理的范文,希望对您有帮助。", "正文。"]) == ["正文。"]


def test_tail_after_recommendations_is_cut_only_in_second_half():
    body = ["正文" * 50] * 3
    assert cut_tail(body + ["推荐访问:讲话 会上", "热门排行", "别的文章"]) == body
    assert cut_tail(["相关阅读是正文开头的小标题"] + body) == ["相关阅读是正文开头的小标题"] + body


def test_repeated_title_keeps_the_last_copy_even_with_another_year():
    lines = ["2024年度在全市推进会上讲话", "2023年度在全市推进会上讲话", "同志们:"]
    assert drop_repeated_title(lines) == ["2023年度在全市推进会上讲话", "同志们:"]


def test_lines_broken_mid_sentence_are_joined_but_items_and_titles_are_not():
    lines = ["所谓“转段”,就是由原来的试点先行到全面推开;", "所谓“里程碑”,就是通过创建推动发展。",
             "第十一条 责任人按照下列规定确定：", "（一）实行物业管理的居住区，由物业服务企业负责；", "（二）其他。", "一、总体要求", "正文。"]
    out = join_broken_lines(lines)
    assert out[0] == "所谓“转段”,就是由原来的试点先行到全面推开;所谓“里程碑”,就是通过创建推动发展。"
    assert out[1:] == lines[2:]


def test_speech_clutter_never_survives_cleaning():
    text = clean(SPEECH.read_text(encoding="utf-8"))
    for junk in ("有用文档网", "浏览次数", "小编", "推荐访问", "热门排行", "傅雷家书", "2024年度在全市"):
        assert junk not in text, junk
    assert text.startswith("2023年度在全市百城建设提质暨文明城市创建工作推进会上讲话\n同志们:")
    assert "95% 和76.5%" in text and "\u00a0" not in text
    assert text.rstrip().endswith("作出新的更大贡献!")


def test_markdown_and_html_comments_are_stripped():
    assert clean("# 标题\n\n<!-- INFO END -->\n## 第一章 总则\n**第一条** 正文。") == "标题\n第一章 总则\n第一条 正文。"


def test_boilerplate_rules_keep_body_text():
    """A Markdown table, an article about copyright and numbered titles are content, not page furniture."""
    table = "| 指标 | 2020年 | 2023年 |\n|---|:---:|---:|\n| 绿化覆盖率 | 41.2% | 43.8% |"
    out = clean(f"城市指标如下。\n{table}\n首页 | 新闻中心 | 联系我们")
    assert {"| 绿化覆盖率 | 41.2% | 43.8% |", "| 指标 | 2020年 | 2023年 |"} <= set(out.split("\n"))  # rows stay rows
    assert "---" not in out and "联系我们" not in out  # alignment row and navigation bar go
    article = "第十条 作品上标注“版权所有”的，不影响他人依法合理使用该作品。"
    assert clean(f"{article}\n版权所有：某市人民政府 豫ICP备12345678号") == article
    titles = ["2023年第1季度报告", "2023年第2季度报告", "正文。"]
    assert drop_repeated_title(titles) == titles
