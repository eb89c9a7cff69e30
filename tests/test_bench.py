"""The scale benchmark's paths run in CI at a small size; its figures are for the README, not asserted here."""
import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.integration
def test_scale_bench_runs_every_path_with_paged_reads():
    out = subprocess.run([sys.executable, "-m", "bench.scale", "--chunks", "600", "--page", "250", "--questions", "6",
                          "--idle", "1", "--during", "3", "--commits", "2", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=800)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(r) >= {"chunks", "build_s", "add_one_s", "p50_ms", "p95_ms", "p95_idle_ms", "p95_concurrent_ms",
                      "p95_during_ingest_ms", "reader_worst_ms", "rss_mb", "cold_start_s"}
    assert r["chunks"] > 3 * 250  # several pages per full read
    assert r["add_one_chunks"] >= 7 and r["store"] == "embedded"
    assert all(r[k] > 0 for k in ("p50_ms", "p95_ms", "p95_idle_ms", "p95_concurrent_ms", "p95_during_ingest_ms",
                                  "reader_worst_ms", "rss_mb", "rss_steady_mb"))


@pytest.mark.integration
def test_lexical_bench_grows_an_index_by_commits():
    out = subprocess.run([sys.executable, "-m", "bench.lexical", "--grow", "3000"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "writer ms per document: first ten commits" in out.stdout and "last ten" in out.stdout


@pytest.mark.integration
def test_bulk_growth_bench_times_each_part_and_the_real_embedder():
    out = subprocess.run([sys.executable, "-m", "bench.bulk_growth", "--chunks", "600", "--batch", "10", "--real", "2",
                          "--json"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    parts = r["parts"]
    assert set(parts) == {"chunks", "sentences", "records", "lexical", "rest", "total"} and r["batches"] >= 5
    for end in (0, 1):  # every part timed; what is left of a run's time for the rest is not negative
        assert all(parts[p][end] > 0 for p in parts)
    assert all(s > 0 for s in r["real_s_per_doc"])


@pytest.mark.integration
def test_reopen_bench_measures_both_ways_on_a_built_index(tmp_path):
    from ingest.embed import HashEmbedder
    from ingest.pipeline import Pipeline
    from ingest.store import ChromaIndex

    Pipeline(ChromaIndex(tmp_path / "index"), HashEmbedder()).run([ROOT / "docs"])
    out = subprocess.run([sys.executable, "-m", "bench.reopen", "--index", str(tmp_path / "index"), "--rounds", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert any("group by group: before" in line for line in lines)
    assert any("all, then free: before" in line for line in lines)


@pytest.mark.integration
def test_query_threads_bench_prices_a_question_by_its_tokens():
    from bench.query_threads import per_token

    r = per_token(["你好", "停车场建设有什么要求？" * 3, "洛阳的工地没设围挡、车轮带泥就上路，一处罚多少钱？"])
    assert r["questions"] == 3 and r["tokens_max"] > r["tokens_p50"] > 5  # the product's own token counts
    assert 0 < r["ms_per_token"] < r["ms_p95"] and r["ms_p50"] <= r["ms_p95"]

