"""Bounded load: 50 concurrent askers for 60 s against `python app.py serve` in its own process, 5 of them sending
maximum-length input (a 2,000-character question and 20 history turns of 4,000 characters), one upload batch
running meanwhile, and /healthz polled every 100 ms. Prints errors, latencies and whether any document was lost.

python -m bench.load [--index DIR] [--askers 50] [--seconds 60]
(copies DIR, or builds a temporary corpus index, so the upload never touches the original)
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, corpus_settings

import httpx  # noqa: E402

from assistant.evaluate import load_questions, percentile  # noqa: E402
from tests.live import free_port  # noqa: E402

ADMIN = "load-admin"


def start_server(index_dir: str, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, ASSISTANT_INDEX_DIR=index_dir, ASSISTANT_SERVER__ADMIN_KEY=ADMIN,
               HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, "app.py", "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=open(log_path, "w"), text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(log_path.read_text()[-2000:])
        time.sleep(0.2)
    raise RuntimeError("the server did not start")


async def main_async(url: str, askers: int, seconds: float, heavy: int, questions: list[str]) -> dict:
    stop = time.monotonic() + seconds
    out = {"ask_ms": [], "heavy_ms": [], "health_ms": [], "errors": [], "statuses": {}}
    max_q = "请问" + "停车位" * 666  # 2,000 characters
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": "公共厕所" * 1000} for i in range(20)]

    async def asker(i: int, client: httpx.AsyncClient) -> None:
        n = i
        while time.monotonic() < stop:
            body = {"question": max_q, "history": history} if i < heavy else {"question": questions[n % len(questions)]}
            t = time.perf_counter()
            try:
                r = await client.post(f"{url}/api/ask", json=body, timeout=120)
                key = str(r.status_code)
                if r.status_code != 200 or "answer" not in r.json():
                    out["errors"].append(f"{r.status_code} {r.text[:120]}")
            except (httpx.HTTPError, ValueError) as e:
                key = type(e).__name__
                out["errors"].append(key)
            out["statuses"][key] = out["statuses"].get(key, 0) + 1
            out["heavy_ms" if i < heavy else "ask_ms"].append((time.perf_counter() - t) * 1000)
            n += askers

    async def health(client: httpx.AsyncClient) -> None:
        while time.monotonic() < stop:
            t = time.perf_counter()
            try:
                r = await client.get(f"{url}/healthz", timeout=30)
                if r.status_code != 200:
                    out["errors"].append(f"healthz {r.status_code}")
            except httpx.HTTPError as e:
                out["errors"].append(f"healthz {type(e).__name__}")
            out["health_ms"].append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(0.1)

    async def upload(client: httpx.AsyncClient) -> None:
        await asyncio.sleep(min(5, seconds / 6))
        files = []
        for i, p in enumerate(sorted((ROOT.parent / "shared" / "corpus").glob("*.txt"))[:3]):
            text = p.read_text(encoding="utf-8").replace("第一条", f"第一条（负载测试副本{i}）", 1)
            files.append(("files", (f"load-{i}.txt", text.encode())))
        r = await client.post(f"{url}/api/documents?wait=false", files=files,
                              headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60)
        job = r.json()["id"]
        while True:
            j = (await client.get(f"{url}/api/jobs/{job}", headers={"Authorization": f"Bearer {ADMIN}"})).json()
            if j["status"] not in ("queued", "running"):
                out["upload"] = {"status": j["status"], "documents": [d["status"] for d in j["report"]["documents"]]}
                return
            await asyncio.sleep(0.5)

    limits = httpx.Limits(max_connections=askers + 10, max_keepalive_connections=askers + 10)
    async with httpx.AsyncClient(limits=limits) as client:
        await asyncio.gather(*(asker(i, client) for i in range(askers)), health(client), upload(client))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--index")
    ap.add_argument("--askers", type=int, default=50)
    ap.add_argument("--heavy", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=60)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-load-")
    index = str(Path(work) / "index")
    if args.index:
        shutil.copytree(args.index, index)
    else:
        shutil.copytree(corpus_settings(None).store.index_dir, index)
    qs, _ = load_questions(ROOT / "tests" / "data" / "questions.jsonl")
    questions = [q.turns[-1] for q in qs]
    log_path = Path(work) / "server.log"
    proc, url = start_server(index, log_path)
    try:
        before = {d["doc_id"] for d in httpx.get(f"{url}/api/documents", timeout=30).json()["documents"]}
        out = asyncio.run(main_async(url, args.askers, args.seconds, args.heavy, questions))
        after = {d["doc_id"] for d in httpx.get(f"{url}/api/documents", timeout=30).json()["documents"]}
    finally:
        proc.terminate()
        proc.wait(10)
        server_log = log_path.read_text()
        shutil.rmtree(work, ignore_errors=True)
    ms = lambda xs: {"n": len(xs), "p50": percentile(xs, 50), "p95": percentile(xs, 95), "max": round(max(xs), 1)} if xs else {}  # noqa: E731
    print(json.dumps({
        "askers": args.askers, "heavy": args.heavy, "seconds": args.seconds,
        "requests": sum(out["statuses"].values()), "statuses": out["statuses"], "errors": len(out["errors"]),
        "first_errors": out["errors"][:5], "ask_ms": ms(out["ask_ms"]), "max_length_ask_ms": ms(out["heavy_ms"]),
        "healthz_ms": ms(out["health_ms"]), "upload": out.get("upload"),
        "documents_before": len(before), "documents_after": len(after), "lost": sorted(before - after),
        "server_errors": [ln for ln in server_log.splitlines() if "Error" in ln or "error" in ln][-10:],
    }, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
