import codecs
from pathlib import Path

import pytest

from ingest.loaders import decode, load, split_header
from ingest.schema import EncodingError, UnsupportedDocument
from tests.conftest import CORPUS, write

TEXT = "第一条 为了加强城市市容和环境卫生管理，制定本条例。\n第二条 本条例自2024年1月1日起施行。\n"


@pytest.mark.parametrize("data", [
    TEXT.encode("utf-8"), codecs.BOM_UTF8 + TEXT.encode("utf-8"), TEXT.encode("gb18030"), TEXT.encode("gbk"),
    codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"), codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"),
], ids=["utf8", "utf8-bom", "gb18030", "gbk", "utf16le", "utf16be"])
def test_encodings_are_detected_from_bytes(data):
    assert decode(data) == TEXT


def test_gbk_crlf_file_from_the_corpus(tmp_path):
    raw = load(CORPUS / "raw" / "henan_civilized_behavior_regs_2020.gbk_crlf.txt")
    assert "\r" not in raw.text and "河南省文明行为促进条例" in raw.text and "第一条" in raw.text


def test_header_block_becomes_metadata():
    meta, body = split_header("title: 某条例\nissuer: 某机关\ndate: 2020-01-01\n---\n正文")
    assert meta == {"title": "某条例", "issuer": "某机关", "date": "2020-01-01"} and body == "正文"
    assert split_header("没有头部的正文\n---\n") == ({}, "没有头部的正文\n---\n")


def test_govcn_html_keeps_the_body_and_metadata():
    raw = load(CORPUS / "raw" / "govcn_wufei_city_2018_page.html")
    assert raw.meta["title"] == "国务院办公厅关于印发“无废城市”建设试点工作方案的通知"
    assert raw.meta["doc_number"] == "国办发〔2018〕128号" and raw.meta["issuer"] == "国务院办公厅"
    assert "（一）重大意义" in raw.text and "试点目标" in raw.text
    for junk in ("window.print", "AddFavorite", "索 引 号", "yidongkehuduan"):
        assert junk not in raw.text


def test_pdf_with_chinese_text(tmp_path):
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    path = tmp_path / "reg.pdf"
    c = canvas.Canvas(str(path))
    c.setFont("STSong-Light", 12)
    c.drawString(72, 720, "第一条 本市新建停车位不少于1200个。")
    c.save()
    assert "停车位不少于1200个" in load(path).text


def test_docx(tmp_path):
    import docx

    d = docx.Document()
    d.core_properties.title = "测试通知"
    d.add_paragraph("一、活动时间")
    d.add_paragraph("宣传周定于6月5日举行。")
    d.save(tmp_path / "n.docx")
    raw = load(tmp_path / "n.docx")
    assert raw.meta["title"] == "测试通知" and "宣传周定于6月5日举行。" in raw.text


def _blank_pdf(path: Path) -> Path:
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path))
    c.rect(100, 100, 200, 200)
    c.save()
    return path


@pytest.mark.parametrize("name,make,reason", [
    ("empty.txt", lambda p: write(p, ""), "empty file"),
    ("binary.txt", lambda p: p.write_bytes(b"\x7fELF\x00\x01\x02" * 200), "binary content"),
    ("trunc.pdf", lambda p: p.write_bytes(b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog"), "unreadable PDF"),
    ("scan.pdf", _blank_pdf, "no text layer"),
    ("x.exe", lambda p: p.write_bytes(b"MZ"), "unsupported file type '.exe'"),
    ("bad.txt", lambda p: p.write_bytes(bytes([0x81, 0x20, 0xfe, 0x7f]) * 50), "not UTF-8"),
    ("fake.docx", lambda p: write(p, "不是 Word 文件"), "unreadable DOCX"),
])
def test_bad_input_raises_a_clear_reason(tmp_path, name, make, reason):
    path = tmp_path / name
    make(path)
    with pytest.raises((UnsupportedDocument, EncodingError)) as e:
        load(path)
    assert reason in str(e.value)


def test_too_large_and_missing(tmp_path):
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:
        f.truncate(50 * 1024 * 1024)
    with pytest.raises(UnsupportedDocument, match="over the 20 MB limit"):
        load(big)
    with pytest.raises(UnsupportedDocument, match="no such file"):
        load(tmp_path / "nope.txt")
