"""The MineDojo end of Cairn's bridge: run by the user's own MineDojo interpreter.

MineDojo pins ``gym==0.21``, needs JDK 8 and Python 3.9, so it cannot live in Cairn's
environment. Cairn starts this script with the interpreter named in the config
(``env.kwargs.python``); the script owns ``minedojo.make(...)`` and serves ``reset`` and
``step`` on its stdin/stdout. It must stay standalone: the standard library, numpy and
minedojo only, and Python 3.9 syntax (Cairn's test parses it as 3.9 and checks its imports).

Wire format (docs/minedojo.md has the whole protocol): every message is a fixed 20-byte
header (magic ``CMDJ``, version, flags, JSON length, payload length; big-endian), a UTF-8
JSON object, then the raw bytes of the arrays the JSON's ``arrays`` list describes (dtype
and shape each, concatenated in order). Frames travel as raw uint8, never pickled: pickle
across two interpreters is fragile and runs whatever the bytes say.

``--world module:factory`` serves another world with MineDojo's interface instead (the
factory takes ``minedojo.make``'s keyword arguments); Cairn's tests plug a stand-in in so.

The script keeps its protocol pipes to itself: file descriptor 1 is pointed at stderr (the
log) and 0 at /dev/null before anything is imported, so a library that prints, or a Java
process MineDojo starts, cannot corrupt the stream.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import signal
import struct
import sys
import traceback

import numpy as np

MAGIC = b"CMDJ"
VERSION = 1
HEADER = struct.Struct(">4sHHIQ")
"""magic, protocol version, flags (0), JSON length, payload length."""
MAX_JSON = 16 << 20
MAX_PAYLOAD = 1 << 30
MAX_DIMS = 8
DTYPES = ("|u1", "|i1", "|b1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8")
"""The array dtypes the wire carries (numpy's ``dtype.str``); anything else is an error."""


class WireError(Exception):
    """A message that breaks the protocol: bad magic or version, lengths past the caps,
    JSON that does not parse, arrays that do not add up to the payload."""


# -- framing (shared with Cairn's client, which imports these) --------------------------------


def encode(message: dict, arrays: list = ()) -> bytes:
    """One message: header, JSON (``message`` plus the arrays' specs), raw array bytes."""
    blobs, specs = [], []
    for array in arrays:
        array = np.asarray(array)
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        if array.dtype.str not in DTYPES:
            raise WireError(f"dtype {array.dtype.str} cannot be sent")
        specs.append({"dtype": array.dtype.str, "shape": list(array.shape)})
        blobs.append(array.tobytes())
    text = json.dumps(dict(message, arrays=specs)).encode("utf-8")
    payload = b"".join(blobs)
    if len(text) > MAX_JSON or len(payload) > MAX_PAYLOAD:
        raise WireError(f"message too large ({len(text)} bytes of JSON, {len(payload)} of "
                        "arrays)")
    return HEADER.pack(MAGIC, VERSION, 0, len(text), len(payload)) + text + payload


def parse_header(raw: bytes) -> tuple:
    """(JSON length, payload length) from a header, checked against the caps."""
    if len(raw) != HEADER.size:
        raise WireError(f"short header ({len(raw)} of {HEADER.size} bytes)")
    magic, version, _flags, n_json, n_payload = HEADER.unpack(raw)
    if magic != MAGIC:
        raise WireError(f"bad magic {magic!r} (expected {MAGIC!r}): the stream is not the "
                        "bridge protocol; does something print on the server's stdout?")
    if version != VERSION:
        raise WireError(f"protocol version {version}, expected {VERSION}: the server script "
                        "and Cairn are from different releases")
    if n_json > MAX_JSON or n_payload > MAX_PAYLOAD:
        raise WireError(f"lengths past the caps ({n_json} bytes of JSON, max {MAX_JSON}; "
                        f"{n_payload} of arrays, max {MAX_PAYLOAD})")
    return n_json, n_payload


def decode(text: bytes, payload: bytes) -> tuple:
    """(message, arrays) from a message's JSON and payload bytes."""
    try:
        message = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise WireError(f"the JSON part does not parse ({err})") from None
    if not isinstance(message, dict):
        raise WireError("the JSON part is not an object")
    specs = message.pop("arrays", [])
    if not isinstance(specs, list):
        raise WireError("'arrays' is not a list")
    arrays, offset = [], 0
    for i, spec in enumerate(specs):
        dtype, shape = _checked_spec(i, spec)
        count = int(np.prod(shape, dtype=np.int64))
        size = count * dtype.itemsize
        if offset + size > len(payload):
            raise WireError(f"array {i} ({dtype.str} {tuple(shape)}) runs past the payload "
                            f"({len(payload)} bytes)")
        chunk = payload[offset:offset + size]
        arrays.append(np.frombuffer(chunk, dtype).reshape(shape).copy())
        offset += size
    if offset != len(payload):
        raise WireError(f"the arrays take {offset} bytes, the payload has {len(payload)}")
    return message, arrays


def _checked_spec(i: int, spec: object) -> tuple:
    if not isinstance(spec, dict) or spec.get("dtype") not in DTYPES:
        raise WireError(f"array {i}: no known dtype in {spec!r}")
    shape = spec.get("shape")
    if (not isinstance(shape, list) or len(shape) > MAX_DIMS
            or not all(isinstance(n, int) and 0 <= n <= MAX_PAYLOAD for n in shape)):
        raise WireError(f"array {i}: bad shape {shape!r}")
    return np.dtype(spec["dtype"]), shape


def pack_tree(value: object, arrays: list) -> object:
    """A JSON-able copy of an observation tree: numeric arrays go to ``arrays`` (and are
    replaced by ``{"$array": index}``), string arrays become lists, numpy scalars numbers."""
    if isinstance(value, dict):
        return {str(k): pack_tree(v, arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [pack_tree(v, arrays) for v in value]
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf":
            arrays.append(value)
            return {"$array": len(arrays) - 1}
        if value.dtype.kind in "US":
            return value.astype(str).tolist()
        return pack_tree(value.tolist(), arrays)
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def unpack_tree(value: object, arrays: list) -> object:
    """The tree :func:`pack_tree` packed, with the arrays put back."""
    if isinstance(value, dict):
        index = value.get("$array")
        if len(value) == 1 and index is not None:
            if not isinstance(index, int) or not 0 <= index < len(arrays):
                raise WireError(f"reference to array {index!r}, {len(arrays)} were sent")
            return arrays[index]
        return {k: unpack_tree(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [unpack_tree(v, arrays) for v in value]
    return value


# -- the server ----------------------------------------------------------------------------------


def read_message(stream) -> tuple:
    """The next message on a blocking binary stream; None at a clean end of stream."""
    raw = stream.read(HEADER.size)
    if not raw:
        return None
    n_json, n_payload = parse_header(raw)
    text = stream.read(n_json)
    payload = stream.read(n_payload)
    if len(text) != n_json or len(payload) != n_payload:
        raise WireError("the stream ended inside a message")
    return decode(text, payload)


class Server:
    """Answers hello, reset, step and close, one message at a time, in order."""

    def __init__(self, world: str | None, out) -> None:
        self.world = world
        self.out = out
        self.make = None
        self.env = None
        self.made_with = None

    def answer(self, message: dict) -> bool:
        """Handle one request and write its reply; False once the client said close."""
        cmd = message.get("cmd")
        handler = {"hello": self.hello, "reset": self.reset, "step": self.step,
                   "close": self.close}.get(cmd)
        arrays: list = []
        try:
            if handler is None:
                raise ValueError(f"unknown command {cmd!r}")
            reply = handler(message, arrays)
        except Exception as err:  # reported to Cairn, which raises it there; the log has it all
            traceback.print_exc()
            reply, arrays = {"ok": False, "error": f"{type(err).__name__}: {err}"}, []
        self.out.write(encode(dict(reply, cmd=cmd), arrays))
        self.out.flush()
        return cmd != "close"

    def hello(self, message: dict, arrays: list) -> dict:
        if message.get("protocol") != VERSION:
            raise ValueError(f"Cairn speaks protocol {message.get('protocol')}, this server "
                             f"{VERSION}")
        self.make = _load_world(self.world)
        return {"ok": True, "protocol": VERSION, "pid": os.getpid(),
                "python": platform.python_version(), "numpy": np.__version__,
                "world": self.world or "minedojo.make", "minedojo": _version("minedojo")}

    def reset(self, message: dict, arrays: list) -> dict:
        if self.make is None:
            raise ValueError("reset before hello")
        kwargs = message.get("make") or {}
        if "image_size" in kwargs:
            kwargs["image_size"] = tuple(kwargs["image_size"])
        remade = self.env is None or kwargs != self.made_with
        if remade:
            self._close_env()
            self.env = self.make(**kwargs)
            self.made_with = kwargs
        obs = self.env.reset()
        nvec = getattr(getattr(self.env, "action_space", None), "nvec", None)
        return {"ok": True, "obs": pack_tree(obs, arrays), "remade": remade,
                "action_nvec": None if nvec is None else [int(n) for n in nvec],
                "prompt": _text(getattr(self.env, "task_prompt", None))}

    def step(self, message: dict, arrays: list) -> dict:
        if self.env is None:
            raise ValueError("step before reset")
        action = np.asarray(message["action"], dtype=np.int64)
        repeat = max(1, int(message.get("repeat", 1)))
        total, success, ticks = 0.0, False, 0
        obs, done, info = None, False, {}
        while ticks < repeat and not done:
            obs, reward, done, info = self.env.step(action.copy())
            total += float(reward)
            success = success or bool(getattr(self.env, "is_successful", False))
            ticks += 1
        keys = message.get("info_keys") or []
        kept = {k: info[k] for k in keys if isinstance(info, dict) and k in info}
        return {"ok": True, "obs": pack_tree(obs, arrays), "reward": total, "done": bool(done),
                "success": success, "ticks": ticks, "info": pack_tree(kept, arrays)}

    def close(self, message: dict, arrays: list) -> dict:
        self._close_env()
        return {"ok": True}

    def _close_env(self) -> None:
        env, self.env, self.made_with = self.env, None, None
        if env is not None:
            env.close()


def _load_world(spec: str | None):
    """``minedojo.make``, or the factory ``module:factory`` names."""
    if not spec:
        import minedojo

        return minedojo.make
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"--world {spec!r}: expected module:factory")
    return getattr(importlib.import_module(module), name)


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _claim_stdio() -> tuple:
    """The protocol's two pipes, moved off fds 0 and 1 (the new fds are not inherited)."""
    inp = os.fdopen(os.dup(0), "rb")
    out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return inp, out


def _on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through main's finally: the world is closed


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", help="module:factory to serve instead of minedojo.make")
    parser.add_argument("--path", action="append", default=[],
                        help="a folder to import the world's module from (repeatable)")
    args = parser.parse_args(argv)
    inp, out = _claim_stdio()
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.path[:0] = [os.path.abspath(p) for p in args.path]
    signal.signal(signal.SIGTERM, _on_sigterm)
    server = Server(args.world, out)
    try:
        while True:
            try:
                message = read_message(inp)
            except WireError as err:
                print(f"minedojo_server: bad request from Cairn: {err}", file=sys.stderr)
                return 2
            if message is None or not server.answer(message[0]):
                return 0
    finally:
        server._close_env()


if __name__ == "__main__":
    sys.exit(main())
