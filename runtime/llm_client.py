"""A minimal client for OpenAI-compatible chat endpoints, and the run's budget for it.

Only the standard library is used (``http.client`` and ``json``), so the default install
gains no dependency. A call never takes longer than ``timeout_s`` in all: the exchange runs
in a helper thread, and a reply that is not complete by then is abandoned (its socket shut).
The API key is read by the caller from the environment and is only ever put in the
``Authorization`` header: every text this module hands back (errors included) has it
blanked, since a hostile endpoint may echo it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import socket
import ssl
import struct
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

MAX_REPLY_BYTES = 1 << 20
"""A response body larger than this is malformed (a chat reply is a few hundred bytes)."""
CHARS_PER_TOKEN = 4
"""The estimate used where an endpoint reports no token counts, and for packing prompts."""


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


class ChatError(Exception):
    """A call that gave no usable reply; ``reason`` is ``timeout``, ``http_error`` or
    ``malformed``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass
class ChatReply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    """What the endpoint says the call cost (``usage.cost``), if it says."""
    estimated: bool = False
    """The endpoint reported no token counts: they are estimated from the text."""


class ChatClient:
    """POSTs to ``<base_url>/chat/completions`` with ``model``; ``api_key`` None sends no
    ``Authorization`` header (local servers need none)."""

    def __init__(self, base_url: str, model: str, api_key: str | None, timeout_s: float,
                 reply_tokens: int = 200, temperature: float = 0.0):
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.https = url.scheme == "https"
        self.host, self.port = url.hostname, url.port
        self.path = url.path.rstrip("/") + "/chat/completions"
        self.model, self.timeout_s = model, timeout_s
        self.reply_tokens, self.temperature = reply_tokens, temperature
        self._key = api_key or None

    def redact(self, text: str) -> str:
        """``text`` with the API key blanked out (before any truncation, which could leave
        a part of it)."""
        return text.replace(self._key, "[api key]") if self._key else text

    def complete(self, messages: list[dict[str, Any]]) -> ChatReply:
        """One chat completion; raises ``ChatError`` for anything but a usable reply."""
        body = json.dumps({"model": self.model, "messages": messages, "stream": False,
                           "max_tokens": self.reply_tokens,
                           "temperature": self.temperature}).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": "cairn"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        status, raw = self._exchange(body, headers)
        if status != 200:
            text = self.redact(raw[:4096].decode("utf-8", "replace")).strip()
            raise ChatError("http_error", f"HTTP {status}: {text}"[:200])
        return self._reply(raw, sum(estimate_tokens(t) for t in _texts(messages)))

    def _exchange(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout_s,
                context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                conn.request("POST", self.path, body, headers)
                response = conn.getresponse()
                result["reply"] = (response.status, response.read(MAX_REPLY_BYTES + 1))
            except BaseException as err:  # handed to the caller's thread
                result["error"] = err

        worker = threading.Thread(target=run, name="cairn-llm-call", daemon=True)
        worker.start()
        worker.join(self.timeout_s)
        if worker.is_alive():
            _abandon(conn)
            raise ChatError("timeout", f"no complete reply within {self.timeout_s:g} s")
        conn.close()
        err = result.get("error")
        if isinstance(err, TimeoutError | socket.timeout):
            raise ChatError("timeout", f"no reply within {self.timeout_s:g} s")
        if isinstance(err, OSError | http.client.HTTPException):
            raise ChatError("http_error", self.redact(f"{type(err).__name__}: {err}")[:200])
        if err is not None:
            raise err
        status, raw = result["reply"]
        if len(raw) > MAX_REPLY_BYTES:
            raise ChatError("malformed", f"response body over {MAX_REPLY_BYTES} bytes")
        return status, raw

    def _reply(self, raw: bytes, prompt_estimate: int) -> ChatReply:
        try:
            data = json.loads(raw)
            message = data["choices"][0]["message"]
            content = message.get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError):
            raise ChatError("malformed", "the response is not a chat completion") from None
        if isinstance(content, list):  # some servers answer in content parts
            content = "".join(p.get("text", "") for p in content
                              if isinstance(p, dict) and isinstance(p.get("text"), str))
        if not isinstance(content, str):
            raise ChatError("malformed", "the reply has no text content")
        usage = data.get("usage") if isinstance(data, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        cost = usage.get("cost")
        cost = float(cost) if _number(cost) else None
        if _count(prompt) and _count(completion):
            return ChatReply(content, prompt, completion, cost)
        return ChatReply(content, prompt_estimate, estimate_tokens(content), cost, estimated=True)


def _texts(messages: list[dict[str, Any]]) -> list[str]:
    """The text of every message (images left out)."""
    texts = []
    for message in messages:
        content = message.get("content")
        parts = content if isinstance(content, list) else [{"text": content}]
        texts += [p["text"] for p in parts if isinstance(p.get("text"), str)]
    return texts


def _abandon(conn: http.client.HTTPConnection) -> None:
    """Wake the helper thread out of a blocked read and drop the connection."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    conn.close()


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value) and value >= 0


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# -- budgets ---------------------------------------------------------------------------------

@dataclass
class Usage:
    """What the planner spent and how its choices went, over a run or one episode."""

    calls: int = 0
    """Requests sent, answered or not."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    cost_known: bool = True
    """False once a reply came with no cost and no prices were configured."""
    estimated: int = 0
    """Calls whose token counts were estimated (the endpoint reported none)."""
    followed: int = 0
    """Choices the model made that were followed."""
    fallbacks: dict[str, int] = field(default_factory=dict)
    """Choices the kit's planner made instead, by reason."""

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add_reply(self, prompt_tokens: int, completion_tokens: int, cost: float | None,
                  estimated: bool) -> None:
        """What a call that got a reply spent (``calls`` counts every call made)."""
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.estimated += estimated
        if cost is None:
            self.cost_known = False
        else:
            self.cost += cost

    def as_dict(self) -> dict[str, float]:
        """Flat numbers for ``EpisodeResult.planner_usage``: ``calls``, ``prompt_tokens``,
        ``completion_tokens``, ``tokens``, ``followed``, ``estimated``, ``cost`` (only where
        every call's cost was known) and ``fallback:<reason>`` per reason."""
        out: dict[str, float] = {
            "calls": self.calls, "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens, "tokens": self.tokens,
            "followed": self.followed, "estimated": self.estimated}
        if self.cost_known:
            out["cost"] = round(self.cost, 6)
        out.update((f"fallback:{reason}", n) for reason, n in sorted(self.fallbacks.items()))
        return out


@dataclass
class Budget:
    """Per-run caps (None: no cap) and the prices for endpoints that report no cost."""

    max_calls: int | None = None
    max_tokens: int | None = None
    max_cost: float | None = None
    price_prompt_1k: float | None = None
    price_completion_1k: float | None = None

    def cost(self, reply: ChatReply) -> float | None:
        """The call's cost: as the endpoint reports it, else from the prices, else unknown."""
        if reply.cost is not None:
            return reply.cost
        if self.price_prompt_1k is None and self.price_completion_1k is None:
            return None
        return (reply.prompt_tokens * (self.price_prompt_1k or 0.0)
                + reply.completion_tokens * (self.price_completion_1k or 0.0)) / 1000

    def exhausted(self, usage: Usage) -> str | None:
        """Why no further call may be made (None: one may). A cap stops calls once it is
        reached, so the call that crosses it is the last."""
        if self.max_calls is not None and usage.calls >= self.max_calls:
            return f"{usage.calls} calls reached max_calls {self.max_calls}"
        if self.max_tokens is not None and usage.tokens >= self.max_tokens:
            return f"{usage.tokens} tokens reached max_tokens {self.max_tokens}"
        if self.max_cost is not None:
            if not usage.cost_known:
                return "max_cost cannot be kept: the endpoint reports no cost and no " \
                       "prices are configured"
            if usage.cost >= self.max_cost:
                return f"cost {usage.cost:g} reached max_cost {self.max_cost:g}"
        return None


# -- images ----------------------------------------------------------------------------------

def png_bytes(frame: np.ndarray) -> bytes:
    """An RGB (or grey) uint8 frame as a PNG file, with zlib only."""
    rgb = np.asarray(frame, dtype=np.uint8)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    rgb = np.ascontiguousarray(rgb[:, :, :3])
    height, width = rgb.shape[:2]
    rows = np.concatenate([np.zeros((height, 1), np.uint8), rgb.reshape(height, -1)], axis=1)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + \
            struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + \
        chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b"")
