import json
import re
import os
import subprocess
import sys

import pytest

from assistant.settings import Settings
from tests.conftest import ROOT


def _run(*args, stdin=None):
    return subprocess.run([sys.executable, str(ROOT / "app.py"), *args], capture_output=True, text=True, cwd=ROOT,
                          input=stdin)


def test_settings_env_nesting_and_aliases(monkeypatch):
    monkeypatch.setenv("ASSISTANT_RETRIEVAL__K", "7")
    monkeypatch.setenv("ASSISTANT_SERVER__API_KEYS", '["a","b"]')
    monkeypatch.setenv("ASSISTANT_INDEX_DIR", "/tmp/x-index")
    monkeypatch.setenv("ASSISTANT_CHROMA_HOST", "chroma.local")
    s = Settings(_env_file=None)
    assert (s.retrieval.k, s.server.api_keys, s.store.index_dir, s.store.chroma_host) == (7, ["a", "b"], "/tmp/x-index", "chroma.local")
    assert Settings(_env_file=None).answer.refusal_text == "文档中没有找到与该问题相关的内容。"
    for section in ("embedding", "store", "ingest", "retrieval", "llm", "answer", "server"):
        model = type(getattr(s, section))
        assert all(f.description for f in model.model_fields.values()), section


@pytest.mark.integration
def test_ask_json_and_stdin(corpus_settings):
    idx = corpus_settings.store.index_dir
    one = _run("ask", "新建公厕多少座？", "--index", idx, "--json")
    assert one.returncode == 0, one.stderr
    data = json.loads(one.stdout)
    assert set(data) >= {"question", "answer", "refused", "citations", "timings_ms"} and "210" in data["answer"]
    assert set(data["timings_ms"]) == {"retrieve", "answer", "total"}
    many = _run("ask", "--index", idx, "--json", stdin="新建公厕多少座？\n\n今天天气怎么样？\n")
    lines = [json.loads(x) for x in many.stdout.splitlines()]
    assert [x["refused"] for x in lines] == [False, True]
    text = _run("ask", "新建公厕多少座？", "--index", idx)
    assert re.search(r"\[\d\] 《2023年度在全市百城建设提质暨文明城市创建工作推进会上讲话》", text.stdout)
    assert "“新建公厕210座" in text.stdout  # the cited quote, printed under its source


def test_empty_index_exit_code(tmp_path):
    out = _run("ask", "新建公厕多少座？", "--index", str(tmp_path / "empty"))
    assert out.returncode == 3 and "ingest" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("command", [["docs"], ["chunks", "x"], ["ask", "问题"], ["eval", "q.jsonl"]])
def test_read_only_commands_never_create_an_index(tmp_path, command):
    missing = tmp_path / "typo-index"
    out = _run(*command, "--index", str(missing))
    assert out.returncode == 3 and "no index at" in out.stderr and not missing.exists()


@pytest.mark.integration  # the real model, in a subprocess
def test_eval_with_naive_baseline_on_small_docs(tmp_path, small_docs):
    idx = str(tmp_path / "idx")
    assert _run("ingest", str(small_docs), "--index", idx).returncode == 0
    q = tmp_path / "q.jsonl"
    q.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in [
        {"id": "a", "question": "停车收费标准是每小时多少元？", "facts": ["3元"], "evidence": "收费标准为每小时3元"},
        {"id": "b", "question": "个人所得税起征点是多少？", "facts": []}]), encoding="utf-8")
    out = _run("eval", str(q), "--index", idx, "--json", "--baseline", "bench.naive:baseline", "--report", str(tmp_path / "r.md"))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["summary"]["recall_at_1"] == 1.0 and data["summary"]["refusal_accuracy"] == 1.0
    assert data["baseline"]["summary"]["refusal_accuracy"] == 0.0  # the naive pipeline never refuses
    md = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert "| 指标 metric | 本系统 assistant | 基线 naive baseline |" in md


def test_feedback_exports_ratings_and_drafts_from_the_conversations_database(tmp_path, capsys):
    """`app.py feedback --json` gives every rating with its question, answer and citations; `--drafts` gives the
    踩 ones as draft test questions without facts (the evaluator refuses them until a person writes them)."""
    from app import main
    from assistant.conversations import ConversationStore
    from assistant.evaluate import load_questions

    idx = tmp_path / "index"
    assert main(["feedback", "--index", str(idx)]) == 3  # no database: said, none created
    assert not idx.exists()
    idx.mkdir()
    store = ConversationStore(f"sqlite:///{idx / 'conversations.sqlite3'}")
    cid = store.create("browser:" + "a" * 32, "q")
    answer = {"answer": "新建公厕210座。[1]", "citations": [{"n": 1, "label": "《讲话》", "quote": "新建公厕210座"}]}
    good = store.add_turn("browser:" + "a" * 32, cid, "新建公厕多少座？", answer)
    bad = store.add_turn("browser:" + "a" * 32, cid, "停车场多少个？", answer)
    store.rate("browser:" + "a" * 32, cid, good, 1, "", "v1")
    store.rate("browser:" + "a" * 32, cid, bad, -1, "答非所问", "v1")
    capsys.readouterr()
    assert main(["feedback", "--index", str(idx), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["question"], r["rating"]) for r in rows] == [("新建公厕多少座？", 1), ("停车场多少个？", -1)]
    assert rows[1]["citations"][0]["quote"] == "新建公厕210座" and rows[1]["comment"] == "答非所问"
    assert main(["feedback", "--index", str(idx), "--drafts"]) == 0
    drafts = tmp_path / "drafts.jsonl"
    drafts.write_text(capsys.readouterr().out, encoding="utf-8")
    [d] = [json.loads(x) for x in drafts.read_text(encoding="utf-8").splitlines()]
    assert d["question"] == "停车场多少个？" and d["note"] == "答非所问" and "facts" not in d
    qs, errors = load_questions(drafts)
    assert qs == [] and "missing field 'facts'" in errors[0]


@pytest.mark.parametrize("nice,expected", [(None, 10), ("0", 0), ("3", 3)])
def test_an_ingest_run_lowers_its_own_priority(tmp_path, small_docs, nice, expected):
    """Issue 12: `app.py ingest` is batch work and runs at a lower priority (ASSISTANT_INGEST__NICE, 10 unless set), so a
    server answering on the same machine keeps its cores. In a subprocess: niceness cannot be taken back."""
    code = f"""
import argparse, os, sys
sys.path.insert(0, {str(ROOT)!r})
from assistant import cli, components
from assistant.settings import Settings
from ingest.pipeline import Pipeline
from ingest.store import ChromaIndex
from tests.fakes import HashEmbedder
before = os.nice(0)
components.build_pipeline = lambda s: Pipeline(ChromaIndex({str(tmp_path / 'index')!r}), HashEmbedder())
rc = cli.ingest(Settings(), argparse.Namespace(paths=[{str(small_docs)!r}], prune=False, json=True))
print("RESULT", rc, before, os.nice(0))
"""
    env = {k: v for k, v in os.environ.items() if k != "ASSISTANT_INGEST__NICE"} | ({"ASSISTANT_INGEST__NICE": nice} if nice else {})
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    rc, before, after = out.stdout.strip().splitlines()[-1].split()[1:]
    assert (int(rc), int(after)) == (0, min(19, int(before) + expected))  # (19 is the most there is)


def test_a_server_moves_what_it_loaded_at_start_out_of_the_collectors_reach(tmp_path):
    """Issue 12: `app.py serve` freezes the heap it built before its first request (modules, the index's
    documents), so a full garbage collection — which pauses every thread — no longer walks it. In a subprocess:
    a frozen heap is the process's for good."""
    code = f"""
import argparse, gc, sys
sys.path.insert(0, {str(ROOT)!r})
import uvicorn
from assistant import cli
from assistant.settings import Settings
seen = []
uvicorn.run = lambda app, **kw: seen.append((gc.get_freeze_count(), len(gc.get_objects())))
s = Settings(_env_file=None)
s.store.index_dir, s.embedding.backend = {str(tmp_path / 'index')!r}, "hash"
rc = cli.serve(s, argparse.Namespace())
print("RESULT", rc, *seen[0])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    rc, frozen, tracked = map(int, out.stdout.strip().splitlines()[-1].split()[1:])
    assert rc == 0 and frozen > 10 * tracked  # nearly all of it: what is left is made after the freeze
