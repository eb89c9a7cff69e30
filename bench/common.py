"""What the bench scripts share: the corpus, an index of it, and the app served on a free loopback port."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
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


def rss_mb() -> int:
    """This process's resident memory now, in MB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS"))


def start_chroma(path: str | Path, nice: int = 0) -> tuple[subprocess.Popen, int]:
    """A `chroma run` server on `path` and a free 127.0.0.1 port (at this niceness), once it answers (60 s at most)."""
    import chromadb

    from tests.live import free_port

    port = free_port()
    chroma = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    server = subprocess.Popen((["nice", "-n", str(nice)] if nice else []) + [chroma, "run", "--path", str(path), "--host",
                              "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(120):
        try:
            chromadb.HttpClient(host="127.0.0.1", port=port).heartbeat()
            return server, port
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.5)
    server.terminate()
    raise SystemExit("the Chroma server did not start")

