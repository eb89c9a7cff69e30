"""Ask latency over the dev questions: in process, and over HTTP (/api/ask, streamed: time to first token).

python -m bench.ask [--index DIR]   (builds a temporary corpus index when --index is not given)
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

from bench.common import ROOT, corpus_settings, serve

import httpx  # noqa: E402

from assistant.api import create_app  # noqa: E402
from assistant.evaluate import load_questions, percentile  # noqa: E402
from assistant.service import build_assistant  # noqa: E402


def p50_p95(xs: list[float]) -> dict:
    return {"p50": round(statistics.median(xs), 1), "p95": percentile(xs, 95)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--index")
    ap.add_argument("--n", type=int, default=50)
    args = ap.parse_args()
    s = corpus_settings(args.index)
    assistant = build_assistant(s)
    qs, _ = load_questions(ROOT / "tests" / "data" / "questions.jsonl")
    questions = [q.turns[-1] for q in qs][: args.n]
    assistant.ask(questions[0])  # warm up (first query loads the BM25 index)

    local, retrieve = [], []
    for q in questions:
        a = assistant.ask(q)
        local.append(a.timings_ms["total"])
        retrieve.append(a.timings_ms["retrieve"])

    server, url = serve(create_app(s, assistant, with_ui=False))
    http_full, http_ttft = [], []
    with httpx.Client(timeout=60) as client:
        for q in questions:
            t = time.perf_counter()
            first = None
            with client.stream("POST", f"{url}/api/ask", json={"question": q, "stream": True}) as r:
                for line in r.iter_lines():
                    if first is None and line.startswith("event: token"):
                        first = time.perf_counter() - t
            http_full.append((time.perf_counter() - t) * 1000)
            http_ttft.append((first or 0) * 1000)
    server.should_exit = True
    print(json.dumps({"questions": len(questions), "in_process_ms": p50_p95(local), "retrieve_ms": p50_p95(retrieve),
                      "http_api_ask_stream_ttft_ms": p50_p95(http_ttft),
                      "http_api_ask_stream_full_ms": p50_p95(http_full)}, indent=1))


if __name__ == "__main__":
    main()
