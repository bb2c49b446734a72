"""A scripted OpenAI-compatible chat server on loopback (a real HTTP server), for the teacher
and ``r2v serve`` tests."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    """A loopback port nothing listens on (bound, read, released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


#: What the fake teacher answers by default, and the action in it.
REPLY = "I think the best move is:\ntake knife"
USAGE = {"prompt_tokens": 40, "completion_tokens": 3}


class FakeOpenAI(ThreadingHTTPServer):
    """Speaks /v1/chat/completions; each request takes the next scripted behaviour."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script: list[str] = []
        self.requests: list[dict] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: FakeOpenAI

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length))
        self.server.requests.append(
            {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
        )
        behaviour = self.server.script.pop(0) if self.server.script else "ok"
        if behaviour == "500":
            self._send(500, b'{"error": "boom"}')
        elif behaviour.startswith("429"):
            self._send(429, b'{"error": "slow down"}', {"Retry-After": behaviour.split(":")[1]})
        elif behaviour == "400":
            self._send(400, b'{"error": "bad request"}')
        elif behaviour == "hang":
            time.sleep(2.0)
            self._send(200, b"{}")
        elif behaviour == "truncated":  # promises 100 bytes, sends 7, hangs up
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b'{"a": 1')
            self.close_connection = True
        elif behaviour == "malformed":
            self._send(200, b'{"choices": [{"mess')
        else:
            reply = {
                "choices": [
                    {
                        "message": {
                            "role": "assistant",
                            "content": REPLY,
                        }
                    }
                ],
                "usage": USAGE,
            }
            self._send(200, json.dumps(reply).encode())

    def _send(self, code: int, payload: bytes, headers: dict | None = None) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)


@contextmanager
def running_fake_openai() -> Iterator[FakeOpenAI]:
    srv = FakeOpenAI()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
