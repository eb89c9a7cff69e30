"""path -> raw text and metadata, for txt, md, html, pdf and docx in any common Chinese encoding."""
from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from pathlib import Path

from .schema import EncodingError, UnsupportedDocument

SUPPORTED = {".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx"}
HEADER_KEYS = ("title", "issuer", "doc_number", "date", "source")
# Limits on what a file expands to, checked before the expensive step where possible: a few hundred KB of
# zipped XML or PDF streams can unpack into millions of paragraphs and gigabytes of memory. The largest
# document of the corpus is ~19 thousand characters; a 1,000-page compendium is ~2 million.
MAX_TEXT_CHARS = 5_000_000
MAX_PARAGRAPHS = 200_000
MAX_PAGES = 3_000
MAX_DOCX_XML_BYTES = 50 * 1024 * 1024
# A paragraph element under any namespace prefix, empty (<w:p/>) or not (<w:p>, <w:p w:rsidR=…>): 4+ bytes.
_PARAGRAPH_TAG = re.compile(rb"<(?:\w{1,10}:)?p[\s/>]")


@dataclass
class RawDocument:
    """Text as it came out of the file, before cleaning, with any metadata the file declares."""

    text: str
    meta: dict = field(default_factory=dict)


def decode(data: bytes) -> str:
    """Detect the encoding from the bytes (BOMs, then strict UTF-8, then GB18030), never from the name."""
    if data.startswith(codecs.BOM_UTF8):
        return data[3:].decode("utf-8")
    for bom, enc in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):
            try:
                return data[2:].decode(enc)
            except UnicodeDecodeError as e:
                raise EncodingError(f"starts with a UTF-16 byte-order mark but is not valid UTF-16: {e}") from e
    if b"\x00" in data[:8192]:
        raise UnsupportedDocument("binary content (NUL bytes) - not a text document")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError as e:
        raise EncodingError(f"not UTF-8, UTF-16 or GB18030/GBK (undecodable byte at offset {e.start})") from e
    # GB18030 maps almost any byte string; real Chinese text is mostly CJK. Reject noise.
    cjk = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff")
    if cjk < 0.2 * max(1, sum(1 for ch in text if not ch.isascii())):
        raise EncodingError("bytes decode as GB18030 but give no readable Chinese text")
    return text


def split_header(text: str) -> tuple[dict, str]:
    """Split a leading `key: value` block ended by a `---` line into metadata and body."""
    lines = text.split("\n")
    meta: dict = {}
    for i, line in enumerate(lines[:40]):
        s = line.strip()
        if s == "---":
            if "title" in meta or len(meta) >= 2:
                return meta, "\n".join(lines[i + 1:])
            return {}, text
        m = re.match(r"^([a-z_]+)\s*:\s*(.*)$", s)
        if not m:
            return {}, text
        meta[m.group(1)] = m.group(2).strip()
    return {}, text


def read(path: Path, max_bytes: int = 20 * 1024 * 1024) -> bytes:
    """The file's bytes, after the checks that need no parsing (exists, supported type, not empty, not too big)."""
    if not path.exists():
        raise UnsupportedDocument("no such file")
    if not path.is_file():
        raise UnsupportedDocument("not a regular file")
    ext = path.suffix.lower()
    if ext not in SUPPORTED:
        raise UnsupportedDocument(f"unsupported file type '{ext or '(none)'}' (supported: {', '.join(sorted(SUPPORTED))})")
    size = path.stat().st_size
    if size == 0:
        raise UnsupportedDocument("empty file")
    if size > max_bytes:
        raise UnsupportedDocument(f"file is {size / 2**20:.1f} MB, over the {max_bytes / 2**20:g} MB limit (ingest.max_file_mb)")
    return path.read_bytes()


def parse(path: Path, data: bytes) -> RawDocument:
    """Bytes of a file of the type its extension names -> text and metadata, within the expansion limits."""
    raw = _parse(path, data)
    if len(raw.text) > MAX_TEXT_CHARS:
        raise UnsupportedDocument(f"the file expands to {len(raw.text):,} characters, over the {MAX_TEXT_CHARS:,} "
                                  "limit: split it into smaller documents")
    lines = raw.text.count("\n") + 1
    if lines > MAX_PARAGRAPHS:
        raise UnsupportedDocument(f"the file expands to {lines:,} paragraphs, over the {MAX_PARAGRAPHS:,} limit")
    return raw


def _parse(path: Path, data: bytes) -> RawDocument:
    match path.suffix.lower():
        case ".pdf":
            return _load_pdf(data)
        case ".docx":
            return _load_docx(data)
        case ".html" | ".htm":
            from .html import html_to_text

            text, meta = html_to_text(decode_html(data))
            return RawDocument(text, meta)
        case _:
            text = decode(data).replace("\r\n", "\n").replace("\r", "\n")
            meta, body = split_header(text)
            return RawDocument(body, meta)


def load(path: Path, max_bytes: int = 20 * 1024 * 1024) -> RawDocument:
    """Read one file into text; raise UnsupportedDocument or EncodingError with a reason a person can act on."""
    return parse(path, read(path, max_bytes))


def decode_html(data: bytes) -> str:
    """HTML declares its charset; honour it before guessing."""
    m = re.search(rb"charset\s*=\s*[\"']?([A-Za-z0-9_-]+)", data[:4096])
    if m:
        enc = m.group(1).decode("ascii").lower()
        if enc in ("gb2312", "gbk"):
            enc = "gb18030"
        try:
            return data.decode(enc)
        except (LookupError, UnicodeDecodeError):
            pass
    return decode(data)


def _load_pdf(data: bytes) -> RawDocument:
    import io

    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if len(reader.pages) > MAX_PAGES:
            raise UnsupportedDocument(f"the PDF has {len(reader.pages):,} pages, over the {MAX_PAGES:,} limit")
        pages, chars = [], 0
        for page in reader.pages:
            pages.append(page.extract_text() or "")
            chars += len(pages[-1])
            if chars > MAX_TEXT_CHARS:
                raise UnsupportedDocument(f"the PDF expands to over {MAX_TEXT_CHARS:,} characters: split it")
    except UnsupportedDocument:
        raise
    except Exception as e:  # a damaged PDF fails in many ways (PdfReadError, LimitReachedError, RecursionError…)
        raise UnsupportedDocument(f"unreadable PDF (truncated or damaged): {type(e).__name__}: {e}") from e
    text = "\n".join(pages)
    if not text.strip():
        raise UnsupportedDocument(f"PDF has no text layer ({len(pages)} page(s), scanned images?) - run OCR first")
    meta = {}
    title = (reader.metadata or {}).get("/Title") if reader.metadata else None
    if title:
        meta["title"] = str(title)
    return RawDocument(text, meta)


def _check_docx_size(data: bytes) -> None:
    """Refuse a Word file whose XML unpacks past the limits, counting paragraphs in a stream (no parse tree)."""
    import io
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            parts = [i for i in z.infolist() if i.filename.startswith("word/") and i.filename.endswith(".xml")]
            if sum(i.file_size for i in parts) > MAX_DOCX_XML_BYTES:
                raise UnsupportedDocument(f"the Word file unpacks to over {MAX_DOCX_XML_BYTES // 2**20} MB of XML")
            paragraphs = 0
            for info in parts:
                with z.open(info) as f:
                    tail = b""
                    while block := f.read(1 << 20):
                        joined = tail + block  # a tag split across two blocks is whole here (a tail < a tag)
                        paragraphs += len(_PARAGRAPH_TAG.findall(joined))
                        tail = block[-3:]
                if paragraphs > MAX_PARAGRAPHS:
                    raise UnsupportedDocument(f"the Word file holds over {MAX_PARAGRAPHS:,} paragraphs, over the limit")
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise UnsupportedDocument(f"unreadable DOCX (damaged or not a Word file): {e}") from e


def _load_docx(data: bytes) -> RawDocument:
    import io

    import docx

    _check_docx_size(data)
    try:
        d = docx.Document(io.BytesIO(data))
    except Exception as e:  # lxml's XMLSyntaxError (an oversized node), zip errors, missing parts: all "damaged"
        raise UnsupportedDocument(f"unreadable DOCX (damaged or not a Word file): {type(e).__name__}: {e}") from e
    lines = [p.text for p in d.paragraphs]
    for table in d.tables:
        for row in table.rows:
            lines.append(" ".join(c.text for c in row.cells))
    text = "\n".join(lines)
    if not text.strip():
        raise UnsupportedDocument("DOCX contains no text")
    meta = {"title": d.core_properties.title} if d.core_properties.title else {}
    return RawDocument(text, meta)
