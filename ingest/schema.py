"""Document and Chunk: the contract between ingestion and everything above it."""
from __future__ import annotations

from dataclasses import dataclass, field, fields


class IngestError(Exception):
    """Base class for errors that reject one document and spare the batch."""


class UnsupportedDocument(IngestError):
    """The file type or content cannot be turned into text."""


class EncodingError(IngestError):
    """The bytes decode as none of the supported encodings."""


class IndexUnavailable(Exception):
    """The index cannot be opened (corrupt, unreadable, a server that does not answer): says where and why."""


class IndexEmpty(Exception):
    """The index holds no documents: run ingest first."""


@dataclass
class Document:
    """A cleaned document: its text is what every chunk offset points into."""

    doc_id: str
    path: str
    title: str
    text: str
    sha256: str = ""  # of the file's bytes
    version: str = ""  # of the bytes plus the chunking/embedding settings: what chunk ids carry
    issuer: str = ""
    doc_number: str = ""
    date: str = ""
    source: str = ""
    ingested_at: str = ""
    chunks: int = 0
    length: int = 0  # of the text, in characters (kept in the record: a reader loads texts only when used)

    def __post_init__(self) -> None:
        self.length = len(self.text)  # (a stored document's is its record's: see ingest.store)

    def meta(self) -> dict:
        """Everything but the text, for listings (without reading a stored document's text)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "text"}


def chunk_id(doc_id: str, version: str, ordinal: int) -> str:
    """A stored chunk's id: numbered within its document's version (the store fetches them by id)."""
    return f"{doc_id}:{version[:12]}:{ordinal:04d}"


def sentence_id(doc_id: str, version: str, ordinal: int) -> str:
    return f"{doc_id}:{version[:12]}:s{ordinal:05d}"


@dataclass
class Chunk:
    """A span of a document's cleaned text with its place under the headings."""

    doc_id: str
    ordinal: int
    text: str
    char_start: int
    char_end: int
    title: str = ""
    section: list[str] = field(default_factory=list)
    article: str = ""

    @property
    def section_path(self) -> str:
        """The section path as one line, e.g. '一、…… > 一是……'."""
        return " > ".join(self.section)

    def chunk_id(self, version: str) -> str:
        """Ids carry the version hash, so a new version never overwrites the committed one."""
        return chunk_id(self.doc_id, version, self.ordinal)


@dataclass
class Sentence:
    """A sentence of a chunk, indexed on its own so the answering sentence is found by meaning."""

    doc_id: str
    chunk: int  # ordinal of the chunk that holds it
    ordinal: int
    text: str
    char_start: int
    char_end: int
    article: str = ""
    heading: str = ""  # the innermost section label, for context in its embedding

    def index_text(self) -> str:
        """What is embedded: the sentence with its article or heading, so '第十六条' context travels."""
        head = self.article or self.heading
        return f"{head} {self.text}" if head and not self.text.startswith(head) else self.text

    def sentence_id(self, version: str) -> str:
        return sentence_id(self.doc_id, version, self.ordinal)
