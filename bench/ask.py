"""Ask latency over the dev questions: in process, and over HTTP (/api/ask, streamed: time to first token).

python bench/ask.py [--index DIR]   (builds a temporary corpus index when --index is not given)
"""
from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from assistant.api import create_app  # noqa: E402
from assistant.components import build_pipeline  # noqa: E402
from assistant.evaluate import load_questions  # noqa: E402
from assistant.service import build_assistant  # noqa: E402
from assistant.settings import Settings  # noqa: E402


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--index")
    ap.add_argument("--n", type=int, default=50)
    args = ap.parse_args()
    s = Settings(_env_file=None)
    tmp = None
    if args.index:
        s.store.index_dir = args.index
    else:
        tmp = tempfile.TemporaryDirectory()
        s.store.index_dir = tmp.name
        corpus = ROOT.parent / "shared" / "corpus"
        speech = ROOT / "docs" / "speech_city_quality_2023.txt"
        build_pipeline(s).run([speech] + sorted(p for p in corpus.glob("*.txt") if p.name != speech.name))
    assistant = build_assistant(s)
    qs, _ = load_questions(ROOT / "tests" / "data" / "questions.jsonl")
    questions = [q.turns[-1] for q in qs][: args.n]
    assistant.ask(questions[0])  # warm up (first query loads the BM25 index)

    local, retrieve = [], []
    for q in questions:
        a = assistant.ask(q)
        local.append(a.timings_ms["total"])
        retrieve.append(a.timings_ms["retrieve"])

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(s, assistant, with_ui=False), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    http_full, http_ttft = [], []
    with httpx.Client(timeout=60) as client:
        for q in questions:
            t = time.perf_counter()
            first = None
            with client.stream("POST", f"http://127.0.0.1:{port}/api/ask", json={"question": q, "stream": True}) as r:
                for line in r.iter_lines():
                    if first is None and line.startswith("event: token"):
                        first = time.perf_counter() - t
            http_full.append((time.perf_counter() - t) * 1000)
            http_ttft.append((first or 0) * 1000)
    server.should_exit = True
    print(json.dumps({"questions": len(questions),
                      "in_process_ms": {"p50": round(statistics.median(local), 1), "p95": round(pct(local, 95), 1)},
                      "retrieve_ms": {"p50": round(statistics.median(retrieve), 1), "p95": round(pct(retrieve, 95), 1)},
                      "http_api_ask_stream_ttft_ms": {"p50": round(statistics.median(http_ttft), 1), "p95": round(pct(http_ttft, 95), 1)},
                      "http_api_ask_stream_full_ms": {"p50": round(statistics.median(http_full), 1), "p95": round(pct(http_full, 95), 1)}},
                     indent=1))


if __name__ == "__main__":
    main()
