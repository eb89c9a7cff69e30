"""What HNSW construction settings cost in recall and in insertion time, over an index's own vectors.

python -m bench.hnsw_recall --index DIR [--collection chunks] [--queries 300] 100:16 50:16

Reads every vector of one collection of an index the app built (e.g. the one `bench.scale --keep` leaves), inserts
them, in their order, into a fresh embedded Chroma collection per `ef_construction:max_neighbors` pair (one
insertion thread and ef_search 400, as the store sets), and asks `--queries` vectors near stored ones (a stored
vector plus a little noise). Prints per pair: insertion time for the first and the last 5,000 rows, and recall@30
against an exact search (a hit counts when it is at least as near as the exact 30th: duplicate texts tie).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time

import numpy as np


def vectors(index: str, suffix: str) -> np.ndarray:
    import chromadb

    from ingest.store import _paged

    client = chromadb.PersistentClient(path=f"{index}/chroma")
    col = next(c for c in client.list_collections() if c.name.endswith(f"-{suffix}"))
    return np.asarray(_paged(col, None, ["embeddings"])["embeddings"], dtype=np.float32)


def main() -> None:
    import chromadb

    ap = argparse.ArgumentParser()
    ap.add_argument("--index", required=True, help="an index directory (the one holding chroma/)")
    ap.add_argument("--collection", default="chunks", choices=["chunks", "sentences"])
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("settings", nargs="+", help="ef_construction:max_neighbors, e.g. 100:16")
    args = ap.parse_args()
    v = vectors(args.index, args.collection)
    rng = np.random.default_rng(3)
    q = v[rng.choice(len(v), args.queries, replace=False)]
    q = q + rng.standard_normal(q.shape).astype(np.float32) * 0.02
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    sims = q @ (v / np.linalg.norm(v, axis=1, keepdims=True)).T
    k = 30
    kth = -np.partition(-sims, k - 1, axis=1)[:, k - 1]
    print(f"{len(v):,} {args.collection} vectors, {args.queries} queries")
    for pair in args.settings:
        efc, m = (int(x) for x in pair.split(":"))
        work = tempfile.mkdtemp(prefix="bench-hnsw-")
        try:
            col = chromadb.PersistentClient(path=work).create_collection(
                "recall", embedding_function=None, configuration={"hnsw": {
                    "space": "cosine", "num_threads": 1, "ef_construction": efc, "max_neighbors": m, "ef_search": 400}})
            times = []
            for i in range(0, len(v), 1000):
                t = time.perf_counter()
                col.add(ids=[str(j) for j in range(i, min(i + 1000, len(v)))], embeddings=v[i:i + 1000].tolist())
                times.append(time.perf_counter() - t)
            got = col.query(query_embeddings=q.tolist(), n_results=k, include=[])["ids"]
            recall = np.mean([np.mean(sims[n, [int(i) for i in ids]] >= kth[n] - 1e-5) for n, ids in enumerate(got)])
            print(f"ef_construction {efc}, max_neighbors {m}: insertion {sum(times):.0f} s, first 5,000 rows "
                  f"{np.mean(times[:5]) * 1000:.0f} ms per 1,000, last 5,000 {np.mean(times[-5:]) * 1000:.0f}; "
                  f"recall@{k} {recall:.3f}")
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
