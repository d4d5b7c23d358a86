"""Cairn's end of the MineDojo bridge: the server process and the framed calls to it.

Framing is shared with the server (``minedojo_server.py``, which must stay importable
without Cairn). Every call has a deadline (the config's ``*_timeout_s``) kept with ``poll``
on the reply pipe, so nothing here can wait forever:

- the server exits or closes its output: GameError with its exit status and its log's tail;
- no whole reply by the deadline: the server's process group is killed, then GameError;
- a reply that breaks the protocol: the server is stopped, then GameError;
- an error the server reports (MineDojo raised): GameError; the server stays usable.

The process is started like every child of Cairn (``cairn.envs.x11.spawn``): its own
session, killed with this process however it dies, and its whole group stopped by
:meth:`ServerProcess.close`, so Java processes MineDojo leaves in the group go too. While
it runs, SIGTERM unwinds like Ctrl-C, so ``close`` still lets MineDojo shut Minecraft down.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cairn.envs.game import GameError
from cairn.envs.minedojo_server import (
    HEADER,
    VERSION,
    WireError,
    decode,
    encode,
    parse_header,
    unpack_tree,
)
from cairn.envs.x11 import _exited, hold_stop_signals, release_stop_signals, spawn, stop

if TYPE_CHECKING:
    from cairn.envs.minedojo import MineDojoSettings

log = logging.getLogger(__name__)

TAIL_LINES = 12
VERBS = {"hello": "start"}
DROPPED_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")
"""This interpreter's path settings, which must not leak into the other one."""


def check_interpreter(python: str) -> Path:
    """The configured interpreter, if it can be run; else GameError in one line."""
    hint = ("set env.kwargs.python to the python of the environment MineDojo is installed "
            "in, e.g. ~/miniconda3/envs/minedojo/bin/python (docs/minedojo.md)")
    if not python:
        raise GameError(f"env.kwargs.python is missing: {hint}")
    path = Path(python).expanduser()
    if not path.exists():
        raise GameError(f"env.kwargs.python: {path} does not exist; {hint}")
    if path.is_dir() or not os.access(path, os.X_OK):
        raise GameError(f"env.kwargs.python: {path} is not an executable file; {hint}")
    return path


class ServerProcess:
    """One bridge server; :meth:`call` sends a command and returns its reply."""

    def __init__(self, settings: MineDojoSettings, script: Path):
        python = check_interpreter(settings.python)
        if not script.is_file():
            raise GameError(f"env.kwargs.server: {script} is not a file")
        self.settings = settings
        self.versions: dict[str, Any] = {}
        self._failed: str | None = None
        self._busy = False
        """A call is under way: its reply is not (wholly) read."""
        self._keep_log = settings.log is not None
        self.log_path = self._log_file(settings.log)
        args = [str(python), str(script)]
        if settings.world:
            args += ["--world", settings.world]
        for folder in settings.world_path:
            args += ["--path", str(Path(folder).expanduser())]
        hold_stop_signals()
        try:
            with open(self.log_path, "ab") as log_file:
                self._proc: subprocess.Popen | None = spawn(
                    args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file,
                    env=self._environment(), bufsize=0)
        except OSError as err:
            release_stop_signals()
            raise GameError(f"env.kwargs.python: cannot run {python}: {err.strerror or err}") \
                from None
        except BaseException:
            release_stop_signals()
            raise
        try:
            reply, _ = self.call({"cmd": "hello", "protocol": VERSION}, "start_timeout_s")
        except BaseException:
            self._keep_log = True
            self.close()
            raise
        self.versions = {key: reply.get(key)
                         for key in ("protocol", "python", "minedojo", "numpy", "world", "pid")}
        log.info("MineDojo server %s (python %s, minedojo %s), log %s", self.pid,
                 self.versions["python"], self.versions["minedojo"], self.log_path)

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def call(self, message: dict[str, Any], timeout_key: str) -> tuple[dict[str, Any], Any]:
        """Send ``message`` and wait for its reply, at most ``settings.<timeout_key>`` s.

        Returns (the reply, its observation tree with the arrays in place); the reply's
        ``info`` is unpacked too.
        """
        cmd = message["cmd"]
        if self._proc is None or self._failed:
            raise GameError(f"the MineDojo server is not running ({self._failed or 'closed'})"
                            "; make a new env")
        timeout = float(getattr(self.settings, timeout_key))
        deadline = time.monotonic() + timeout
        self._busy = True
        self._send(encode(message), cmd)
        try:
            n_json, n_payload = parse_header(self._read(HEADER.size, deadline, cmd, timeout_key))
            body = self._read(n_json + n_payload, deadline, cmd, timeout_key)
            reply, arrays = decode(body[:n_json], body[n_json:])
            if reply.get("cmd") != cmd:
                raise WireError(f"the reply answers {reply.get('cmd')!r}")
            obs = unpack_tree(reply.get("obs") or {}, arrays)
            reply["info"] = unpack_tree(reply.get("info") or {}, arrays)
        except WireError as err:
            self._fail(f"sent a malformed reply to '{cmd}': {err}; it was stopped")
        self._busy = False
        if not reply.get("ok"):
            self._keep_log = True
            hint = ("; is MineDojo installed in the environment of env.kwargs.python?"
                    if cmd == "hello" else "")
            raise GameError(f"the MineDojo server could not {VERBS.get(cmd, cmd)}: "
                            f"{reply.get('error')}{hint} (its log: {self.log_path})")
        return reply, obs

    def close(self) -> None:
        """Let MineDojo close, then stop the server's process group (what MineDojo left in it
        goes too); idempotent. A call cut short (Ctrl-C) leaves a reply half read, so then the
        group is stopped at once. The log is removed unless it was configured or something
        failed."""
        proc = self._proc
        if proc is None:
            return
        try:
            if not _exited(proc.pid, 0) and not self._failed and not self._busy:
                with contextlib.suppress(GameError):
                    self.call({"cmd": "close"}, "close_timeout_s")
                _exited(proc.pid, min(5.0, self.settings.close_timeout_s))  # left unreaped
        finally:
            self._proc = None
            stop(proc)
            release_stop_signals()
            if not self._keep_log:
                with contextlib.suppress(OSError):
                    os.unlink(self.log_path)

    # -- internals --------------------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
        env["PYTHONUNBUFFERED"] = "1"  # the log has everything up to a crash
        if self.settings.headless:
            env["MINEDOJO_HEADLESS"] = "1"
        env.update({str(k): str(v) for k, v in self.settings.env_vars.items()})
        return env

    @staticmethod
    def _log_file(configured: str | None) -> Path:
        if configured:
            path = Path(configured).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            return path
        fd, name = tempfile.mkstemp(prefix="cairn-minedojo-", suffix=".log")
        os.close(fd)
        return Path(name)

    def _send(self, data: bytes, cmd: str) -> None:
        fd = self._proc.stdin.fileno()
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
        except BrokenPipeError:
            self._died(cmd)

    def _read(self, size: int, deadline: float, cmd: str, timeout_key: str) -> bytes:
        fd = self._proc.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        chunks, got = [], 0
        while got < size:
            left = deadline - time.monotonic()
            if left <= 0:
                timeout = getattr(self.settings, timeout_key)
                self._fail(f"did not answer '{cmd}' within {timeout:g} s "
                           f"(env.kwargs.{timeout_key}); it and its process group were stopped")
            if not poller.poll(min(left, 0.5) * 1000):
                continue
            chunk = os.read(fd, min(size - got, 1 << 20))
            if not chunk:
                self._died(cmd)
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _died(self, cmd: str) -> None:
        """The server closed the stream: name how it ended. It is left unreaped until
        :func:`stop`, so its process group can still be signalled safely."""
        pid = self._proc.pid
        what = "closed its output"
        if _exited(pid, 5.0):
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if info is not None and info.si_code == os.CLD_EXITED:
                what = f"exited with status {info.si_status}"
            elif info is not None:
                what = f"was killed by signal {signal.Signals(info.si_status).name}"
        self._fail(f"{what} while answering '{cmd}'")

    def _fail(self, reason: str) -> None:
        """Stop the server for good and raise GameError with ``reason`` and the log's tail."""
        proc = self._proc
        self._failed = reason
        self._keep_log = True
        if proc is not None:
            stop(proc)
        raise GameError(f"the MineDojo server (pid {proc.pid if proc else '?'}) {reason}"
                        f"{self._tail()}")

    def _tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, os.path.getsize(self.log_path) - 8192))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        lines = [line[:300] for line in text.splitlines() if line.strip()][-TAIL_LINES:]
        if not lines:
            return f"; its log {self.log_path} is empty"
        return f"\nlast lines of its log {self.log_path}:\n" + "\n".join(f"  {line}"
                                                                       for line in lines)
