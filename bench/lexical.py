"""The lexical index at scale: what a commit costs on the writer and on a reader, query latency, and bulk
ingest, against the full rebuild it replaced (bm25s over every chunk, in the same run).

python -m bench.lexical [--sizes 10000 50000] [--queries 200] [--grow 100000]

--grow N builds an index from empty to N chunks by commits of 50 seven-to-twelve-chunk documents (as a bulk ingest
commits them) and prints the writer's milliseconds per document over the first and the last ten commits, and what
a reader pays to follow a commit and answer five questions then.

Chunks are synthetic: ~300-character windows cut at random from the real corpus, so their bigram statistics
are those of Chinese policy text. No embedder and no Chroma: this measures the lexical index alone.
"""
from __future__ import annotations

import argparse
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import corpus_files  # noqa: E402

from ingest.lexical import LexicalIndex, bigrams, number  # noqa: E402
from ingest.store import LEXICAL_ROWS  # noqa: E402


def windows(n: int, rng: random.Random) -> list[str]:
    text = "".join(p.read_text(encoding="utf-8") for p in corpus_files())
    return [text[s:s + 300] for s in (rng.randrange(len(text) - 300) for _ in range(n))]


def pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]


def grow(size: int, rng: random.Random) -> None:
    pool, questions = windows(20_000, rng), [w[:18] for w in windows(5, rng)]
    d = Path(tempfile.mkdtemp(prefix="bench-lexical-grow-"))
    writer, reader = LexicalIndex(d / "lex"), LexicalIndex(d / "lex")
    writer.rebuild([])
    per_doc, follow, n, k = [], [], 0, 0
    t0 = time.perf_counter()
    while n < size:
        batch = [(f"d{k + i}", "v1", [(j, rng.choice(pool)) for j in range(rng.randint(7, 12))]) for i in range(50)]
        k += len(batch)
        n += sum(len(rows) for _, _, rows in batch)
        t = time.perf_counter()
        writer.add_many(batch)
        per_doc.append((time.perf_counter() - t) / len(batch) * 1000)
        t = time.perf_counter()
        reader.reload()
        for q in questions:
            reader.scores(q, LEXICAL_ROWS)
        follow.append((time.perf_counter() - t) * 1000)
    print(f"{n:,} chunks in {len(per_doc)} commits of 50 documents: {time.perf_counter() - t0:.0f} s")
    print(f"  writer ms per document: first ten commits {statistics.mean(per_doc[:10]):.1f}, "
          f"last ten {statistics.mean(per_doc[-10:]):.1f} ({statistics.mean(per_doc[-10:]) / statistics.mean(per_doc[:10]):.2f}x)")
    print(f"  a reader following a commit and answering five questions: first ten {statistics.mean(follow[:10]):.1f} ms, "
          f"last ten {statistics.mean(follow[-10:]):.1f} ms")
    print(f"  index on disk {sum(f.stat().st_size for f in (d / 'lex').iterdir()) / 1e6:.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--grow", type=int, default=0, help="only: build to this many chunks by commits, timed")
    args = ap.parse_args()
    rng = random.Random(7)
    if args.grow:
        return grow(args.grow, rng)
    questions = [w[:18] for w in windows(args.queries, rng)]
    try:
        import bm25s
    except ImportError:
        bm25s = None
        print("bm25s not installed (pip install -e '.[bench]'): no baseline")
    for size in args.sizes:
        texts = windows(size, rng)
        docs = [(f"doc{i // 7}", "v1", [(j, t) for j, t in enumerate(texts[i:i + 7])]) for i in range(0, size, 7)]
        d = Path(tempfile.mkdtemp(prefix="bench-lexical-"))
        lex = LexicalIndex(d / "lex")
        t = time.perf_counter()
        lex.rebuild(docs)
        build = time.perf_counter() - t
        reader = LexicalIndex(d / "lex")
        t = time.perf_counter()
        reader.reload()
        load = time.perf_counter() - t
        # one new 7-chunk document committed (add, then the other versions deleted), then a reader catches up
        new = windows(7, rng)
        t = time.perf_counter()
        lex.add("new", "v1", list(enumerate(new)))
        lex.remove("new", keep_version="v1")
        commit = time.perf_counter() - t
        t = time.perf_counter()
        reader.reload()
        follow = time.perf_counter() - t
        # as the store asks: the committed versions, the same dict while they do not change
        committed = {number(doc_id): number("v1") for doc_id in [d for d, _, _ in docs] + ["new"]}
        lat = []
        for q in questions:
            t = time.perf_counter()
            reader.scores(q, LEXICAL_ROWS, committed)
            lat.append((time.perf_counter() - t) * 1000)
        # bulk: 100 more documents, one commit each: the cost of the last ten against the first ten
        per_doc = []
        for i in range(100):
            t = time.perf_counter()
            lex.add(f"bulk{i}", "v1", list(enumerate(windows(7, rng))))
            per_doc.append(time.perf_counter() - t)
        print(f"\n{size:,} chunks: build {build:.1f} s, a reader's first load {load * 1000:.0f} ms")
        print(f"  one 7-chunk commit on the writer {commit * 1000:.0f} ms; a reader follows it in {follow * 1000:.1f} ms")
        print(f"  query scores (the best {LEXICAL_ROWS} rows) p50 {statistics.median(lat):.1f} ms, p95 {pct(lat, 0.95):.1f} ms")
        print(f"  bulk commits: first ten {statistics.mean(per_doc[:10]) * 1000:.0f} ms, "
              f"last ten {statistics.mean(per_doc[-10:]) * 1000:.0f} ms per document")
        if bm25s:
            t = time.perf_counter()
            m = bm25s.BM25()
            m.index([bigrams(x) for x in texts + new], show_progress=False)
            full = time.perf_counter() - t
            blat = []
            ids = [f"c{i}" for i in range(len(texts) + len(new))]
            vocab = m.vocab_dict
            for q in questions:
                t = time.perf_counter()
                toks = [x for x in dict.fromkeys(bigrams(q)) if x in vocab]
                if toks:  # as the old index answered: a score for every chunk sharing a bigram
                    sc = m.get_scores(toks)
                    {ids[int(i)]: float(sc[i]) for i in sc.nonzero()[0]}
                blat.append((time.perf_counter() - t) * 1000)
            print(f"  baseline (bm25s, rebuilt in full on the writer and on every reader per commit): {full:.1f} s "
                  f"per commit, {full / max(commit, 1e-9):.0f}x the incremental commit; query p50 "
                  f"{statistics.median(blat):.1f} ms, p95 {pct(blat, 0.95):.1f} ms")
        print(f"  peak memory of this process so far {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; "
              f"index on disk {sum(f.stat().st_size for f in (d / 'lex').iterdir()) / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
