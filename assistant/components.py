"""Builds the ingest-layer objects from Settings (shared by the CLI, the service and the benches)."""
from __future__ import annotations

from ingest.embed import Embedder, make_embedder
from ingest.pipeline import Pipeline
from ingest.store import ChromaIndex, Store

from .settings import Settings


def open_index(s: Settings) -> ChromaIndex:
    st = s.store
    return ChromaIndex(st.index_dir, st.chroma_host, st.chroma_port, st.collection, st.refresh_seconds)


def build_embedder(s: Settings) -> Embedder:
    e = s.embedding
    return make_embedder(e.backend, e.model_path, e.query_prefix, e.passage_prefix, e.batch_size, e.query_threads)


def build_pipeline(s: Settings, index: Store | None = None, embedder: Embedder | None = None) -> Pipeline:
    return Pipeline(index or open_index(s), embedder or build_embedder(s), s.ingest.chunk_size,
                    s.ingest.chunk_overlap, s.ingest.max_file_mb)
