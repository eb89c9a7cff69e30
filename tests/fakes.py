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
