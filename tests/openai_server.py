"""A small OpenAI-compatible chat server for tests: `POST /v1/chat/completions` on 127.0.0.1 answers
with canned completions keyed by the sha256 of the prompt (the last user message), and can misbehave
on purpose (answer late, answer non-JSON, demand a key). Real HTTP, real sockets; no network."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def prompt_hash(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


@dataclass
class CannedServer:
    replies: dict[str, str] = field(default_factory=dict)  # prompt hash -> completion text
    default: str = "I cannot help with that."
    mode: str = "ok"  # "ok" | "slow" | "malformed" | "flaky" (one 503, then ok)
    delay: float = 2.0
    key: str | None = None  # when set, requests need `Authorization: Bearer <key>`
    requests: list[dict] = field(default_factory=list)
    _httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> CannedServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up
                    self.wfile.write(body)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                prompt = body["messages"][-1]["content"]
                server.requests.append(
                    {"hash": prompt_hash(prompt), "auth": self.headers.get("Authorization"), "body": body}
                )
                if not self.path.endswith("/v1/chat/completions"):
                    return self._send(404, b'{"error": "not found"}')
                if server.key is not None and self.headers.get("Authorization") != f"Bearer {server.key}":
                    return self._send(401, b'{"error": {"message": "bad key"}}')
                if server.mode == "slow":
                    time.sleep(server.delay)
                if server.mode == "malformed":
                    return self._send(200, b"<html>proxy error</html>", "text/html")
                if server.mode == "flaky" and len(server.requests) == 1:
                    return self._send(503, b'{"error": "warming up"}')
                content = server.replies.get(prompt_hash(prompt), server.default)
                reply = {
                    "id": "cmpl-1",
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                }
                self._send(200, json.dumps(reply).encode())

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
