"""What an embedded reader's reopen costs in memory: the peak while it loads another process's vectors.

python -m bench.reopen --index DIR [--rounds 2]

Opens an embedded index the app built (e.g. the one `bench.scale --keep` leaves), answers a vector search in each
collection so their vectors are loaded, then reopens it as the store does after another process's commit (one
group of collections at a time, the client each replaces freed before the next loads: see ingest.store._reopen),
and, as a baseline in the same process, with every group's vectors loaded before the replaced clients are freed
(what one client for all collections, before 7757d16, held at its peak). The two ways alternate in order from round
to round. Resident memory is sampled every 5 ms. Prints, per round and way: resident memory before, the peak during
the reopen and its rise, after, and the reopen's seconds. The index is only read.
"""
from __future__ import annotations

import argparse
import threading
import time

import numpy as np

from bench.common import rss_mb


class Peak:
    """The highest resident memory seen since the last reset, sampled by a thread."""

    def __init__(self) -> None:
        self.value = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            self.value = max(self.value, rss_mb())
            time.sleep(0.005)

    def reset(self) -> int:
        self.value = rss_mb()
        return self.value


def warm(index, vector: np.ndarray) -> None:
    index.dense(vector, 30)
    index.dense_sentences(vector, 120)


def group_by_group(index) -> None:
    index._reopen(index._opened_at, index._writes)


def all_then_free(index) -> None:
    """Every group's vectors loaded on new clients, then the old clients freed."""
    from ingest import store

    opened = [index._connect(g, fresh=True) for g in range(len(store._GROUPS))]
    for group, o in enumerate(opened):
        store._load_vectors(group, o)
    old = [index._take(g, o) for g, o in enumerate(opened)]
    del opened
    for client in old:
        index._release(client, wait=store.RELEASE_WAIT)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", required=True, help="an embedded index directory")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    from ingest.store import ChromaIndex

    peak = Peak()
    index = ChromaIndex(args.index, refresh_seconds=3600)
    index.documents()
    got = index.chunks.get(limit=1, include=["embeddings"])
    if not len(got["ids"]):
        raise SystemExit(f"{args.index} holds no chunks: build an index first (e.g. bench.scale --keep DIR)")
    stored = got["embeddings"][0]
    vector = np.random.default_rng(0).standard_normal(len(stored)).astype(np.float32)
    vector /= np.linalg.norm(vector)
    warm(index, vector)
    print(f"{index.count()} chunks; resident after the first searches: {rss_mb()} MB")
    for r in range(args.rounds):
        ways = [("group by group", group_by_group), ("all, then free", all_then_free)]
        for name, reopen in ways if r % 2 == 0 else ways[::-1]:
            time.sleep(0.5)
            before = peak.reset()
            t = time.perf_counter()
            reopen(index)
            took = time.perf_counter() - t
            warm(index, vector)
            high = peak.value
            print(f"round {r + 1}, {name:>14}: before {before} MB, peak {high} MB (+{high - before}), "
                  f"after {rss_mb()} MB, reopen {took:.2f} s")


if __name__ == "__main__":
    main()
