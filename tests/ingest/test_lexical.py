"""The incremental lexical index on its own: exact BM25, one document's rows per commit, readers that follow the
commit log, merged segments, a rebuild readers notice."""
import math
from collections import Counter

import pytest

from ingest.lexical import B, K1, LexicalIndex, _to_merge, bigrams, number

TEXTS = {
    "a": ["第一条 新建停车位一千五百个，公共厕所二百一十座。", "第二条 违反本条例的，处二百元罚款。"],
    "b": ["城市建设提质，公共厕所由少变多。", "停车场建设与城市管理一起推进。", "公共服务治差。"],
    "c": ["文明行为促进条例自2021年1月1日起施行。"],
}


def _reference(rows: list[str], query: str) -> list[float]:
    """Lucene BM25 (bm25s's formula) computed by hand over whole texts."""
    docs = [Counter(bigrams(t)) for t in rows]
    n, avgdl = len(docs), sum(sum(d.values()) for d in docs) / len(docs)
    out = []
    for d in docs:
        s = 0.0
        for term in dict.fromkeys(bigrams(query)):
            df = sum(1 for x in docs if term in x)
            if d[term]:
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                s += idf * d[term] / (d[term] + K1 * (1 - B + B * sum(d.values()) / avgdl))
        out.append(s)
    return out


def _fill(lex: LexicalIndex) -> None:
    lex.rebuild([])
    for doc_id, texts in TEXTS.items():
        lex.add(doc_id, "v1", list(enumerate(texts)))


def _by_row(lex: LexicalIndex, query: str) -> dict[tuple[int, int], float]:
    return {(d, o): s for d, v, o, s in lex.scores(query)}


@pytest.mark.parametrize("query", ["公共厕所", "停车位罚款", "城市建设", "施行", "没有的词"])
def test_scores_are_lucene_bm25_over_the_live_rows(tmp_path, query):
    lex = LexicalIndex(tmp_path / "lex")
    _fill(lex)
    flat = [(doc_id, o, t) for doc_id, texts in TEXTS.items() for o, t in enumerate(texts)]
    ref = _reference([t for _, _, t in flat], query)
    got = _by_row(lex, query)
    for (doc_id, o, _), want in zip(flat, ref):
        assert got.get((number(doc_id), o), 0.0) == pytest.approx(want, rel=1e-6)
    lex.remove("b")  # the statistics are those of the rows left
    rest = [(doc_id, o, t) for doc_id, o, t in flat if doc_id != "b"]
    got = _by_row(lex, query)
    for (doc_id, o, _), want in zip(rest, _reference([t for _, _, t in rest], query)):
        assert got.get((number(doc_id), o), 0.0) == pytest.approx(want, rel=1e-6)
    assert not any(d == number("b") for d, _ in got)


def test_another_reader_follows_the_log_and_notices_a_rebuild(tmp_path):
    writer, reader = LexicalIndex(tmp_path / "lex"), LexicalIndex(tmp_path / "lex")
    _fill(writer)
    reader.reload()
    assert {d for d, _, _, _ in reader.scores("公共厕所")} == {number("a"), number("b")}
    writer.add("a", "v2", [(0, "公共厕所新建三百座。")])
    writer.remove("a", keep_version="v2")
    reader.reload()
    assert {(d, v) for d, v, _, _ in reader.scores("公共厕所")} == {(number("a"), number("v2")), (number("b"), number("v1"))}
    writer.rebuild([("z", "v", [(0, "只有这一份文件。")])])
    reader.reload()
    assert not reader.scores("公共厕所") and reader.scores("文件")[0][0] == number("z")


def test_scores_of_the_same_versions_follow_each_change_of_the_rows(tmp_path):
    """A caller passes the same versions dict while its documents do not change; the rows may change meanwhile (a
    version's rows land before its record is committed). What the reader keeps per dict and per term follows."""
    writer, reader = LexicalIndex(tmp_path / "lex"), LexicalIndex(tmp_path / "lex")
    _fill(writer)
    wanted = {number(d): number("v1") for d in [*TEXTS, "d"]}  # d: named before its rows exist
    only_a = {number("a"): number("v1")}
    reader.reload()
    for _ in range(2):  # the second time from what the first kept; another dict in between
        assert {d for d, _, _, _ in reader.scores("公共厕所", versions=wanted)} == {number("a"), number("b")}
        assert {d for d, _, _, _ in reader.scores("公共厕所", versions=only_a)} == {number("a")}
        assert {d for d, _, _, _ in writer.scores("公共厕所", versions=wanted)} == {number("a"), number("b")}
    writer.add("d", "v1", [(0, "公共厕所开放时间。")] * 3)
    writer.add("e", "v1", [(0, "公共厕所保洁。")])  # not among the versions asked for
    writer.remove("b")
    reader.reload()
    for lex in (reader, writer):  # a reader that follows the log, and the writer's own view after its writes
        for _ in range(2):
            got = lex.scores("公共厕所", versions=wanted)
            assert {d for d, _, _, _ in got} == {number("a"), number("d")}
            assert got == [s for s in lex.scores("公共厕所") if s[0] in wanted]  # the same scores, unfiltered
            assert {d for d, _, _, _ in lex.scores("公共厕所", versions=only_a)} == {number("a")}


def test_a_rows_mask_follows_the_versions_of_each_commit_without_being_made_again(tmp_path, monkeypatch):
    """After each commit the store passes a new versions dict that differs from the last by a document or two; the
    reader updates its mask of which rows are theirs (rows of those documents, rows added since) and scores as if
    it had made it anew: new documents, a version whose rows landed before its commit and outlive it for a while,
    a removed document."""
    writer, reader = LexicalIndex(tmp_path / "lex"), LexicalIndex(tmp_path / "lex")
    _fill(writer)
    reader.reload()
    versions = {number(d): number("v1") for d in TEXTS}
    for _ in range(2):  # the second call makes the mask over every row
        reader.scores("公共厕所", versions=versions)
    made = []
    arrays = LexicalIndex._version_arrays
    monkeypatch.setattr(LexicalIndex, "_version_arrays", lambda self, v: made.append(1) or arrays(self, v))
    for i in range(6):
        versions = dict(versions)
        writer.add(f"n{i}", "v1", [(0, f"公共厕所第{i}号。")])
        versions[number(f"n{i}")] = number("v1")
        if i % 2 == 0:  # a's next version lands (not committed yet: the dict keeps the last one)
            writer.add("a", f"v{i + 2}", [(0, f"公共厕所新建{i}座。")])
        else:  # ... and is committed; its last version's rows go after
            versions[number("a")] = number(f"v{i + 1}")
        if i == 4:
            writer.remove("b")
            del versions[number("b")]
        reader.reload()
        got = reader.scores("公共厕所", versions=versions)
        assert got == [r for r in reader.scores("公共厕所") if versions.get(r[0]) == r[1]], i
        assert number(f"n{i}") in {d for d, _, _, _ in got}
        if i % 2:
            writer.remove("a", keep_version=f"v{i + 1}")
    assert not made


def test_a_readers_postings_stay_within_their_budget_and_score_the_same(tmp_path, monkeypatch):
    monkeypatch.setattr("ingest.lexical.POSTINGS_CACHE_BYTES", 8 * 600)  # a few terms at a time
    lex = LexicalIndex(tmp_path / "lex")
    _fill(lex)
    queries = ["公共厕所", "停车位罚款", "城市建设", "施行", "没有的词", "文明行为促进条例"]
    first = [_by_row(lex, q) for q in queries]
    assert lex._postings_bytes <= 8 * 600 and len(lex._postings_cache) < len({t for q in queries for t in bigrams(q)})
    assert [_by_row(lex, q) for q in queries] == first  # from what was kept, and read again what was not


def test_a_reader_keeps_its_postings_across_commits_and_scores_as_a_new_reader_would(tmp_path, monkeypatch):
    """Postings a reader holds are brought up to date after each commit from the segments written since: new
    versions, replaced and removed ones, and merged segments (merging two of a size here) give the scores a reader
    that reads everything gives; no term is read in full again, merged or not."""
    monkeypatch.setattr("ingest.lexical._MERGE_FACTOR", 2)
    writer, reader = LexicalIndex(tmp_path / "lex"), LexicalIndex(tmp_path / "lex")
    _fill(writer)
    queries = ["公共厕所", "停车位罚款", "城市建设", "施行", "临时文件"]
    reader.reload()
    for q in queries:
        reader.scores(q)
    held = {term for term, h in reader._postings_cache.items() if h.seg}  # (a term with no postings is read anew)
    full_reads = []
    segments = LexicalIndex._segments
    monkeypatch.setattr(LexicalIndex, "_segments", staticmethod(
        lambda db, term, after=0: (full_reads.append(term) if db is reader._db and not after else None)
        or segments(db, term, after)))
    merged = []
    merge = LexicalIndex._merge
    monkeypatch.setattr(LexicalIndex, "_merge", lambda self, db, term, segs, into: merged.append(term)
                        or merge(self, db, term, segs, into))
    for i in range(8):
        writer.add(f"t{i % 3}", f"v{i}", [(0, f"第{i}号临时文件：公共厕所{i}座。"), (1, "城市建设。")])
        writer.remove(f"t{i % 3}", keep_version=f"v{i}")
        if i == 5:
            writer.remove("b")
        reader.reload()
        new = LexicalIndex(tmp_path / "lex")
        new.reload()
        for q in queries:
            assert _by_row(reader, q) == pytest.approx(_by_row(new, q)), (i, q)
    assert not held & set(full_reads)
    assert held & set(merged)  # (merges happened, of terms the reader held)


def test_postings_read_while_a_commit_lands_are_not_kept_for_the_next_view(tmp_path):
    writer, reader = LexicalIndex(tmp_path / "lex"), LexicalIndex(tmp_path / "lex")
    _fill(writer)
    reader.reload()
    writer.add("d", "v1", [(0, "公共厕所开放时间。")])  # committed after the reader's view
    assert number("d") not in {d for d, _ in _by_row(reader, "公共厕所")}
    reader.reload()
    assert number("d") in {d for d, _ in _by_row(reader, "公共厕所")}


def test_a_terms_segments_stay_few_and_each_posting_is_rewritten_a_few_times():
    """The merge rule over a long run of commits (a common term's: 5 to 60 postings each, none deleted): segments
    stay within a size class's worth per class, and merging rewrites each posting about log_F(postings) times (F
    the merge factor), where merging every segment at 16 rewrote the whole list every 16 commits (quadratic)."""
    import random

    from ingest.lexical import _MERGE_FACTOR as F
    rng = random.Random(1)
    sizes, written, most = [], 0, 0
    for _ in range(5000):
        sizes.append(rng.randint(5, 60))
        chosen = _to_merge(sizes)
        if chosen:
            merged = sum(sizes[i] for i in chosen)
            written += merged
            sizes = [n for i, n in enumerate(sizes) if i not in chosen] + [merged]
        most = max(most, len(sizes))
    total = sum(sizes)
    assert most <= (F - 1) * (math.log(total, F) + 1)
    assert written <= total * (math.log(total / 5, F) + 1)


def test_a_term_with_too_many_segments_is_merged_whole(tmp_path, monkeypatch):
    monkeypatch.setattr("ingest.lexical._MERGE_FACTOR", 1000)  # (no merge by size class)
    monkeypatch.setattr("ingest.lexical._MAX_SEGMENTS", 3)
    lex = LexicalIndex(tmp_path / "lex")
    _fill(lex)
    before = _by_row(lex, "公共厕所")
    for i in range(6):
        lex.add(f"n{i}", "v1", [(0, "公共厕所开放。")])
        assert lex._db.execute("SELECT COUNT(*) FROM postings WHERE term = '公共'").fetchone()[0] <= 3
    assert len(_by_row(lex, "公共厕所")) == len(before) + 6


@pytest.mark.parametrize("built", [True, False])
def test_an_index_in_the_older_layout_is_built_again(tmp_path, built):
    """sqlite-1 kept postings without their sizes: opened by this code (built, or opened but never built: no format
    then), it is emptied and not ready (the store builds it again from its layouts), not read as if current."""
    import sqlite3
    (tmp_path / "lex").mkdir()
    db = sqlite3.connect(tmp_path / "lex" / "lexical.sqlite3")
    db.executescript("""CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
        CREATE TABLE rows(id INTEGER PRIMARY KEY AUTOINCREMENT, doc INTEGER, ver INTEGER, ordinal INTEGER, length INTEGER);
        CREATE TABLE postings(term TEXT, seg INTEGER, ids BLOB, tfs BLOB, PRIMARY KEY(term, seg)) WITHOUT ROWID;
        CREATE TABLE log(seq INTEGER PRIMARY KEY AUTOINCREMENT, first INTEGER, last INTEGER, dead BLOB);
        INSERT INTO rows(doc, ver, ordinal, length) VALUES (1, 1, 0, 3);""")
    if built:
        db.execute("INSERT INTO meta VALUES ('format', 'sqlite-1'), ('epoch', 'e1')")
    db.commit()
    db.close()
    lex = LexicalIndex(tmp_path / "lex")
    assert not lex.ready() and not lex.versions()
    _fill(lex)
    assert lex.ready() and _by_row(lex, "公共厕所")
    assert LexicalIndex(tmp_path / "lex").ready()  # opened again: current, kept


def test_opening_an_index_does_not_wait_for_a_writer(tmp_path):
    import sqlite3
    _fill(LexicalIndex(tmp_path / "lex"))
    busy = sqlite3.connect(tmp_path / "lex" / "lexical.sqlite3", isolation_level=None)
    busy.execute("BEGIN IMMEDIATE")  # a writer at work (a rebuild holds this for its whole build)
    busy.execute("INSERT INTO meta VALUES ('x', 'y')")
    try:
        import time
        t = time.monotonic()
        lex = LexicalIndex(tmp_path / "lex")
        assert time.monotonic() - t < 1 and lex.ready()
    finally:
        busy.execute("ROLLBACK")


def test_a_merge_may_skip_a_bigger_segment_and_readers_follow_it(tmp_path, monkeypatch):
    """Segments of the new one's class or below merge, wherever they are: [1, 5, 1, 1] postings merges the three
    of one posting around the bigger one; a reader holding the term follows, and the merge drops deleted rows."""
    monkeypatch.setattr("ingest.lexical._MERGE_FACTOR", 3)
    writer, reader = LexicalIndex(tmp_path / "lex"), LexicalIndex(tmp_path / "lex")
    writer.rebuild([])
    merges = []
    merge = LexicalIndex._merge
    monkeypatch.setattr(LexicalIndex, "_merge", lambda self, db, term, segs, into: merges.append(
        (term, segs, [s for (s,) in db.execute("SELECT seg FROM postings WHERE term=? ORDER BY seg", (term,))]))
        or merge(self, db, term, segs, into))
    writer.add("s0", "v1", [(0, "公共厕所")])
    reader.reload()
    _by_row(reader, "公共")  # held from here on
    writer.add("big", "v1", [(i, f"公共厕所第{i}座") for i in range(5)])
    writer.add("s1", "v1", [(0, "公共厕所")])
    writer.remove("s0")  # its row is in the first segment: the merge leaves it out
    writer.add("s2", "v1", [(0, "公共厕所")])
    (segs, present), = [(segs, present) for term, segs, present in merges if term == "公共"]
    assert len(present) == 4 and segs == [present[0], present[2], present[3]]  # the bigger one skipped
    assert writer._db.execute("SELECT SUM(n), COUNT(*) FROM postings WHERE term='公共'").fetchone() == (7, 2)
    reader.reload()
    fresh = LexicalIndex(tmp_path / "lex")
    fresh.reload()
    assert _by_row(reader, "公共") == pytest.approx(_by_row(fresh, "公共")) and len(_by_row(reader, "公共")) == 7


def test_many_commits_merge_a_terms_segments_without_changing_a_score(tmp_path):
    lex = LexicalIndex(tmp_path / "lex")
    _fill(lex)
    before = _by_row(lex, "公共厕所")
    for i in range(40):  # each version of d adds segments for its terms and deletes the last version's rows
        lex.add("d", f"v{i}", [(0, f"第{i}号 临时文件。")])
        lex.remove("d", keep_version=f"v{i}")
    lex.remove("d")
    assert _by_row(lex, "公共厕所") == pytest.approx(before)
    segs = lex._db.execute("SELECT COUNT(*) FROM postings WHERE term = '临时'").fetchone()[0]
    assert segs <= 17  # merged, not forty
    assert lex.versions() == {(number(d), number("v1")) for d in TEXTS}


def test_a_failed_write_changes_nothing(tmp_path):
    lex = LexicalIndex(tmp_path / "lex")
    _fill(lex)

    def rows():
        yield 0, "写到一半的文件"
        raise OSError("disk full")
    with pytest.raises(OSError):
        lex.add("e", "v1", rows())
    assert not lex.scores("一半") and (number("e"), number("v1")) not in lex.versions()
    lex.add("e", "v1", [(0, "写完的文件")])  # the lock and the transaction were released
    assert lex.scores("写完")


def test_a_version_indexed_again_replaces_its_rows(tmp_path):
    """A batch the store refused after its rows were indexed is retried file by file: the retry's rows replace the
    first ones (two copies would double the version's term counts and its place among the best rows)."""
    idx, reader = LexicalIndex(tmp_path / "lex"), LexicalIndex(tmp_path / "lex")
    rows = [(0, "停车位应当划线"), (1, "非机动车停放")]
    idx.add_many([("parking", "v1", rows), ("notice", "v1", [(0, "宣传周定于六月")])])
    once = idx.scores("停车位")
    reader.reload()
    assert once and reader.scores("停车位") == once
    idx.add_many([("parking", "v1", rows)])
    reader.reload()  # (a reader follows the log)
    assert idx.scores("停车位") == once and reader.scores("停车位") == once
    assert idx._db.execute("SELECT COUNT(*) FROM rows").fetchone()[0] == 3


def test_the_stores_document_numbers_follow_each_change_of_its_documents():
    """After a commit the store numbers only the documents whose record changed (a new Document object); what it
    gets is what numbering every document gives: added, updated and removed documents, one or many at a time."""
    from ingest.schema import Document
    from ingest.store import _LexicalView

    def doc(i, v):
        return Document(doc_id=f"d{i}", path="", title="", text="", version=f"v{v}")

    docs = {f"d{i}": doc(i, 1) for i in range(40)}
    view = _LexicalView.of("g0", docs, None)
    steps = [lambda ds: ds | {"d40": doc(40, 1)}, lambda ds: ds | {"d3": doc(3, 2)},
             lambda ds: {k: d for k, d in ds.items() if k != "d7"}, lambda ds: dict(ds),
             lambda ds: {f"d{i}": doc(i, 3) for i in range(300)}]  # more than it follows: numbered again
    for i, step in enumerate(steps):
        docs = step(docs)
        view = _LexicalView.of(f"g{i + 1}", docs, view)
        assert view.ids == {number(d.doc_id): d.doc_id for d in docs.values()}, i
        assert view.versions == {number(d.doc_id): number(d.version) for d in docs.values()}, i


@pytest.mark.parametrize("factor, most", [(3, 128), (2, 5)])
def test_readers_match_a_fresh_reader_through_random_commits_and_merges(tmp_path, monkeypatch, factor, most):
    """Random adds (of 0 to 30 rows), replaced and removed versions and rebuilds, with readers whose views lag the
    database while they read: after each reload a reader's postings equal a fresh reader's, each row once."""
    import random
    monkeypatch.setattr("ingest.lexical._MERGE_FACTOR", factor)
    monkeypatch.setattr("ingest.lexical._MAX_SEGMENTS", most)
    rng = random.Random(factor)
    chars = "公共厕所停车"
    terms = sorted({a + b for a in chars for b in chars})

    def text():
        return "".join(rng.choice(chars) for _ in range(rng.randint(1, 8)))
    writer = LexicalIndex(tmp_path / "lex")
    writer.rebuild([])
    readers = [LexicalIndex(tmp_path / "lex") for _ in range(2)]
    for step in range(150):
        doc, op = f"d{rng.randint(0, 12)}", rng.random()
        if op < 0.6:
            version = f"v{rng.randint(0, 3)}"
            writer.add(doc, version, [(i, text()) for i in range(rng.choice([0, 1, 2, 3, 12, 30]))])
            if rng.random() < 0.6:
                writer.remove(doc, keep_version=version)
        elif op < 0.97:
            writer.remove(doc)
        else:
            writer.rebuild([(f"d{i}", "v0", [(0, text())]) for i in range(rng.randint(0, 5))])
        for reader in readers:
            if rng.random() < 0.4:  # read with the view it has (the database may be ahead)
                for term in rng.sample(terms, 8):
                    reader._postings(term)
            else:
                reader.reload()
                fresh = LexicalIndex(tmp_path / "lex")
                fresh.reload()
                for term in rng.sample(terms, 8):
                    ids, tfs = reader._postings(term)
                    assert len(set(ids.tolist())) == len(ids), (step, term)
                    assert sorted(zip(ids.tolist(), tfs.tolist())) == sorted(
                        zip(*(a.tolist() for a in fresh._postings(term)))), (step, term)
