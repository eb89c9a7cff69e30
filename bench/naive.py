"""The naive baseline: RecursiveCharacterTextSplitter 1000/200 + the same embedder + Chroma top 4.
No cleaning, no structure, no BM25, no refusal - what a first LangChain tutorial would build."""
from __future__ import annotations

import hashlib
from pathlib import Path

from langchain_chroma import Chroma
from langchain_text_splitters import RecursiveCharacterTextSplitter

from assistant.answer import Answer, Citation
from assistant.retrieval import Passage
from ingest.embed import Embedder, LangChainEmbeddings
from ingest.loaders import load
from ingest.schema import Document


class NaivePipeline:
    """Builds (or reopens) its own Chroma collection from the same files the assistant indexed."""

    def __init__(self, docs: dict[str, Document], embedder: Embedder, persist_dir: str | Path, k: int = 4) -> None:
        self.k = k
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        files = sorted({d.path for d in docs.values()})
        key = hashlib.sha256("|".join(f"{f}:{d.sha256}" for f, d in sorted((d.path, d) for d in docs.values())).encode()).hexdigest()[:12]
        client = chromadb.PersistentClient(str(persist_dir), settings=ChromaSettings(anonymized_telemetry=False))
        self.store = Chroma(collection_name=f"naive-{key}", embedding_function=LangChainEmbeddings(embedder),
                            client=client)
        self.ids = {d.path: d.doc_id for d in docs.values()}
        self.titles = {d.doc_id: d.title for d in docs.values()}
        if not self.store.get(limit=1)["ids"]:
            splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
            for f in files:
                text = load(Path(f)).text
                parts = splitter.split_text(text)
                self.store.add_texts(parts, metadatas=[{"doc_id": self.ids[f]} for _ in parts])

    def ask(self, question: str, history=()) -> Answer:
        hits = self.store.similarity_search_with_score(question, k=self.k)
        passages = [Passage(n, d.metadata["doc_id"], self.titles.get(d.metadata["doc_id"], ""), [], "", d.page_content,
                            -1, -1, float(1 - s)) for n, (d, s) in enumerate(hits, 1)]
        if not passages:
            return Answer(question, "", True, mode="naive")
        top = passages[0]
        # The tutorial answer: the best chunk, cited whole. Its text is raw (uncleaned), so it has no offsets.
        cite = Citation(1, top.doc_id, top.title, "", "", top.text, -1, -1, top.score)
        return Answer(question, top.text + "[1]", False, [cite], passages=passages, mode="naive")


def baseline(docs: dict[str, Document], embedder: Embedder, work_dir: str | Path):
    """The hook `app.py eval --baseline bench.naive:baseline` calls: documents, embedder, a work directory ->
    ask(question, history) -> Answer."""
    return NaivePipeline(docs, embedder, work_dir).ask
