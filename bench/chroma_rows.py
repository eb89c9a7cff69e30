"""What a document's rows cost a Chroma server to write: full rows (text and every metadata value) against the lean
rows the store writes for a version with a layout (a vector and the metadata filters use).

python -m bench.chroma_rows [--prefill 20000] [--docs 40] [--batch 1]

Starts a `chroma run` server of its own, fills a chunk and a sentence collection with `--prefill` random vectors
each (an index already holding documents), then writes `--docs` synthetic documents (bench.scale's: the corpus's
sentences, figures and places changed) chunked by the app's chunker, `--batch` documents per write (1: as an
ingest of one file at a time commits; an ingest of many files commits several in one write), in each form. Prints the server's CPU and the
client's wall time per document, and the ratio lean / full.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import ROOT, start_chroma
from bench.scale import sentences, write_docs
from ingest.chunk import sentence_units, split
from ingest.store import ChromaIndex, _upsert


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _documents(n: int) -> list[tuple[str, list, list]]:
    work = Path(tempfile.mkdtemp(prefix="bench-rows-"))
    try:
        paths = write_docs(work, n, random.Random(7), sentences())
        out = []
        for p in paths:
            text = p.read_text(encoding="utf-8")
            chunks = split(text, p.stem, title=p.stem)
            out.append((p.stem, chunks, sentence_units(text, chunks)))
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(prefill: int, n_docs: int, batch: int = 1) -> dict:
    import chromadb

    docs = _documents(n_docs)
    rng = np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="bench-rows-server-"))
    server, port = start_chroma(work)
    out: dict = {"prefill": prefill, "documents": n_docs, "documents_per_write": batch,
                 "rows_per_document": round(sum(len(c) + len(s) for _, c, s in docs) / n_docs, 1)}
    try:
        client = chromadb.HttpClient(host="127.0.0.1", port=port)
        for lean in (False, True):
            form = "lean" if lean else "full"
            cols = [client.create_collection(f"{form}-{name}", metadata={"hnsw:space": "cosine"})
                    for name in ("chunks", "sentences")]
            for col in cols:
                for i in range(0, prefill, 1000):
                    k = min(1000, prefill - i)
                    col.add(ids=[f"p{i + j}" for j in range(k)], embeddings=rng.standard_normal((k, 384)).tolist(),
                            metadatas=[{"doc_id": f"p{(i + j) // 12}", "version": "0"} for j in range(k)])
            time.sleep(3)  # the prefill's own work settles
            cpu, t = _cpu_seconds(server.pid), time.perf_counter()
            for i in range(0, n_docs, batch):
                chunks = [c for _, cs, _ in docs[i:i + batch] for c in cs]
                sents = [x for _, _, xs in docs[i:i + batch] for x in xs]
                _upsert(cols[0], [c.chunk_id("v1") for c in chunks], rng.standard_normal((len(chunks), 384)),
                        None if lean else [c.text for c in chunks],
                        [ChromaIndex._chunk_meta(c, "v1", lean) for c in chunks])
                _upsert(cols[1], [x.sentence_id("v1") for x in sents], rng.standard_normal((len(sents), 384)),
                        None if lean else [x.text for x in sents],
                        [ChromaIndex._sentence_meta(x, "v1", lean) for x in sents])
            wall = time.perf_counter() - t
            time.sleep(3)  # and what the server does after answering (counted: it is the writes' work)
            out[f"{form}_server_cpu_ms_per_doc"] = round((_cpu_seconds(server.pid) - cpu) / n_docs * 1000, 1)
            out[f"{form}_wall_ms_per_doc"] = round(wall / n_docs * 1000, 1)
        out["lean_over_full_cpu"] = round(out["lean_server_cpu_ms_per_doc"] / out["full_server_cpu_ms_per_doc"], 2)
        return out
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prefill", type=int, default=20_000, help="random rows in each collection before the writes")
    ap.add_argument("--docs", type=int, default=40, help="documents written in each form")
    ap.add_argument("--batch", type=int, default=1, help="documents per write")
    args = ap.parse_args()
    os.chdir(ROOT)
    print(json.dumps(measure(args.prefill, args.docs, max(1, args.batch))))


if __name__ == "__main__":
    main()
