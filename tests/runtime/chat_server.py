"""A local chat-completions server for tests: scripted replies, every request recorded.

``ChatServer(script)`` listens on 127.0.0.1 (a free port) in a thread. Each POST to
``/v1/chat/completions`` gets the next ``Reply`` of the script (a callable script is asked
with the request's index and JSON body); once the script is used up, ``default`` answers.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    content: str | None = None
    """The chat message's text (None: ``body`` is sent as it is)."""
    status: int = 200
    body: bytes | None = None
    delay: float = 0.0
    """Seconds to wait before answering (a slow model)."""
    trickle: float = 0.0
    """Seconds between the body's bytes (a server that never quite stops sending)."""
    usage: dict[str, Any] | None = field(
        default_factory=lambda: {"prompt_tokens": 100, "completion_tokens": 20})


def choice(subgoal: str, target: str | None = None, reason: str = "because",
           **extra: Any) -> Reply:
    """A well-formed reply choosing ``subgoal`` (with any extra keys)."""
    return Reply(json.dumps({"subgoal": subgoal, "target": target, "reason": reason, **extra}))


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float

    @property
    def user_text(self) -> str:
        content = self.body["messages"][-1]["content"]
        if isinstance(content, list):
            return "".join(p.get("text", "") for p in content)
        return content


class ChatServer:
    def __init__(self, script: Sequence[Reply] | Callable[[int, dict], Reply] = (),
                 default: Reply | None = None):
        self.script = script
        self.default = default or choice("explore")
        self.requests: list[Request] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _next(self, index: int, body: dict) -> Reply:
        if callable(self.script):
            return self.script(index, body)
        return self.script[index] if index < len(self.script) else self.default

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                with server._lock:
                    server.requests.append(
                        Request(self.path, dict(self.headers), body, time.monotonic()))
                    index = len(server.requests) - 1
                reply = server._next(index, body)
                if reply.delay and server._stop.wait(reply.delay):
                    return
                if reply.body is not None:
                    payload = reply.body
                else:
                    data: dict[str, Any] = {
                        "id": "chat-1", "object": "chat.completion", "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop", "message": {
                            "role": "assistant", "content": reply.content}}]}
                    if reply.usage is not None:
                        data["usage"] = reply.usage
                    payload = json.dumps(data).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    for i in range(0, len(payload), 1 if reply.trickle else len(payload)):
                        self.wfile.write(payload[i:i + (1 if reply.trickle else len(payload))])
                        self.wfile.flush()
                        if reply.trickle and server._stop.wait(reply.trickle):
                            return
                except OSError:
                    pass  # the client gave up (a timeout test)

        return Handler
