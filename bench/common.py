"""What the bench scripts share: the corpus, an index of it, and the app served on a free loopback port."""
from __future__ import annotations

import socket
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from assistant.components import build_pipeline  # noqa: E402
from assistant.settings import Settings  # noqa: E402

SPEECH = ROOT / "docs" / "speech_city_quality_2023.txt"


def corpus_files(corpus: str | Path = ROOT.parent / "shared" / "corpus") -> list[Path]:
    """The speech from docs/ and the related documents from ../shared/corpus."""
    return [SPEECH] + sorted(p for p in Path(corpus).glob("*.txt") if p.name != SPEECH.name)


def corpus_settings(index: str | None) -> Settings:
    """Settings on the given index, or on a fresh temporary index of the whole corpus."""
    s = Settings(_env_file=None)
    if index:
        s.store.index_dir = index
    else:
        s.store.index_dir = tempfile.mkdtemp(prefix="bench-index-")
        build_pipeline(s).run(corpus_files())
    return s


def serve(app):
    """Run the app with uvicorn in a thread on a free 127.0.0.1 port; returns (server, base URL)."""
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=2))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"
