import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fakes import HashEmbedder

from ingest.pipeline import Pipeline
from ingest.store import ChromaIndex
from tests.conftest import ROOT, SMALL_REG, SPEECH, copy, corpus_files, write


class CountingEmbedder:
    """The real embedder, counting what it embeds (to prove unchanged files embed nothing)."""

    def __init__(self, inner):
        self.inner, self.name, self.config, self.passages = inner, inner.name, inner.config, 0

    def embed_passages(self, texts):
        self.passages += len(texts)
        return self.inner.embed_passages(texts)

    def embed_query(self, text):
        return self.inner.embed_query(text)


@pytest.fixture
def embedder():
    """Store and pipeline logic needs no meaning: the hash embedder (the real model is tested in test_embed)."""
    return HashEmbedder()


def _stores(tmp_path):
    yield "embedded", lambda: ChromaIndex(tmp_path / "index")
    port = os.environ.get("ASSISTANT_TEST_CHROMA_PORT")
    if port:
        name = f"t{time.time_ns()}"
        yield "server", lambda: ChromaIndex(tmp_path / "index-srv", "127.0.0.1", int(port), name)


@pytest.fixture(params=["embedded", "server"])
def make_index(request, tmp_path):
    stores = dict(_stores(tmp_path))
    if request.param not in stores:
        if os.environ.get("CI"):
            pytest.fail("ASSISTANT_TEST_CHROMA_PORT is not set: .ci/run must start a Chroma server")
        pytest.skip("no Chroma server (set ASSISTANT_TEST_CHROMA_PORT; .ci/run starts one)")
    return stores[request.param]


def test_incremental_update_prune_and_duplicates(make_index, small_docs):
    counter = CountingEmbedder(HashEmbedder())
    index = make_index()
    pipe = Pipeline(index, counter)
    first = pipe.run([small_docs])
    assert sorted(d.status for d in first.documents) == ["added", "added"]
    n = counter.passages
    sentences = index.sentences.count()
    assert n == first.chunks_total + sentences and first.chunks_total > 0 and sentences >= first.chunks_total

    again = pipe.run([small_docs])
    assert {d.status for d in again.documents} == {"unchanged"} and counter.passages == n

    write(small_docs / "parking.txt", SMALL_REG.replace("1200", "1500"))
    copy(small_docs / "notice.md", small_docs / "copy-of-notice.md")
    third = pipe.run([small_docs])
    by_name = {d.path.rsplit("/", 1)[-1]: d for d in third.documents}
    assert by_name["parking.txt"].status == "updated"
    assert by_name["copy-of-notice.md"].status == "unchanged" and "same content" in by_name["copy-of-notice.md"].error
    assert len(index.documents()) == 2
    parking = index.documents()["parking"]
    chunks = index.all_chunks("parking")
    assert len(chunks) == parking.chunks and all("1200" not in c.text for _, c in chunks)
    assert any("1500" in c.text for _, c in chunks)
    assert index.reconcile() == 0  # the old version's chunks and sentences are gone, not merely hidden
    version = parking.version
    assert all(m["version"] == version for m in index.sentences.get(where={"doc_id": "parking"})["metadatas"])
    hits = index.lexical_search("停车位不少于1500个", 3)
    assert hits and hits[0].chunk.doc_id == "parking"

    (small_docs / "notice.md").unlink()
    (small_docs / "copy-of-notice.md").unlink()
    pruned = pipe.run([small_docs], prune=True)
    assert [d.status for d in pruned.documents if d.status == "removed"] == ["removed"]
    assert list(index.documents()) == ["parking"]
    assert not index.lexical_search("宣传周", 3)


def test_changing_the_embedders_configuration_re_embeds(tmp_path, small_docs):
    """Same model name, another passage prefix or model file: the stored vectors are stale, so every document
    is redone; the same configuration embeds nothing."""
    index = ChromaIndex(tmp_path / "index")
    first = CountingEmbedder(HashEmbedder())
    Pipeline(index, first).run([small_docs])
    same = CountingEmbedder(HashEmbedder())
    assert {d.status for d in Pipeline(index, same).run([small_docs]).documents} == {"unchanged"}
    other = CountingEmbedder(HashEmbedder())
    other.config = f"{other.name}|passage: "
    report = Pipeline(index, other).run([small_docs])
    assert {d.status for d in report.documents} == {"updated"} and other.passages == first.passages


def test_model_directory_digest_changes_with_its_files(tmp_path):
    from ingest.embed import _model_files_digest

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text('{"hidden_size": 384}')
    before = _model_files_digest(str(tmp_path / "m"))
    assert _model_files_digest(str(tmp_path / "m")) == before
    (tmp_path / "m" / "config.json").write_text('{"hidden_size": 512}')
    assert _model_files_digest(str(tmp_path / "m")) != before


def test_a_second_node_sees_new_commits(tmp_path, embedder, small_docs):
    """Two app nodes on one store: what one ingests, the other finds at its next refresh (BM25 included)."""
    port = os.environ.get("ASSISTANT_TEST_CHROMA_PORT")
    name = f"n{time.time_ns()}"
    open_node = (lambda d: ChromaIndex(tmp_path / d, "127.0.0.1", int(port), name, refresh_seconds=0)) if port else (
        lambda d: ChromaIndex(tmp_path / "shared", collection=name, refresh_seconds=0))
    writer, reader = open_node("node-a"), open_node("node-b")
    late = ChromaIndex(tmp_path / "node-c", "127.0.0.1", int(port), name, refresh_seconds=3600) if port else None
    assert reader.documents() == {} and not reader.lexical_search("停车位", 3)
    assert late is None or late.documents() == {}
    Pipeline(writer, embedder).run([small_docs / "parking.txt"])
    assert list(reader.documents()) == ["parking"]
    if late is not None:  # a refresh (as before every write) sees the other node's commit at once
        late.refresh()
        assert list(late.documents()) == ["parking"]
    assert reader.lexical_search("停车位不少于1200个", 3)[0].chunk.doc_id == "parking"
    write(small_docs / "parking.txt", SMALL_REG.replace("1200", "1500"))  # a new version: the other node's lexical
    Pipeline(writer, embedder).run([small_docs / "parking.txt"])  # index follows it, holding that version only
    assert "1500" in reader.lexical_search("停车位不少于1500个", 3)[0].chunk.text
    from ingest.lexical import number

    assert {v for _, v in reader.lexical().versions()} == {number(reader.documents()["parking"].version)}


def test_a_process_sharing_the_writers_directory_does_not_sync_what_the_writer_keeps_in_step(tmp_path, embedder,
                                                                                              small_docs, monkeypatch):
    """With a Chroma server, a reader in the writer's own directory finds each commit already in the lexical
    index: it does not take the writer lock to compare every version (that cost a question tens of ms at 100k
    chunks, after every commit); a node with a directory of its own does."""
    port = os.environ.get("ASSISTANT_TEST_CHROMA_PORT")
    if not port:
        pytest.skip("needs a Chroma server (ASSISTANT_TEST_CHROMA_PORT)")
    name = f"s{time.time_ns()}"
    open_node = lambda d: ChromaIndex(tmp_path / d, "127.0.0.1", int(port), name, refresh_seconds=0)  # noqa: E731
    writer, same_dir, own_dir = open_node("a"), open_node("a"), open_node("b")
    for node in (same_dir, own_dir):
        assert node.documents() == {} and not node.lexical_search("停车位", 3)
    synced = {}
    sync = ChromaIndex._sync_lexical
    monkeypatch.setattr(ChromaIndex, "_sync_lexical", lambda self: synced.setdefault(id(self), []).append(1) or sync(self))
    for text in (SMALL_REG, SMALL_REG.replace("1200", "1500")):
        write(small_docs / "parking.txt", text)
        Pipeline(writer, embedder).run([small_docs / "parking.txt"])
        for node in (same_dir, own_dir):
            figure = "1500" if "1500" in text else "1200"
            assert figure in node.lexical_search(f"停车位不少于{figure}个", 3)[0].chunk.text
    assert id(same_dir) not in synced and len(synced[id(own_dir)]) == 2


def test_metadata_header_and_article_chunks(make_index, embedder, small_docs):
    index = make_index()
    Pipeline(index, embedder).run([small_docs / "parking.txt"])
    doc = index.documents()["parking"]
    assert (doc.title, doc.issuer, doc.date) == ("测试市停车管理条例", "测试市人民代表大会常务委员会", "2024-01-01")
    arts = {c.article: c for _, c in index.all_chunks("parking")}
    assert arts["第二条"].text == doc.text[arts["第二条"].char_start:arts["第二条"].char_end]
    assert arts["第二条"].section == ["第一章 总则"]
    assert index.dense(embedder.embed_query("收费标准每小时多少钱"), 1)[0].chunk.article == "第二条"


def test_a_broken_file_is_reported_and_the_rest_lands(settings, embedder, small_docs, tmp_path):
    (small_docs / "empty.txt").write_bytes(b"")
    (small_docs / "bin.txt").write_bytes(b"\x00\x01\x02" * 100)
    (small_docs / "data.xlsx").write_bytes(b"PK")
    index = ChromaIndex(settings.store.index_dir)
    report = Pipeline(index, embedder).run([small_docs, tmp_path / "missing.txt"])
    failed = {d.path.rsplit("/", 1)[-1]: d.error for d in report.documents if d.status == "failed"}
    assert set(failed) == {"empty.txt", "bin.txt", "data.xlsx", "missing.txt"}
    assert failed["empty.txt"] == "empty file" and "binary" in failed["bin.txt"]
    assert "unsupported file type '.xlsx'" in failed["data.xlsx"] and failed["missing.txt"] == "no such file"
    assert sorted(index.documents()) == ["notice", "parking"]


def _cli(*args):
    """app.py's main in this process (its output and exit code are what is tested, not a process start), with the
    hash embedder: the commands' output, not the vectors' meaning."""
    import contextlib
    import io
    from types import SimpleNamespace

    from app import main

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.setenv("ASSISTANT_EMBEDDING__BACKEND", "hash")
        mp.setenv("ASSISTANT_INGEST__NICE", "0")  # in this process: a niceness raised is never taken back
        try:
            code = main(list(args))
        except SystemExit as e:
            code = e.code
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def test_cli_ingest_json_docs_and_chunks(tmp_path, small_docs):
    idx = str(tmp_path / "cli-index")
    out = _cli("ingest", str(small_docs), "--index", idx, "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report) == {"documents", "chunks_total", "seconds"}
    assert {tuple(sorted(d)) for d in report["documents"]} == {("chunks", "doc_id", "error", "path", "status", "title")}
    docs = json.loads(_cli("docs", "--index", idx, "--json").stdout)
    assert {d["doc_id"] for d in docs} == {"parking", "notice"}
    assert all(len(d["sha256"]) == 64 and d["ingested_at"] for d in docs)
    chunks = json.loads(_cli("chunks", "parking", "--index", idx, "--json").stdout)
    assert [c["article"] for c in chunks if c["article"]] == ["第一条", "第二条", "第三条"]
    missing = _cli("chunks", "nope", "--index", idx)
    assert missing.returncode == 2 and "no document with id 'nope'" in missing.stderr


KILLER = """
import json, os, signal, sys
sys.path.insert(0, {root!r})
from ingest import pipeline, store
pipeline.BATCH_DOCUMENTS = 2  # commits of two documents: the first lands, the second is killed
original, calls = store.ChromaIndex.add_documents, []

def add_documents(self, items):
    calls.append([p.doc.doc_id for p in items])
    if len(calls) == 2:  # the second batch: its chunks are written, its records (the commit) are not
        with open({committed!r}, "w") as f:
            json.dump(calls[0], f)
        for p in items:
            ids = [c.chunk_id(p.doc.version) for c in p.chunks]
            self.chunks.upsert(ids=ids, embeddings=p.vectors.tolist(), documents=[c.text for c in p.chunks],
                               metadatas=[self._chunk_meta(c, p.doc.version) for c in p.chunks])
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, items)

store.ChromaIndex.add_documents = add_documents
import app
sys.exit(app.main(sys.argv[1:]))
"""


@pytest.mark.integration  # other processes
def test_kill_9_never_leaves_a_half_indexed_document(tmp_path):
    """Kill a real ingest between a document's chunk writes and its commit; every committed document must be
    whole, the half-written one invisible, and the next run completes."""
    src = tmp_path / "many"
    text = SPEECH.read_text(encoding="utf-8")
    for i in range(6):
        write(src / f"speech{i}.txt", text.replace("同志们", f"同志们{i}"))
    idx = tmp_path / "kill-index"
    env = dict(os.environ, ASSISTANT_EMBEDDING__BACKEND="hash")
    said = tmp_path / "committed.json"
    killer = KILLER.format(root=str(ROOT), committed=str(said))
    proc = subprocess.run([sys.executable, "-c", killer, "ingest", str(src), "--index", str(idx)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]

    index = ChromaIndex(idx)
    committed = index.documents()
    assert len(committed) == 2 and set(committed) == set(json.loads(said.read_text()))
    raw = index.chunks.get(include=["metadatas"])["metadatas"]
    assert len({m["doc_id"] for m in raw}) == 4  # the second batch's chunks are there, uncommitted
    for doc in committed.values():
        assert sum(1 for m in raw if m["doc_id"] == doc.doc_id and m["version"] == doc.version) == doc.chunks
    visible = {c.doc_id for _, c in index.all_chunks()}
    assert visible == set(committed)  # chunks of an uncommitted document are never visible
    # the lexical index may hold the killed version's rows; they are never read
    from ingest.lexical import number

    assert {(number(d.doc_id), number(d.version)) for d in committed.values()} <= index.lexical().versions()
    every_word = " ".join(c.text for _, c in index.all_chunks())
    assert {k.split(":")[0] for k in index.lexical_scores(every_word)} == set(committed)

    report = Pipeline(ChromaIndex(idx), HashEmbedder()).run([src])
    assert sorted(d.status for d in report.documents).count("unchanged") == len(committed)
    final = ChromaIndex(idx)
    assert len(final.documents()) == 6 and final.reconcile() == 0
    assert final.chunks.count() == sum(d.chunks for d in final.documents().values())


SLOW_WRITER = """
import sys, time
sys.path.insert(0, {root!r})
from ingest.embed import HashEmbedder
from ingest.pipeline import Pipeline
from ingest.store import ChromaIndex

class Slow(HashEmbedder):
    def embed_passages(self, texts):
        time.sleep(0.4)  # a wide window between choosing the document id and committing it
        return super().embed_passages(texts)

while time.time() < {start}:
    time.sleep(0.005)
report = Pipeline(ChromaIndex({index!r}), Slow()).run([{path!r}])
print(report.documents[0].status, report.documents[0].doc_id)
"""


@pytest.mark.integration  # other processes
def test_two_processes_ingesting_the_same_file_name_both_land(tmp_path):
    """Two CLI-like writers, one index, two different notice.txt at the same moment: both are committed under
    different ids (the writer lock serialises them), and each process sees the other's commit."""
    idx = tmp_path / "shared-index"
    ChromaIndex(idx)  # create the collections once, before the race
    start = time.time() + 3
    procs = []
    for name, words in (("a", "甲单位"), ("b", "乙单位")):
        path = tmp_path / name / "notice.txt"
        write(path, f"title: {words}通知\n---\n第一条 {words}的停车位为{len(words)}00个。\n")
        code = SLOW_WRITER.format(root=str(ROOT), start=start, index=str(idx), path=str(path))
        procs.append(subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e[-1500:] for _, e in outs]
    statuses = [o.split() for o, _ in outs]
    assert [s[0] for s in statuses] == ["added", "added"] and statuses[0][1] != statuses[1][1], statuses
    docs = ChromaIndex(idx).documents()
    assert {d.title for d in docs.values()} == {"甲单位通知", "乙单位通知"}


def test_a_commit_in_another_process_is_seen_without_waiting(tmp_path, small_docs):
    """The generation file: a reader learns of a writer's commit at once, with no refresh interval."""
    reader = ChromaIndex(tmp_path / "index", refresh_seconds=3600)
    assert reader.documents() == {}
    Pipeline(ChromaIndex(tmp_path / "index"), HashEmbedder()).run([small_docs])
    assert len(reader.documents()) == 2


@pytest.mark.integration  # other processes
def test_a_running_reader_searches_the_vectors_another_process_committed(tmp_path, small_docs, monkeypatch):
    """Embedded Chroma keeps vectors in each process's memory: after another process's commit the reader must
    find the new chunks by vector, and fetch their vectors by id (before the fix: not found, then an error).
    It reopens at most once per REOPEN_SECONDS; in between, questions still work and BM25 finds the new text."""
    from ingest import store

    emb = HashEmbedder()
    reader = ChromaIndex(tmp_path / "index", refresh_seconds=3600)
    first = sorted(small_docs.glob("*"))[0]
    Pipeline(reader, emb).run([first])
    v = emb.embed_query("停车位")
    assert reader.dense(v, 20)

    def ingest_elsewhere(path):
        code = ("import sys; sys.path.insert(0, {root!r})\n"
                "from ingest.embed import HashEmbedder\nfrom ingest.pipeline import Pipeline\n"
                "from ingest.store import ChromaIndex\n"
                "Pipeline(ChromaIndex({index!r}), HashEmbedder()).run([{path!r}])").format(
            root=str(ROOT), index=str(tmp_path / "index"), path=str(path))
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, timeout=120)

    def new_since(before):
        return set(reader.documents()) - before

    ingest_elsewhere(small_docs)
    new = new_since({d for d in reader.documents() if reader.documents()[d].path == str(first.resolve())})
    assert new
    reader.settle()  # the reopen is made in the background
    found = {h.chunk.doc_id for h in reader.dense(v, 50)} | {h.sentence.doc_id for h in reader.dense_sentences(v, 50)}
    assert found & new
    keys = [k for k in reader.lexical_scores("停车位") if k.split(":")[0] in new]
    assert keys and set(reader.chunk_vectors(keys)) == set(keys)

    # a second commit within the interval: found by BM25 at once; a missing vector is no error and does not
    # cost the vectors that are loaded
    monkeypatch.setattr(store, "REOPEN_SECONDS", 3600.0)
    before = set(reader.documents())
    write(tmp_path / "more" / "bikes.txt", "title: 非机动车停放办法\n---\n第一条 非机动车停车位应当划线标识。\n")
    ingest_elsewhere(tmp_path / "more" / "bikes.txt")
    (third,) = new_since(before)
    fresh = [k for k in reader.lexical_scores("非机动车停车位") if k.startswith(third + ":")]
    assert fresh and keys
    assert set(reader.chunk_vectors(fresh + keys)) == set(keys)  # the new ones are not loaded yet
    loaded = keys[0].split(":")[0]
    unloaded, mine = reader.sentence_vectors([(third, 0, 1000), (loaded, 0, 100_000)])
    assert unloaded == [] and mine  # one document's vectors not loaded yet cost not the others'
    monkeypatch.setattr(store, "REOPEN_SECONDS", 0.0)  # the interval has passed and the other process is quiet
    monkeypatch.setattr(store, "QUIET_SECONDS", 0.0)
    reader.documents()
    reader.settle()
    assert set(reader.chunk_vectors(fresh + keys)) == set(fresh + keys)
    assert reader.sentence_vectors([(third, 0, 1000)])[0]  # nothing read before the reopen stays missing


def _ingest_elsewhere(index_dir: Path, path: Path) -> None:
    """Ingest a file in another process (embedded Chroma keeps each process's vectors in its own memory)."""
    code = ("import sys; sys.path.insert(0, {root!r})\n"
            "from ingest.embed import HashEmbedder\nfrom ingest.pipeline import Pipeline\n"
            "from ingest.store import ChromaIndex\n"
            "Pipeline(ChromaIndex({index!r}), HashEmbedder()).run([{path!r}])").format(
        root=str(ROOT), index=str(index_dir), path=str(path))
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, timeout=120)


@pytest.mark.integration  # other processes
def test_a_write_after_another_process_committed_is_made_on_a_client_that_loaded_it(tmp_path, small_docs,
                                                                                     monkeypatch):
    """A reader waits for its next reopen (REOPEN_SECONDS); a writer must not: a client that has not loaded
    another process's writes persists its own view of the vector index over theirs, and the index on disk no
    longer matches its rows (found at 100k chunks: every later writer crashed in an upsert)."""
    from ingest import store

    emb = HashEmbedder()
    index = ChromaIndex(tmp_path / "index", refresh_seconds=3600)
    first, second = sorted(small_docs.glob("*"))
    Pipeline(index, emb).run([first])
    _ingest_elsewhere(tmp_path / "index", second)
    index.documents()  # the first reopen comes at once
    index.settle()
    monkeypatch.setattr(store, "REOPEN_SECONDS", 3600.0)
    client = index.clients
    write(tmp_path / "more" / "bikes.txt", "title: 非机动车停放办法\n---\n第一条 非机动车停车位应当划线标识。\n")
    _ingest_elsewhere(tmp_path / "index", tmp_path / "more" / "bikes.txt")
    assert len(index.documents()) == 3
    index.settle()
    assert all(a is b for a, b in zip(index.clients, client))  # a reader waits for the interval
    with index.writer():
        assert not any(a is b for a, b in zip(index.clients, client))  # a writer does not, for any client


@pytest.mark.integration  # another process
def test_a_reader_reopens_in_the_background_and_a_write_here_meanwhile_drops_the_reopen(tmp_path, small_docs):
    """Issue 12: loading another process's vectors (a new embedded client, 0.7 s at 100k chunks) is not paid by
    a question: the reopen is made in a thread and taken up when ready. A reopen made before this process wrote
    may lack that write, so it is dropped."""
    import threading

    emb = HashEmbedder()
    reader = ChromaIndex(tmp_path / "index", refresh_seconds=3600)
    first, second = sorted(small_docs.glob("*"))
    Pipeline(reader, emb).run([first])
    _ingest_elsewhere(tmp_path / "index", second)

    release, connected = threading.Event(), []
    real = reader._connect

    def slow_connect(group, fresh=False):
        connected.append(threading.current_thread().name)
        if threading.current_thread().name == "chroma-reopen":
            release.wait(60)
        return real(group, fresh)
    reader._connect = slow_connect
    clients = reader.clients
    docs = reader.documents()  # starts the reopen, and does not wait for it
    assert len(docs) == 2 and connected == ["chroma-reopen"] and reader.clients == clients
    assert reader.dense(emb.embed_query("停车位"), 10)  # the old client answers meanwhile
    with reader.writer():  # a write here while the reopen is at work: the writer reopens for itself, at once
        written = reader.clients
    assert not set(map(id, written)) & set(map(id, clients))
    release.set()
    reader.settle()
    assert reader.clients == written  # the one made in the background is dropped: it may lack this write
    new = next(d for d in reader.documents() if reader.documents()[d].path == str(second.resolve()))
    keys = [f"{new}:{o}" for o in range(reader.documents()[new].chunks)]
    assert set(reader.chunk_vectors(keys)) == set(keys)
    later = ChromaIndex(tmp_path / "index", refresh_seconds=3600)  # an index opened now shares what was taken up,
    assert all(x is y for x, y in zip(later.clients, reader.clients))  # not the dropped client
    assert set(later.chunk_vectors(keys)) == set(keys)


@pytest.mark.integration  # another process
def test_a_corrupt_index_is_a_clear_message_not_a_traceback(tmp_path):
    (tmp_path / "idx" / "chroma").mkdir(parents=True)
    (tmp_path / "idx" / "chroma" / "chroma.sqlite3").write_bytes(b"not a database" * 1000)
    proc = subprocess.run([sys.executable, "app.py", "docs", "--index", str(tmp_path / "idx")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "cannot be opened" in proc.stderr and "Traceback" not in proc.stderr


def test_orphans_are_cleaned_at_start_unless_a_writer_is_at_work(tmp_path, small_docs):
    index = ChromaIndex(tmp_path / "index")
    Pipeline(index, HashEmbedder()).run([small_docs])
    doc = next(iter(index.documents().values()))
    chunk = index.all_chunks(doc.doc_id)[0][1]
    index._intend(doc.doc_id)  # what add_document does first: the write that is then killed
    index.chunks.upsert(ids=["orphan"], embeddings=[HashEmbedder().embed_query("x").tolist()], documents=["x"],
                        metadatas=[index._chunk_meta(chunk, "uncommitted-version")])
    other = ChromaIndex(tmp_path / "index")
    with index.writer():  # an ingest at work in this directory: its uncommitted chunks are not orphans
        assert other.clean_orphans() == 0
    assert other.clean_orphans() == 1 and index.chunks.get(ids=["orphan"])["ids"] == []
    assert not any((tmp_path / "index" / "pending-policy-docs").iterdir())  # the intent is gone with it


def test_reconcile_reads_only_the_documents_whose_write_did_not_finish(make_index, small_docs, monkeypatch):
    """With a Chroma server too: a full pass would read every row (and delete another node's uncommitted ones)."""
    from ingest import store

    index = make_index()
    Pipeline(index, HashEmbedder()).run([small_docs])  # its first reconcile was a full pass (a new index)
    assert not any(index._intents.iterdir())  # every write finished

    def no_full_pass(*a, **k):
        raise AssertionError("reconcile read every chunk")
    monkeypatch.setattr(store, "_paged", no_full_pass)
    with index.writer():
        assert index.reconcile() == 0
    monkeypatch.undo()
    # an index from before the intents (no marker): one full pass, then the marker (with a server, no pass: the
    # row may be another node's write at work, see test_a_new_node_on_a_shared_server_leaves_...)
    index._intents_kept.unlink()
    orphan_doc = next(iter(index.documents().values()))
    chunk = index.all_chunks(orphan_doc.doc_id)[0][1]
    index.chunks.upsert(ids=["old-orphan"], embeddings=[HashEmbedder().embed_query("x").tolist()], documents=["x"],
                        metadatas=[index._chunk_meta(chunk, "never-committed")])
    with index.writer():
        assert index.reconcile() == (0 if index.shared_server else 1)
    assert index._intents_kept.exists()


def test_a_commit_changes_the_lexical_index_by_one_documents_chunks(tmp_path, small_docs, monkeypatch):
    """Issue 12: once built, the lexical index is never rebuilt: each commit adds that version's rows and deletes
    the other versions' rows, and a second process sees the commit from the commit log."""
    from ingest.lexical import LexicalIndex, number

    index = ChromaIndex(tmp_path / "index")
    pipe = Pipeline(index, HashEmbedder())
    pipe.run([small_docs])
    reader = ChromaIndex(tmp_path / "index")  # another process's view of the same directory
    assert reader.lexical_search("停车位", 3)
    monkeypatch.setattr(LexicalIndex, "rebuild", lambda *a, **k: pytest.fail("the lexical index was rebuilt"))
    before = index.lexical().versions()
    write(small_docs / "new.txt", "title: 新增文件\n---\n第一条 新建公共充电桩八百个。\n")
    pipe.run([small_docs])
    new = index.documents()["new"]
    assert index.lexical().versions() - before == {(number("new"), number(new.version))}
    assert reader.lexical_search("公共充电桩", 3)[0].chunk.doc_id == "new"
    write(small_docs / "new.txt", "title: 新增文件\n---\n第一条 新建公共充电桩九百个。\n")  # a new version
    pipe.run([small_docs])
    newer = index.documents()["new"].version
    assert {v for d, v in index.lexical().versions() if d == number("new")} == {number(newer)}
    rows = [row for row in index.lexical().scores("充电桩") if row[0] == number("new")]
    assert len(rows) == index.documents()["new"].chunks  # one row per chunk of the committed version only


def test_uncommitted_lexical_rows_are_never_read_and_reconcile_removes_them(tmp_path, small_docs):
    """A writer killed after adding a version's rows but before committing its record: readers skip them, the
    next reconcile deletes them; a committed version missing from the lexical index is added back."""
    from ingest.lexical import number

    index = ChromaIndex(tmp_path / "index")
    Pipeline(index, HashEmbedder()).run([small_docs])
    doc = next(iter(index.documents().values()))
    with index.writer():
        index.lexical().add(doc.doc_id, "uncommitted", [(0, "未提交的版本写着独有的词语蝴蝶兰")])
        index.lexical().remove(doc.doc_id, keep_version="uncommitted")  # and lost the committed rows
    assert not index.lexical_search("蝴蝶兰", 3)
    index.reconcile()
    pairs = index.lexical().versions()
    assert (number(doc.doc_id), number("uncommitted")) not in pairs
    assert (number(doc.doc_id), number(doc.version)) in pairs


def test_an_index_from_before_the_incremental_lexical_index_is_built_once_and_its_old_files_removed(tmp_path, small_docs):
    index = ChromaIndex(tmp_path / "index")
    Pipeline(index, HashEmbedder()).run([small_docs])
    old = tmp_path / "index" / "lexical-policy-docs"
    old.mkdir()
    (old / "meta.json").write_text("{}")
    shutil.rmtree(index.lexical_dir)  # as if the index had been written by the bm25s version
    reopened = ChromaIndex(tmp_path / "index")
    assert reopened.lexical_search("停车位", 3) and not old.exists()


def test_prune_removes_only_documents_from_the_paths_given(tmp_path, small_docs):
    """Another node's documents (paths that do not exist here) and uploads are not this run's to prune."""
    index = ChromaIndex(tmp_path / "index")
    pipe = Pipeline(index, HashEmbedder())
    other = tmp_path / "other-node"
    write(other / "remote.txt", "title: 外地文件\n---\n第一条 外地文件的内容。\n")
    pipe.run([other])
    import shutil

    shutil.rmtree(other)  # as seen from this node: that path does not exist here
    pipe.run([small_docs])
    (small_docs / "notice.md").unlink()
    report = pipe.run([small_docs], prune=True)
    assert [d.status for d in report.documents].count("removed") == 1
    assert "外地文件" in {d.title for d in index.documents().values()}


def test_chroma_index_implements_the_store_seam_with_neutral_filters(tmp_path, small_docs):
    import inspect

    from ingest.store import Store

    for name, member in vars(Store).items():
        if callable(member) and not name.startswith("_"):
            impl = getattr(ChromaIndex, name)
            assert list(inspect.signature(impl).parameters) == list(inspect.signature(member).parameters), name
    index = ChromaIndex(tmp_path / "index")
    emb = HashEmbedder()
    Pipeline(index, emb).run([small_docs])
    v = emb.embed_query("停车位")
    assert {h.chunk.doc_id for h in index.dense(v, 10, {"parking"})} == {"parking"}
    assert index.dense(v, 10, set()) == [] and index.dense_sentences(v, 10, set()) == []
    assert {h.sentence.doc_id for h in index.dense_sentences(v, 10, {"notice"})} == {"notice"}
    assert all(k.startswith("parking:") for k in index.lexical_scores("停车位", {"parking"}))
    everywhere = index.article_chunks("第一条")
    assert everywhere and all(c.doc_id == "parking" for c in index.article_chunks("第一条", {"parking"}))


def test_sentence_vectors_are_exactly_the_sentences_inside_the_span(tmp_path, small_docs):
    index = ChromaIndex(tmp_path / "index")
    Pipeline(index, HashEmbedder()).run([small_docs])
    doc = index.documents()["parking"]
    (every,) = index.sentence_vectors([("parking", 0, len(doc.text))])
    spans = sorted((x.char_start, x.char_end) for x, _ in every)
    assert len(spans) == len(index.sentences.get(where={"doc_id": "parking"})["ids"]) >= 3  # every stored sentence
    assert all(doc.text[a:b] == x.text for (x, _), (a, b) in zip(sorted(every, key=lambda r: r[0].char_start), spans))
    start, end = spans[1][0], spans[-2][1]
    inside, none, empty, again = index.sentence_vectors([("parking", start, end), ("nope", 0, 10), ("parking", 5, 5),
                                                         ("parking", start, end)])
    assert sorted((x.char_start, x.char_end) for x, _ in inside) == spans[1:-1]
    assert all(v.shape == (HashEmbedder().dim,) for _, v in inside)
    assert none == [] and empty == [] and [x for x, _ in again] == [x for x, _ in inside]


def test_a_document_over_the_chunk_limit_is_that_files_error(tmp_path, small_docs, monkeypatch):
    import ingest.pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "MAX_CHUNKS", 1)
    report = Pipeline(ChromaIndex(tmp_path / "index"), HashEmbedder()).run([small_docs])
    failed = [d for d in report.documents if d.status == "failed"]
    assert failed and all("chunks, over the 1 limit" in d.error for d in failed)


def test_reads_by_numbered_id_equal_the_filtered_reads(tmp_path, small_docs, monkeypatch):
    """Issue 12: a document's sentences, an article and a phrase are read by id (a filter scans the collection);
    the result equals the filtered read, which an index without sentence counts still uses."""
    from ingest import store

    index = ChromaIndex(tmp_path / "index")
    Pipeline(index, HashEmbedder()).run([small_docs])
    doc = index.documents()["parking"]
    filtered = []
    real = index.chunks.get

    def spy(*args, **kwargs):
        filtered.append(kwargs.get("where"))
        return real(*args, **kwargs)
    monkeypatch.setattr(index.chunks, "get", spy)
    by_id = ([(x.char_start, x.ordinal) for x, _ in index.sentence_vectors([("parking", 0, len(doc.text))])[0]],
             [c.ordinal for c in index.article_chunks("第二条", {"parking", "notice"})],
             [c.ordinal for c in index.chunks_mentioning("parking", "停车")])
    assert by_id[0] and by_id[1] and by_id[2] and not any(filtered)
    old = ChromaIndex(tmp_path / "index")
    old.documents()
    for m in old._metas.values():
        m.pop("sentences")  # a record from before the count
    monkeypatch.setattr(store, "ARTICLE_BY_ID", 0)
    assert ([(x.char_start, x.ordinal) for x, _ in old.sentence_vectors([("parking", 0, len(doc.text))])[0]],
            [c.ordinal for c in old.article_chunks("第二条", {"parking", "notice"})]) == by_id[:2]


def test_a_search_within_few_documents_is_exact_here_and_equals_chromas(tmp_path, small_docs, monkeypatch):
    """Issue 12: a search within documents of at most EXACT_SEARCH chunks scores their vectors here (Chroma filters
    every row for a query with a where: 70-97 ms at 100k chunks with a server); it ranks as Chroma's filtered
    query does, by cosine, and above the bound Chroma is asked."""
    from ingest import store

    index = ChromaIndex(tmp_path / "index")
    emb = HashEmbedder()
    Pipeline(index, emb).run([small_docs])
    queries = []
    for coll in (index.chunks, index.sentences):
        monkeypatch.setattr(coll, "query", lambda *a, _real=coll.query, **k: queries.append(k.get("where")) or _real(*a, **k))
    for q in ("停车位收费标准", "宣传周活动时间", "宣传点 停车场"):
        v = emb.embed_query(q)
        for within in ({"parking"}, {"parking", "notice"}):
            mine = ([(h.chunk.doc_id, h.chunk.ordinal, round(h.score, 5)) for h in index.dense(v, 5, within)],
                    [(h.sentence.doc_id, h.sentence.ordinal, round(h.score, 5)) for h in index.dense_sentences(v, 8, within)])
            assert mine[0] and mine[1] and not queries
            docs = index.documents()
            rows = sum(docs[d].chunks + index._metas[d]["sentences"] for d in within)
            monkeypatch.setattr(store, "EXACT_SEARCH", rows)  # chunks and sentences count: at the bound, here
            index.dense(v, 5, within), index.dense_sentences(v, 8, within)
            assert not queries
            monkeypatch.setattr(store, "EXACT_SEARCH", rows - 1)
            chroma = ([(h.chunk.doc_id, h.chunk.ordinal, round(h.score, 5)) for h in index.dense(v, 5, within)],
                      [(h.sentence.doc_id, h.sentence.ordinal, round(h.score, 5))
                       for h in index.dense_sentences(v, 8, within)])
            assert len(queries) == 2 and all(queries)
            tied = lambda rows: sorted(rows, key=lambda r: (-r[2], r[0], r[1]))  # (equal scores: either order)
            assert [tied(x) for x in mine] == [tied(x) for x in chroma], q
            queries.clear()
            monkeypatch.setattr(store, "EXACT_SEARCH", 2000)


def test_which_documents_have_an_article_is_read_from_layouts(tmp_path, small_docs, monkeypatch):
    """Issue 12: whether any document has a 第N条 (a question naming an article none of its candidates' documents
    has) is answered from the layouts the records carry, without reading rows; versions without one by filter."""
    index = ChromaIndex(tmp_path / "index")
    Pipeline(index, HashEmbedder()).run([small_docs])
    write(small_docs / "more.txt", "title: 另一条例\n---\n第一条 总则。\n\n第二条 细则。\n\n第九条 附则。\n")
    Pipeline(index, HashEmbedder()).run([small_docs / "more.txt"])
    reads = []
    monkeypatch.setattr(index.chunks, "get", lambda *a, _real=index.chunks.get, **k: reads.append(k) or _real(*a, **k))
    for article in ("第一条", "第二条", "第九条", "第二百条"):
        expected = {c.doc_id for c in index.article_chunks(article)}
        reads.clear()
        assert index.article_documents(article) == expected and not reads, article
        assert index.article_documents(article, {"more"}) == expected & {"more"} and not reads
    assert index.article_documents("第九条") == {"more"} and index.article_documents("第二条") >= {"parking", "more"}
    write(small_docs / "titled.txt", "title: 第九条\n---\n第一条 标题像条文编号的文件。\n")  # a title is no article
    Pipeline(index, HashEmbedder()).run([small_docs / "titled.txt"])
    reads.clear()
    assert index.article_documents("第九条") == {"more"} and not reads
    for m in index._metas.values():
        m.pop("layout", None)  # versions indexed before layouts
    assert index.article_documents("第九条") == {"more"} and reads and index.article_documents("第二百条") == set()


def test_an_article_the_candidates_documents_lack_joins_from_the_documents_that_have_it(tmp_path, small_docs,
                                                                                         monkeypatch):
    """A 第九条 none of the candidates' documents has: with a title named, that document's article joins; with none,
    every document that has it, up to ARTICLE_DOCS; above that none (it is still not absent)."""
    from assistant import retrieval
    from assistant.pool import Candidate, Pool
    from assistant.retrieval import HybridRetriever, query_terms

    write(small_docs / "rules.txt", "title: 另一条例\n---\n第一条 总则。\n\n第二条 细则。\n\n第九条 附则内容在此。\n")
    write(small_docs / "more.txt", "title: 第三条例\n---\n第一条 总则。\n\n第九条 其他附则。\n")
    index, emb = ChromaIndex(tmp_path / "index"), HashEmbedder()
    Pipeline(index, emb).run([small_docs])
    r = HybridRetriever(index, emb)

    def joined(q: str) -> tuple[set[str], list]:
        pool = Pool(q, emb.embed_query(q), query_terms(q), [], {"parking:0": Candidate(index.chunks_by_key(["parking:0"])["parking:0"])}, [], [])
        r._add_named_articles(pool, None)
        return {k.split(":")[0] for k in pool.candidates} - {"parking"}, pool.absent_articles
    assert joined("另一条例第九条规定了什么？") == ({"rules"}, [])
    assert joined("第九条规定了什么？") == ({"rules", "more"}, [])
    monkeypatch.setattr(retrieval, "ARTICLE_DOCS", 1)
    assert joined("第九条规定了什么？") == (set(), [])
    assert joined("第二百条规定了什么？") == (set(), ["第二百条"])


def test_a_stored_document_reads_its_text_when_used_and_copies_as_a_plain_one(tmp_path, small_docs):
    import copy as copying
    import pickle

    from ingest.schema import Document

    Pipeline(ChromaIndex(tmp_path / "index"), HashEmbedder()).run([small_docs])
    doc = ChromaIndex(tmp_path / "index").documents()["parking"]
    assert "停车" in repr(doc) and doc.text not in repr(doc)  # (no read to show it)
    plain = pickle.loads(pickle.dumps(doc))
    assert type(plain) is Document and plain.text == doc.text and plain.meta() == doc.meta()
    assert type(copying.deepcopy(doc)) is Document
    with pytest.raises(AttributeError):
        doc.text = "另一段文字"


def test_a_writer_gives_way_to_questions_asked_from_its_directory(tmp_path, small_docs, monkeypatch):
    """Issue 12: with a Chroma server a writer's inserts run at the server's priority and a question's reads wait
    for them, so a writer that sees a question asked from its index directory in the last ASKING_SECONDS waits as
    long as its commit took (at most GIVE_WAY_SECONDS) after it; with no question asked it does not."""
    from ingest import store

    index, emb = ChromaIndex(tmp_path / "index"), HashEmbedder()
    pipe = Pipeline(index, emb)
    pipe.run([small_docs])
    waits = []
    monkeypatch.setattr(store, "_pause", waits.append)
    monkeypatch.setattr(index, "shared_server", True)  # (what a Chroma server sets; the store logic is the same)
    asking = index._asking_file
    write(small_docs / "a.txt", "title: 甲\n---\n第一条 甲文。\n")
    pipe.run([small_docs / "a.txt"])
    assert waits == [] and not asking.exists()
    index.dense(emb.embed_query("停车"), 3)  # a question: the directory is told
    assert asking.exists()
    write(small_docs / "b.txt", "title: 乙\n---\n第一条 乙文。\n")
    pipe.run([small_docs / "b.txt"])
    assert len(waits) == 1 and 0 < waits[0] <= store.GIVE_WAY_SECONDS
    os.utime(asking, (time.time() - store.ASKING_SECONDS - 1,) * 2)  # asked a while ago
    write(small_docs / "c.txt", "title: 丙\n---\n第一条 丙文。\n")
    pipe.run([small_docs / "c.txt"])
    assert len(waits) == 1


def _spy_records(index) -> list[tuple]:
    """Every read of the records collection: (ids, where, include)."""
    calls, real_get = [], index.records.get

    def spy(*args, **kwargs):
        calls.append((kwargs.get("ids"), kwargs.get("where"), tuple(kwargs.get("include") or ())))
        return real_get(*args, **kwargs)
    index.records.get = spy
    return calls


def test_a_commit_reads_back_only_the_changed_documents_text(tmp_path, small_docs):
    """Issue 12: the writer's cached documents take its own commit in place (no record read back); another
    process reads only the metadata of the records committed since, never every record, a text only when it is
    used, and the version record only when the generation file does not name it (a writer from before it did)."""
    index = ChromaIndex(tmp_path / "index")
    pipe = Pipeline(index, HashEmbedder())
    pipe.run([small_docs])
    reader = ChromaIndex(tmp_path / "index")
    assert set(reader.documents()) == set(index.documents())
    mine, theirs = _spy_records(index), _spy_records(reader)
    write(small_docs / "new.txt", "title: 新增文件\n---\n第一条 新建公共充电桩八百个。\n")
    pipe.run([small_docs / "new.txt"])
    docs = index.documents()
    assert set(docs) >= {"new", "parking"} and "充电桩" in docs["new"].text and docs["parking"].text
    assert not [c for c in mine if "documents" in c[2]], mine  # (its own commits' texts are kept)
    seen = reader.documents()
    assert seen.keys() == docs.keys()
    assert all(ids or where for ids, where, _ in theirs), theirs  # no full read
    assert [where for _, where, _ in theirs] == [{"seq": {"$gte": reader._seen.seq - 1}}], theirs  # metadata only
    assert not [c for c in theirs if "documents" in c[2]], theirs
    assert len(theirs) == 1, theirs  # the version came with the generation file: no read of its record
    assert "充电桩" in seen["new"].text and seen["new"].length == len(seen["new"].text)
    assert [ids for ids, _, include in theirs if "documents" in include] == [["new"]], theirs  # when used, by id
    theirs.clear()
    write(small_docs / "more.txt", "title: 又一个文件\n---\n第一条 新建口袋公园十二个。\n")
    pipe.run([small_docs / "more.txt"])
    older = index._generation_file.read_text().rsplit(" v", 1)[0]  # as a writer from before it wrote the file
    index._generation_file.write_text(older)
    assert "口袋公园" in reader.documents()["more"].text
    assert [ids for ids, _, _ in theirs if ids] == [["~commits"], ["more"]], theirs  # (store.VERSION_ID)


def test_texts_are_read_when_used_and_kept_within_a_bound(tmp_path, small_docs, monkeypatch):
    """Issue 12: opening an index reads no document's text; a question's rows are built from the texts of their
    documents only, read at once; at most TEXT_CACHE characters are kept, and an evicted text is read again."""
    from ingest import store

    built = ChromaIndex(tmp_path / "index")
    Pipeline(built, HashEmbedder()).run([small_docs])
    lengths = {d.doc_id: d.length for d in built.documents().values()}
    monkeypatch.setattr(store, "TEXT_CACHE", max(lengths.values()) + 1)  # one document's text at a time
    reader = ChromaIndex(tmp_path / "index")
    calls = _spy_records(reader)
    docs = reader.documents()
    assert not [c for c in calls if "documents" in c[2]], calls
    assert {k: d.length for k, d in docs.items()} == lengths and len(docs) >= 2
    first, second = sorted(docs)[:2]
    rows = reader.chunks_by_key([f"{first}:0", f"{second}:0"])
    assert [ids for ids, _, include in calls if "documents" in include] == [sorted([first, second])], calls
    assert rows[f"{first}:0"].text == built.chunks_by_key([f"{first}:0"])[f"{first}:0"].text
    calls.clear()
    assert docs[second].text and not calls  # the newest is kept
    assert docs[first].text and [ids for ids, _, _ in calls] == [[first]]  # evicted, read again
    assert reader._texts._held <= store.TEXT_CACHE


def test_a_text_replaced_before_it_is_read_gives_no_rows(tmp_path, small_docs, monkeypatch):
    """A reader that has not yet seen a commit replacing a document it holds must not build that version's
    chunks from the new version's text (the record holds only the newest): it gets none, as for deleted rows."""
    writer = ChromaIndex(tmp_path / "index")
    pipe = Pipeline(writer, HashEmbedder())
    pipe.run([small_docs])
    reader = ChromaIndex(tmp_path / "index")
    old = reader.documents()["parking"]
    monkeypatch.setattr(reader, "_fresh", lambda: True)  # the reader has not looked at the generation file yet
    write(small_docs / "parking.txt", "title: 停车条例\n---\n第一条 全新的文字，与旧版本完全不同。\n")
    pipe.run([small_docs / "parking.txt"])
    assert reader.documents()["parking"] is old
    assert reader.chunks_by_key(["parking:0", "parking:1"]) == {} and old.text == ""
    monkeypatch.undo()
    assert "全新的文字" in reader.chunks_by_key(["parking:0"])["parking:0"].text
    # what the edges show (the API, the reader page, the UI's document tab): the new version, read again
    from assistant.service import Assistant

    stale = ChromaIndex(tmp_path / "index")
    stale.documents()
    monkeypatch.setattr(stale, "_fresh", lambda: True)
    write(small_docs / "parking.txt", "title: 停车条例\n---\n第一条 第三个版本的文字。\n")
    pipe.run([small_docs / "parking.txt"])
    monkeypatch.setattr(stale, "_fresh", lambda: stale._generation is not None)  # (refresh() makes it look)
    shown = Assistant.document(type("A", (), {"index": stale})(), "parking")
    assert "第三个版本" in shown.text


def test_records_from_before_lengths_get_theirs_from_their_texts(tmp_path, small_docs):
    """An index written before records kept the text's length: the length is taken from the text (read in one
    call), so a file with the same text under another name is still found to be a copy."""
    index = ChromaIndex(tmp_path / "index")
    Pipeline(index, HashEmbedder()).run([small_docs])
    got = index.records.get(where={"doc_id": {"$ne": "~commits"}}, include=["documents", "metadatas", "embeddings"])
    index.records.delete(ids=got["ids"])  # (an upsert keeps the keys it is not given)
    index.records.add(ids=got["ids"], embeddings=got["embeddings"], documents=got["documents"],
                      metadatas=[{k: v for k, v in m.items() if k != "length"} for m in got["metadatas"]])
    reader = ChromaIndex(tmp_path / "index")
    calls = _spy_records(reader)
    docs = reader.documents()
    assert {k: d.length for k, d in docs.items()} == {m["doc_id"]: len(t) for t, m in zip(got["documents"],
                                                                                        got["metadatas"])}
    assert len([c for c in calls if "documents" in c[2]]) == 1, calls
    copy = tmp_path / "copy" / "parking-copy.txt"
    copy.parent.mkdir()
    copy.write_bytes(next(small_docs.glob("parking*")).read_bytes().replace(b"\n", b"\r\n"))  # the same text
    line = Pipeline(reader, HashEmbedder()).run([copy]).documents[0]  # (a writer: it writes the lengths in)
    assert (line.status, line.doc_id) == ("unchanged", "parking") and "same text" in line.error, line
    later = ChromaIndex(tmp_path / "index")
    calls = _spy_records(later)
    assert {k: d.length for k, d in later.documents().items()} == {k: d.length for k, d in docs.items()}
    assert not [c for c in calls if "documents" in c[2]], calls


def test_a_removal_and_an_unfinished_write_reach_other_processes(tmp_path, small_docs):
    """A removal leaves no record to find by its number: the version record counts removals, and a reader that
    sees the count change compares every record once. A write killed after its commit (no generation bump, no
    version) is made known by the next writer's reconcile."""
    index = ChromaIndex(tmp_path / "index")
    Pipeline(index, HashEmbedder()).run([small_docs])
    reader = ChromaIndex(tmp_path / "index")
    assert "parking" in reader.documents()
    index.remove_document("parking")
    assert "parking" not in reader.documents() and "parking" not in index.documents()
    # a record written as a killed writer would leave it: committed, but no version record counts it
    doc = next(iter(index.documents().values()))
    meta = dict(index._metas[doc.doc_id], title="改过的标题")
    index._intend(doc.doc_id)
    index.records.upsert(ids=[doc.doc_id], embeddings=[[1.0]], documents=[doc.text], metadatas=[meta])
    assert reader.documents()[doc.doc_id].title != "改过的标题"  # nothing told it yet
    with index.writer():
        index.reconcile()
    assert reader.documents()[doc.doc_id].title == "改过的标题"


@pytest.mark.integration  # another process
def test_vector_search_is_wide_enough_for_the_results_asked_and_old_indexes_are_widened(tmp_path, small_docs):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    from ingest.store import EF_SEARCH

    # an index made before the setting: Chroma's default breadth (100), below the 120 sentences a question asks
    old = chromadb.PersistentClient(path=str(tmp_path / "index" / "chroma"),
                                    settings=ChromaSettings(anonymized_telemetry=False))
    old.get_or_create_collection("policy-docs-sentences", embedding_function=None,
                                 configuration={"hnsw": {"space": "cosine"}})
    del old
    index = ChromaIndex(tmp_path / "index")
    for c in (index.chunks, index.sentences):  # (and one inserting thread: the same documents, the same graph)
        assert (c.configuration["hnsw"]["ef_search"], c.configuration["hnsw"]["num_threads"]) == (EF_SEARCH, 1)
    Pipeline(index, HashEmbedder()).run([small_docs])
    code = ("import chromadb; c = chromadb.PersistentClient(path={path!r}); "
            "print(c.get_collection('policy-docs-sentences').configuration['hnsw']['ef_search'])").format(
        path=str(tmp_path / "index" / "chroma"))
    seen = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert int(seen.stdout.split()[-1]) == EF_SEARCH  # stored, as another process reads it (Chroma does not store
    # num_threads: every process that opens the index sets it)


def test_the_same_text_in_another_encoding_and_name_is_one_document(make_index, small_docs, tmp_path):
    """Issue 14.9: the bytes differ (GBK, another name) but the cleaned text is the same: indexed once."""
    index = make_index()
    pipeline = Pipeline(index, HashEmbedder())
    pipeline.run([small_docs / "parking.txt"])
    gbk = tmp_path / "other" / "停车条例（GBK）.txt"
    gbk.parent.mkdir()
    gbk.write_bytes((small_docs / "parking.txt").read_text(encoding="utf-8").encode("gbk"))
    r = pipeline.run([gbk]).documents[0]
    assert (r.status, r.doc_id) == ("unchanged", "parking") and "same text" in r.error
    assert sorted(index.documents()) == ["parking"]
    gbk.write_bytes(gbk.read_bytes().replace("1200".encode("gbk"), "1300".encode("gbk")))
    assert pipeline.run([gbk]).documents[0].status == "added"  # a different text is a document of its own


def test_an_edit_that_equals_another_document_is_not_skipped(make_index, small_docs):
    """Only a new file is recognised as a copy: a document edited (or replaced) to the text of another one is
    updated, never left with its old text."""
    index = make_index()
    pipeline = Pipeline(index, HashEmbedder())
    pipeline.run([small_docs])
    copy(small_docs / "parking.txt", small_docs / "notice.md")  # notice's file now holds parking's bytes
    r = {d.doc_id: d for d in pipeline.run([small_docs / "notice.md"]).documents}["notice"]
    assert r.status == "updated" and index.document("notice").text == index.document("parking").text


def test_many_small_files_are_committed_together_and_a_refused_one_fails_alone(make_index, small_docs, tmp_path,
                                                                                monkeypatch):
    """Issue 12: files are committed in batches (one write per collection); within a batch, two files of one
    name get two ids and a copy is recognised as before; a document the store refuses fails alone, the rest land."""
    from ingest import store

    for d in ("a", "b"):
        write(tmp_path / "src" / d / "notice.txt", f"title: {d}单位通知\n---\n第一条 {d}单位的停车位为300个。\n")
    copy(small_docs / "parking.txt", tmp_path / "src" / "parking.txt")
    copy(small_docs / "parking.txt", tmp_path / "src" / "parking-copy.txt")
    write(tmp_path / "src" / "refused.txt", "title: 拒收\n---\n第一条 这一份被存储拒绝。\n")
    index = make_index()
    commits = []
    real = store.ChromaIndex.add_documents

    def add_documents(self, items):
        commits.append([p.doc.doc_id for p in items])
        if any(p.doc.doc_id == "refused" for p in items):
            raise ValueError("the store refused it")
        return real(self, items)
    monkeypatch.setattr(store.ChromaIndex, "add_documents", add_documents)
    report = Pipeline(index, HashEmbedder()).run([tmp_path / "src"])
    by_name = {Path(d.path).relative_to(tmp_path / "src").as_posix(): d for d in report.documents}
    assert len(commits[0]) == 4  # one batch; then each on its own after the refusal
    assert by_name["refused.txt"].status == "failed" and "the store refused it" in by_name["refused.txt"].error
    kept, copied = by_name["parking-copy.txt"], by_name["parking.txt"]  # (in file order, the copy comes first)
    assert kept.status == "added" and copied.status == "unchanged" and "same content" in copied.error
    ids = {by_name[f"{d}/notice.txt"].doc_id for d in ("a", "b")}
    assert len(ids) == 2 and ids <= set(index.documents())
    assert sorted(index.documents()) == sorted(ids | {kept.doc_id})
    assert index.reconcile() == 0 and {c.doc_id for _, c in index.all_chunks()} == set(index.documents())


def test_rows_read_once_come_from_memory_and_a_new_version_is_read_anew(tmp_path, small_docs, monkeypatch):
    """Issue 12: a stored row never changes under its id (ids carry the version), so a reader keeps the chunks,
    vectors and sentences it has read; an edited document's rows have new ids and are read from the store."""
    index = ChromaIndex(tmp_path / "index")
    Pipeline(index, HashEmbedder()).run([small_docs])
    doc = index.documents()["parking"]
    keys = [f"parking:{o}" for o in range(doc.chunks)]
    span = [("parking", 0, len(doc.text))]
    first = (index.chunks_by_key(keys), index.chunk_vectors(keys), index.sentence_vectors(span))
    reads = []
    for name in ("chunks", "sentences"):
        real = getattr(index, name).get
        monkeypatch.setattr(getattr(index, name), "get",
                            lambda *a, _real=real, _name=name, **k: reads.append(_name) or _real(*a, **k))
    again = (index.chunks_by_key(keys), index.chunk_vectors(keys), index.sentence_vectors(span))
    assert not reads
    assert again[0] == first[0] and again[1].keys() == first[1].keys() and again[2] == first[2]

    edited = small_docs / "parking.txt"
    edited.write_text(edited.read_text(encoding="utf-8").replace("停车", "泊车"), encoding="utf-8")
    Pipeline(index, HashEmbedder()).run([small_docs])
    new = index.documents()["parking"]
    assert new.version != doc.version
    # a vector search may still find the replaced version's rows (another process's client, before its reopen):
    # kept in memory, they are not committed any more
    assert index.chunks_by_id([c.chunk_id(doc.version) for c in first[0].values()]) == {}
    chunks = index.chunks_by_key([f"parking:{o}" for o in range(new.chunks)])
    assert index.chunk_vectors(list(chunks)).keys() == chunks.keys()
    (sentences,) = index.sentence_vectors([("parking", 0, len(new.text))])
    assert "chunks" in reads and "sentences" in reads  # (the vectors: the rows themselves come from the layout)
    assert any("泊车" in c.text for c in chunks.values()) and not any("停车" in c.text for c in chunks.values())
    assert any("泊车" in x.text for x, _ in sentences) and not any("停车" in x.text for x, _ in sentences)


def test_a_new_node_on_a_shared_server_leaves_another_nodes_uncommitted_chunks(tmp_path, small_docs):
    """A node whose index directory is new (a fresh container) makes no full reconcile pass over a shared Chroma
    server: it would delete the chunks another node has written and not yet committed."""
    port = os.environ.get("ASSISTANT_TEST_CHROMA_PORT")
    if not port:
        if os.environ.get("CI"):
            pytest.fail("ASSISTANT_TEST_CHROMA_PORT is not set: .ci/run must start a Chroma server")
        pytest.skip("no Chroma server (set ASSISTANT_TEST_CHROMA_PORT; .ci/run starts one)")
    name = f"t{time.time_ns()}"
    first = ChromaIndex(tmp_path / "node-a", "127.0.0.1", int(port), name)
    Pipeline(first, HashEmbedder()).run([small_docs])
    at_work = "第一条 另一节点正在写入的文件。"  # another node's chunk, written, its record not yet
    first.chunks.add(ids=["elsewhere:abcdef012345:0000"], embeddings=[[0.1] * HashEmbedder().dim],
                     documents=[at_work], metadatas=[{"doc_id": "elsewhere", "version": "abcdef0123456789",
                                                      "ordinal": 0, "char_start": 0, "char_end": len(at_work)}])
    second = ChromaIndex(tmp_path / "node-b", "127.0.0.1", int(port), name)
    with second.writer():
        assert second.reconcile() == 0
    assert first.chunks.get(ids=["elsewhere:abcdef012345:0000"])["ids"]


def _corpus_index(path):
    index = ChromaIndex(path)
    rep = Pipeline(index, HashEmbedder()).run(corpus_files())
    assert not [d for d in rep.documents if d.status == "failed"]
    return index


def test_rows_built_from_layouts_are_the_rows_chroma_holds(tmp_path, monkeypatch):
    """Issue 12: a committed version's record carries its layout (chunk and sentence offsets), and a reader builds
    rows from it and the document's text instead of reading Chroma's metadata; its rows are lean (no text). On the
    real corpus every search, read and look-up gives what the full rows of an index written before layouts give."""
    with_layout = _corpus_index(tmp_path / "index")
    with monkeypatch.context() as m:
        m.setattr("ingest.store.layout", lambda *a: None)
        without = _corpus_index(tmp_path / "before-layouts")
    docs = with_layout.documents()
    assert all(json.loads(with_layout._metas[d]["layout"])["chunks"] for d in docs)
    assert not any("layout" in without._metas[d] for d in docs)
    for col in ("chunks", "sentences"):
        assert set(getattr(with_layout, col).get(include=["documents"])["documents"]) == {None}
        assert None not in getattr(without, col).get(include=["documents"])["documents"]
    assert with_layout.all_chunks() == without.all_chunks()
    assert with_layout.all_chunks(next(iter(docs))) == without.all_chunks(next(iter(docs)))
    assert with_layout.article_chunks("第九条")
    assert sorted(with_layout.article_chunks("第九条"), key=str) == sorted(without.article_chunks("第九条"), key=str)
    assert with_layout._version_rows(next(iter(docs)), docs[next(iter(docs))].version) == \
        without._version_rows(next(iter(docs)), docs[next(iter(docs))].version)
    emb = HashEmbedder()
    for q in ("文明城市创建的主要任务", "违反本条例第十六条的处罚款", "垃圾分类宣传周", "百城建设提质工程"):
        v = emb.embed_query(q)
        # the same documents give the same graph (HNSW inserts with one thread): the same hits, the same scores
        # (rows of exactly equal scores in either order; a tie at the last place may keep either)
        for search, n in ((ChromaIndex.dense, 30), (ChromaIndex.dense_sentences, 90)):
            new, old = ([(round(h.score, 5), str(getattr(h, "chunk", None) or h.sentence)) for h in search(index, v, n)]
                        for index in (with_layout, without))
            assert [s for s, _ in new] == [s for s, _ in old]
            assert sorted(r for r in new if r[0] > new[-1][0]) == sorted(r for r in old if r[0] > old[-1][0])
    keys = [f"{d}:{o}" for d in docs for o in range(docs[d].chunks)]
    assert with_layout.chunks_by_key(keys) == without.chunks_by_key(keys)
    spans = [(d, 0, len(docs[d].text)) for d in docs] + [(d, 100, 900) for d in docs]
    assert [[x for x, _ in group] for group in with_layout.sentence_vectors(spans)] == \
           [[x for x, _ in group] for group in without.sentence_vectors(spans)]
    for d in docs:
        assert with_layout.chunks_mentioning(d, "第十六条") == without.chunks_mentioning(d, "第十六条")
    assert sorted(with_layout.article_chunks("第九条", set(docs)), key=str) == sorted(without.article_chunks("第九条", set(docs)), key=str)


def test_a_question_reads_no_row_metadata_from_chroma(tmp_path, monkeypatch):
    """Issue 12: with layouts a question reads from Chroma its two vector searches (distances only) and the
    vectors it scores, never a row's text or metadata (a 90-sentence search: 8 ms with metadata, 3 without)."""
    from assistant.retrieval import HybridRetriever

    index = _corpus_index(tmp_path / "index")
    reads = []
    for name in ("chunks", "sentences"):
        col = getattr(index, name)
        for method in ("get", "query"):
            real = getattr(col, method)
            monkeypatch.setattr(col, method, lambda *a, _real=real, _name=name, **k:
                                reads.append((_name, tuple(k.get("include") or ()))) or _real(*a, **k))
    retriever = HybridRetriever(index, HashEmbedder())
    for q in ("文明城市创建的主要任务有哪些", "违反第十六条怎么罚", "第九条规定了什么"):
        assert retriever.search(q)
    assert reads and not [r for r in reads if set(r[1]) & {"documents", "metadatas"}], reads


def test_a_layout_is_written_only_when_it_rebuilds_the_rows_exactly():
    """A chunk whose text is not its span of the document (or a sentence out of its chunk's article) gets no layout:
    its readers read the rows from Chroma, as for an index written before layouts."""
    from dataclasses import replace

    from ingest.chunk import sentence_units, split
    from ingest.schema import Document
    from ingest.store import layout

    doc = Document("speech", str(SPEECH), "讲话", SPEECH.read_text(encoding="utf-8"))
    chunks = split(doc.text, doc.doc_id, doc.title)
    sentences = sentence_units(doc.text, chunks)
    assert json.loads(layout(doc, chunks, sentences))["sentences"]
    assert layout(doc, [replace(chunks[0], text=chunks[0].text + "。")] + chunks[1:], sentences) is None
    assert layout(doc, chunks, [replace(sentences[0], article="第一条")] + sentences[1:]) is None
    assert layout(doc, chunks[1:], []) is None  # ordinals must number the chunks from 0


def test_lexical_scores_rank_and_look_up_as_a_dict_of_every_row_would(tmp_path):
    """Issue 12: a query's BM25 rows stay arrays (a dict of 2,000 keys a question cost more than the scoring). Looked
    up, iterated and ranked, they give what the dict gave, ties (copies of one document) in document order."""
    from ingest.store import chunk_key

    docs = tmp_path / "docs"
    for name in ("b-copy", "a-copy", "c-copy"):  # (the same bytes would be one document: a line apart)
        write(docs / f"{name}.txt", f"{SMALL_REG}\n\n附：{name}\n")
    write(docs / "notice.md", "# 停车宣传周\n\n停车位宣传点不少于2处。\n")
    index = ChromaIndex(tmp_path / "index")
    for name in ("b-copy", "a-copy", "c-copy"):  # stored in this order: ties must still come in document order
        Pipeline(index, HashEmbedder()).run([docs / f"{name}.txt"])
    Pipeline(index, HashEmbedder()).run([docs / "notice.md", SPEECH])
    for q in ("停车位不少于1500个", "文明城市创建", "停车", "没有这个词语"):
        rows = sorted(index._lexical_rows(q, 2000))
        old = {chunk_key(d, o): s for d, o, s in rows}
        got = index.lexical_scores(q)
        assert dict(got) == old and list(got) == list(old) and len(got) == len(old)
        for n in (1, 3, 30, 5000):
            assert got.top(n) == sorted(old, key=lambda k: -old[k])[:n]
        assert all(got.get(k) == v and k in got for k, v in old.items())
        assert got.get("nope:3", 0.0) == 0.0 and "nope:3" not in got and got.get("b-copy:x") is None
    best = index.lexical_scores("停车位不少于1500个")
    tied = [k for k in best if best[k] == best[best.top(1)[0]]]
    assert len(tied) == 3 and best.top(3) == tied  # the three copies tie, in document order


@pytest.mark.integration  # other processes
def test_a_client_replaced_by_a_reopen_is_freed_once_no_index_in_this_process_uses_it(tmp_path, small_docs,
                                                                                        monkeypatch, caplog):
    """Issue 12: a reopen replaces the embedded clients, which hold a copy of every vector (~500 MB at 100k chunks).
    chromadb's System sits in a reference cycle, so an old one was freed only by a full garbage collection: it is
    stopped once nothing holds its collections, unless another ChromaIndex of this process on the path uses it."""
    import threading

    from ingest import store

    monkeypatch.setattr(store, "RELEASE_SECONDS", 0.05)
    monkeypatch.setattr(store, "RELEASE_WAIT", 0.2)

    def released():
        for t in [t for t in threading.enumerate() if t.name == "chroma-release"]:
            t.join(30)
    caplog.set_level("WARNING", logger="ingest.store")
    emb = HashEmbedder()
    first, second = sorted(small_docs.glob("*"))
    a = ChromaIndex(tmp_path / "index", refresh_seconds=3600)
    Pipeline(a, emb).run([first])
    b = ChromaIndex(tmp_path / "index", refresh_seconds=3600)  # it shares a's clients
    shared = a.clients
    assert len(shared) == 2 and all(x._server is y._server for x, y in zip(b.clients, shared))
    assert shared[0]._server is not shared[1]._server  # one client per group of collections
    _ingest_elsewhere(tmp_path / "index", second)
    assert len(a.documents()) == 2
    a.settle()
    released()
    assert all(x is not y and hasattr(y._server, "bindings") for x, y in zip(a.clients, shared))  # b uses them
    assert b.dense(emb.embed_query("停车位"), 10)
    in_use = b.chunks  # e.g. a paged read that took the collection before the swap
    assert len(b.documents()) == 2
    b.settle()
    time.sleep(0.5)
    assert all(x is not y for x, y in zip(b.clients, shared))
    assert hasattr(shared[0]._server, "bindings")  # not while anything holds it
    assert not hasattr(shared[1]._server, "bindings")  # the other group's: nothing holds it
    assert in_use.count() > 0
    del in_use
    released()
    assert not hasattr(shared[0]._server, "bindings")  # stopped: its vectors freed
    for index in (a, b):
        assert {h.chunk.doc_id for h in index.dense(emb.embed_query("宣传周 停车位"), 20)} == {"parking", "notice"}
    assert "could not be stopped" not in caplog.text  # each shared client stopped once, by whichever index let go last
    c = ChromaIndex(tmp_path / "index")  # a new index on the path is given a live client
    assert c.dense(emb.embed_query("停车位"), 10)


@pytest.mark.integration  # another process
@pytest.mark.parametrize("in_background", [True, False])
def test_a_reopen_frees_one_groups_client_before_it_loads_the_next(tmp_path, small_docs, in_background):
    """Issue 12: at 100k chunks a reopen that loaded every collection's vectors before freeing the old client held
    two copies of all of them (the asking process peaked at 1.34 GB): the next group's client is opened only once
    the one it replaces is stopped, by the background reopen and by a writer's."""
    emb = HashEmbedder()
    reader = ChromaIndex(tmp_path / "index", refresh_seconds=3600)
    first, second = sorted(small_docs.glob("*"))
    Pipeline(reader, emb).run([first])
    old = reader.clients
    assert reader.dense(emb.embed_query("停车位"), 10) and reader.dense_sentences(emb.embed_query("停车位"), 10)
    _ingest_elsewhere(tmp_path / "index", second)
    real, seen = reader._connect, []

    def watching(group, fresh=False):
        seen.append((group, [hasattr(c._server, "bindings") for c in old]))
        return real(group, fresh)
    reader._connect = watching
    if in_background:
        reader.documents()
        reader.settle()
    else:
        with reader.writer():
            pass
    if in_background:
        assert seen == [(0, [True, True]), (1, [False, True])]
    else:  # a writer's new clients load nothing before its first upsert: it takes up both, then frees the old ones
        assert seen == [(0, [True, True]), (1, [True, True])]
    assert not any(hasattr(c._server, "bindings") for c in old)
    new = next(d for d in reader.documents() if reader.documents()[d].path == str(second.resolve()))
    assert reader.dense_sentences(emb.embed_query("宣传周"), 10, doc_ids=[new])


@pytest.mark.integration  # another process
@pytest.mark.parametrize("in_background", [True, False])
def test_a_reopen_waits_for_a_question_that_holds_the_old_client(tmp_path, small_docs, in_background):
    """A question answered on the old client while a reopen swaps it holds it a moment: the reopen waits for it to
    let go (RELEASE_WAIT in the background, WRITER_RELEASE_WAIT in a writer) and stops it before the next group's
    vectors load, or before the write's upserts load the new ones."""
    import threading

    emb = HashEmbedder()
    reader = ChromaIndex(tmp_path / "index", refresh_seconds=3600)
    first, second = sorted(small_docs.glob("*"))
    Pipeline(reader, emb).run([first])
    old = reader.clients
    _ingest_elsewhere(tmp_path / "index", second)
    real, seen = reader._connect, []

    def watching(group, fresh=False):
        seen.append((group, hasattr(old[0]._server, "bindings")))
        return real(group, fresh)
    reader._connect = watching
    question = [reader.chunks]  # a question on the old client, done in 0.4 s
    threading.Timer(0.4, question.clear).start()
    if in_background:
        reader.documents()
        reader.settle()
        assert seen == [(0, True), (1, False)]  # group 0's old client stopped before group 1 loaded
    else:
        with reader.writer():
            assert not hasattr(old[0]._server, "bindings")  # stopped before anything is written
    assert not question


@pytest.mark.integration  # another process
def test_a_write_between_a_reopens_groups_stops_it_before_the_next_group_loads(tmp_path, small_docs):
    """A background reopen that has taken up the first group when this process begins a write stops there: the
    writer reopens every group for itself, and loading the next group in the background as well would hold one
    more copy of its vectors for nothing."""
    import threading

    emb = HashEmbedder()
    reader = ChromaIndex(tmp_path / "index", refresh_seconds=3600)
    first, second = sorted(small_docs.glob("*"))
    Pipeline(reader, emb).run([first])
    _ingest_elsewhere(tmp_path / "index", second)
    real_connect, real_release, connected = reader._connect, reader._release, []
    taken, wrote = threading.Event(), threading.Event()

    def connect(group, fresh=False):
        connected.append((threading.current_thread().name, group))
        return real_connect(group, fresh)

    def release(client, wait=0.0):
        if threading.current_thread().name == "chroma-reopen" and not taken.is_set():
            taken.set()  # the first group is taken up; its old client is about to be released
            wrote.wait(30)
        return real_release(client, wait)
    reader._connect, reader._release = connect, release
    reader.documents()  # starts the reopen
    assert taken.wait(30)
    with reader.writer():
        written = reader.clients
    wrote.set()
    reader.settle()
    assert [g for name, g in connected if name == "chroma-reopen"] == [0]
    assert reader.clients == written
    new = next(d for d in reader.documents() if reader.documents()[d].path == str(second.resolve()))
    assert reader.dense_sentences(emb.embed_query("宣传周"), 10, doc_ids=[new])
