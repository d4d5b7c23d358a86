"""The processes a desktop run starts, and the signals that stop it.

A desktop run starts processes of its own: a private Xvfb (:func:`virtual_display`) and the
game (:func:`spawn`). They must die with the run however it ends:

- **Clean end, exception, Ctrl-C, SIGTERM**: the context managers and ``close()`` calls
  unwind and :func:`stop` signals each child's whole process group (``SIGTERM``, then
  ``SIGKILL`` after a grace period), so helpers a game forks go too.
- **SIGKILL, or any death no handler sees**: every child is started with
  ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, so the kernel kills it when the thread that started
  it dies. (Spawn from a thread that lives as long as the child: the main thread.) A
  grandchild outside the child's control is not covered by this; the group kill above is
  the only thing that reaches it.

Each child runs in its own session, so a Ctrl-C typed in the terminal reaches Cairn only:
Cairn then tears the game down before the display, instead of every process racing to die.

While a run lives, :func:`stop_signals` handles two signals:

- ``SIGTERM`` raises :class:`Terminated` (a ``KeyboardInterrupt``) in the main thread, so it
  unwinds exactly like Ctrl-C: recordings are closed as interrupted and children stopped.
  If that exception is swallowed (raised inside a weakref callback, say), the desktop env
  raises it again at its next check (:func:`check_terminated`). A SIGTERM that was set to be
  ignored before the run stays ignored.
- ``SIGUSR1`` is the kill switch: it trips every live :class:`KillLatch` (each desktop env
  holds one; a run holds one for its whole length, so a trip during start-up is not lost
  when a probe env closes). With no latch registered it waits for the next one.

The handlers are installed before the first child is spawned (``virtual_display`` and the
desktop env take them first), so a signal that arrives while a child starts is handled, not
a default-action death. Signals are blocked while a child is forked and registered, so an
interrupt cannot lose the handle of a child that already exists.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
AUTH_PREFIX = "cairn-xauth-"
"""The private Xvfb's cookie file: ``cairn-xauth-<pid>-<random>`` in the temp folder."""
FAMILY_LOCAL, FAMILY_WILD = 256, 0xFFFF
"""Xauthority address families: this host's local sockets; any address."""
_BLOCKED = {signal.SIGINT, signal.SIGTERM, signal.SIGUSR1}
"""Held back while a child is forked and registered (see :func:`spawn`)."""


class DesktopError(RuntimeError):
    """The desktop or the game window cannot be used; the message says what to do."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: raised like Ctrl-C's ``KeyboardInterrupt`` so the run unwinds the same
    way (recordings closed as interrupted, the game and the display stopped)."""


# -- children ---------------------------------------------------------------------------------

_live: set[subprocess.Popen] = set()
"""Children not yet stopped; whatever is left is stopped at interpreter exit."""


def _libc_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    return prctl


_prctl = _libc_prctl()


def die_with(parent: int, signum: int = signal.SIGKILL) -> None:
    """Have the kernel send this process ``signum`` when ``parent`` (its parent) dies, and
    end it now if that parent is already gone. Linux only; elsewhere it does nothing."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took hold
            os._exit(1)


def spawn(args: Sequence[str], **popen: Any) -> subprocess.Popen:
    """Start ``args`` so that it cannot outlive this process (see the module docstring).

    ``popen`` goes to ``subprocess.Popen``; the child gets its own session and
    ``PR_SET_PDEATHSIG=SIGKILL``. Stop it with :func:`stop`. The death signal is set in a
    ``preexec_fn`` (CPython has no other way to reach ``prctl`` between fork and exec), which
    Python warns is unsafe with other threads running: Cairn's desktop runs have none.
    """
    parent = os.getpid()
    # Read the mask first and block inside the try: a handler that raises (the stop signals'
    # do) between blocking and the try would otherwise leave this thread's signals blocked,
    # and every thread and child started from it after.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, ())

    def in_child() -> None:
        # Runs between fork and exec: as little as possible (the libc function is bound).
        die_with(parent)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)  # the mask survives exec

    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED)
        proc = subprocess.Popen(list(args), preexec_fn=in_child, start_new_session=True,
                                **popen)
        _live.add(proc)
        return proc
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def stop(proc: subprocess.Popen, grace: float = 2.0) -> None:
    """Stop a child from :func:`spawn` and everything in its process group, then reap it.

    The group is signalled only while its leader is unreaped (a zombie still holds the
    number), so no unrelated process that reuses the number is ever signalled.
    """
    if proc.returncode is None:
        _signal_group(proc.pid, signal.SIGTERM)
        _exited(proc.pid, grace)
        _signal_group(proc.pid, signal.SIGKILL)  # a leader that lingers, and what it left
        proc.wait()
    _live.discard(proc)  # only now: a stop cut short is finished at exit
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe:
            pipe.close()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _exited(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` s for ``pid`` to exit, leaving it unreaped (a zombie)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


@atexit.register
def _stop_all() -> None:
    for proc in list(_live):
        stop(proc, grace=0.5)


# -- signals ------------------------------------------------------------------------------------


class KillLatch:
    """Set once by the kill switch: ``reason`` says what tripped it, in words for the
    operator, and ``trigger`` names it for code (``"signal"``, ``"kill_file"``, ...)."""

    def __init__(self, sticky: bool = False):
        self.reason: str | None = None
        self.trigger: str | None = None
        self.sticky = sticky
        """A run's latch: latches registered while it is tripped start tripped."""

    def trip(self, reason: str, trigger: str) -> None:
        """The first trip wins: it is what stopped the run."""
        if self.reason is None:
            self.reason, self.trigger = reason, trigger


class _Signals:
    """Process-wide: who holds the handlers, what they replaced, which latches listen."""

    holders = 0
    previous: dict[int, Any] = {}
    latches: weakref.WeakSet[KillLatch] = weakref.WeakSet()
    pending: tuple[str, str] | None = None
    terminated = False


def hold_stop_signals() -> None:
    """Install the SIGTERM and SIGUSR1 handlers (the first holder does); pair with
    :func:`release_stop_signals`. Off the main thread nothing is installed (Python allows
    handlers only there); the count is kept so releases still match."""
    _Signals.holders += 1
    if _Signals.holders > 1 or threading.current_thread() is not threading.main_thread():
        return
    _Signals.previous = {signal.SIGUSR1: signal.getsignal(signal.SIGUSR1)}
    signal.signal(signal.SIGUSR1, _on_kill_switch)
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:  # ignored on purpose: leave it
        _Signals.previous[signal.SIGTERM] = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _on_terminate)


def release_stop_signals() -> None:
    """Undo one :func:`hold_stop_signals`; the last one restores the previous handlers and
    forgets a kill switch no latch took (it belonged to this run)."""
    _Signals.holders = max(_Signals.holders - 1, 0)
    if _Signals.holders:
        return
    if threading.current_thread() is threading.main_thread():
        for signum, handler in _Signals.previous.items():
            if handler is not None:
                signal.signal(signum, handler)
    _Signals.previous, _Signals.pending, _Signals.terminated = {}, None, False


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """Handle SIGTERM and SIGUSR1 for the length of the block (see the module docstring)."""
    hold_stop_signals()
    try:
        yield
    finally:
        release_stop_signals()


def listen(latch: KillLatch) -> None:
    """Let the kill switch trip ``latch``; it starts tripped if the run's latch already is,
    if a SIGUSR1 came while nothing listened, or if the handler of the ``cairn`` command
    (``runtime/__main__.py``) took one before any env listened (it marks itself ``fired``)."""
    if _Signals.pending is not None:
        latch.trip(*_Signals.pending)
        _Signals.pending = None
    for handler in (signal.getsignal(signal.SIGUSR1), _Signals.previous.get(signal.SIGUSR1)):
        fired = getattr(handler, "fired", None)
        if fired:  # the command's own kill switch fired, and Python dropped its exception
            latch.trip(fired, "signal")
    for other in list(_Signals.latches):
        if other.sticky and other.reason is not None:
            latch.trip(other.reason, other.trigger or "signal")
    _Signals.latches.add(latch)


def unlisten(latch: KillLatch) -> None:
    """Stop tripping ``latch`` (its env is closed)."""
    _Signals.latches.discard(latch)


@contextlib.contextmanager
def run_latch() -> Iterator[KillLatch]:
    """A latch for a whole run: a kill switch during start-up trips every env made later."""
    latch = KillLatch(sticky=True)
    listen(latch)
    try:
        yield latch
    finally:
        unlisten(latch)


def _on_kill_switch(signum: int, frame: Any) -> None:
    reason = f"signal SIGUSR1 sent to process {os.getpid()}"
    latches = list(_Signals.latches)
    for latch in latches:
        latch.trip(reason, "signal")
    if not latches:
        _Signals.pending = (reason, "signal")
    previous = _Signals.previous.get(signal.SIGUSR1)
    if callable(previous):
        previous(signum, frame)


def _on_terminate(signum: int, frame: Any) -> None:
    _Signals.terminated = True
    raise Terminated("SIGTERM received")


def check_terminated() -> None:
    """Raise :class:`Terminated` again if SIGTERM came: an exception raised by a signal
    handler is lost when it lands where Python ignores exceptions (a weakref callback, a
    ``__del__``), so the desktop env asks here at each point where it may stop."""
    if _Signals.terminated:
        raise Terminated("SIGTERM received")


# -- the private display ------------------------------------------------------------------------

_shared_display: dict[str, Any] = {}


def private_display() -> str | None:
    """The ``$DISPLAY`` of the Xvfb :func:`virtual_display` runs, while it is in use."""
    return _shared_display.get("name")


@contextlib.contextmanager
def virtual_display(size: tuple[int, int] = (1024, 768)) -> Iterator[str]:
    """Run a private Xvfb and point ``$DISPLAY`` at it (for runs, tests and benches).

    pyautogui binds to ``$DISPLAY`` at import, so one process must keep one display: nested
    and repeated uses share the first server, which stops when the last use ends. The stop
    signals are held for the whole block, so SIGTERM unwinds it and stops the server.
    """
    with stop_signals():
        if not _shared_display:
            _start_display(size)
        _shared_display["users"] += 1
        try:
            yield os.environ["DISPLAY"]
        finally:
            _shared_display["users"] -= 1
            if _shared_display["users"] == 0:
                _stop_display()


def _start_display(size: tuple[int, int]) -> None:
    """Start the shared Xvfb (:func:`start_xvfb`) and point ``$DISPLAY`` and ``$XAUTHORITY``
    at it, so that Xlib finds a cookie and prints no "no xauthority details available"
    lines on stdout."""
    if "pyautogui" in sys.modules:
        raise DesktopError("pyautogui is already bound to another display in this process; "
                           "use one virtual_display for the whole run")
    server = start_xvfb(size)
    _shared_display.update(proc=server.proc, users=0, name=server.name, auth=str(server.auth),
                           old={k: os.environ.get(k) for k in ("DISPLAY", "XAUTHORITY")})
    os.environ.update(DISPLAY=server.name, XAUTHORITY=str(server.auth))


@dataclass
class Xvfb:
    """A private X server: ``name`` is its display, ``auth`` its cookie file."""

    proc: subprocess.Popen
    name: str
    auth: Path

    def stop(self) -> None:
        stop(self.proc)
        with contextlib.suppress(FileNotFoundError):
            self.auth.unlink()

    @contextlib.contextmanager
    def client_env(self) -> Iterator[None]:
        """Point ``$DISPLAY``/``$XAUTHORITY`` here while X clients in this process connect
        (python-xlib and libxcb read the cookie's path from the environment only)."""
        old = {k: os.environ.get(k) for k in ("DISPLAY", "XAUTHORITY")}
        os.environ.update(DISPLAY=self.name, XAUTHORITY=str(self.auth))
        try:
            yield
        finally:
            for key, value in old.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def start_xvfb(size: tuple[int, int]) -> Xvfb:
    """Start a private Xvfb of exactly ``size`` with its own cookie (``-auth``, mode 0600),
    without touching ``$DISPLAY``: only processes that can read the cookie file can connect,
    and the user's ``~/.Xauthority`` is left alone."""
    if not shutil.which("Xvfb"):
        raise DesktopError("Xvfb is not installed (apt-get install xvfb)")
    _sweep_auth_files()
    cookie = os.urandom(16)
    fd, auth = tempfile.mkstemp(prefix=f"{AUTH_PREFIX}{os.getpid()}-")  # mode 0600
    with os.fdopen(fd, "wb") as f:  # the server takes a wildcard entry: any address, any number
        f.write(_xauth_entry(FAMILY_WILD, b"", b"", cookie))
    read, write = os.pipe()
    try:
        proc = spawn(["Xvfb", "-displayfd", str(write), "-nolisten", "tcp", "-auth", auth,
                      "-screen", "0", f"{size[0]}x{size[1]}x24"], pass_fds=(write,),
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    except BaseException:
        os.close(read)
        os.unlink(auth)
        raise
    finally:
        os.close(write)
    try:
        number = _read_display_number(read)
        with open(auth, "ab") as f:  # Xlib (python-xlib) matches only its host and number
            f.write(_xauth_entry(FAMILY_LOCAL, socket.gethostname().encode(), number.encode(),
                                 cookie))
    except BaseException:  # DesktopError, or SIGTERM / Ctrl-C while it starts
        stop(proc)
        os.unlink(auth)
        raise
    return Xvfb(proc, f":{number}", Path(auth))


def _sweep_auth_files() -> None:
    """Remove the cookie files of runs that were SIGKILLed (nothing else leaves one)."""
    for path in Path(tempfile.gettempdir()).glob(f"{AUTH_PREFIX}*-*"):
        pid = path.name[len(AUTH_PREFIX):].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                path.unlink()
        except PermissionError:
            pass  # another user's live process


def _xauth_entry(family: int, address: bytes, number: bytes, cookie: bytes) -> bytes:
    """One Xauthority record (every field a big-endian length and its bytes)."""
    fields = (address, number, b"MIT-MAGIC-COOKIE-1", cookie)
    return struct.pack(">H", family) + b"".join(struct.pack(">H", len(v)) + v for v in fields)


def _stop_display() -> None:
    stop(_shared_display["proc"])
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_shared_display["auth"])
    for name, value in _shared_display["old"].items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _shared_display.clear()


def _read_display_number(fd: int, timeout: float = 10.0) -> str:
    """Xvfb writes "N\n" to -displayfd when it accepts connections; wait for its socket too."""
    deadline, text = time.monotonic() + timeout, b""
    try:
        while not text.endswith(b"\n") and time.monotonic() < deadline:
            check_terminated()
            if select.select([fd], [], [], 0.1)[0]:
                chunk = os.read(fd, 16)
                if not chunk:
                    break
                text += chunk
    finally:
        os.close(fd)
    number = text.decode().strip()
    sock = Path(f"/tmp/.X11-unix/X{number}")
    while number and not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not number or not sock.exists():
        raise DesktopError(f"Xvfb did not start within {timeout:.0f} s")
    return number


# -- windows ------------------------------------------------------------------------------------


class Window:
    """One X window: its screen rectangle, focus, and whether it still exists."""

    def __init__(self, display: Any, wid: int):
        from Xlib import error as xerror

        self._errors = (xerror.BadWindow, xerror.BadDrawable, xerror.BadMatch)
        self.display, self.id = display, wid
        self.win = display.create_resource_object("window", wid)
        self.root = display.screen().root

    def rect(self) -> tuple[int, int, int, int] | None:
        """(left, top, width, height) on screen, or None once the window is gone."""
        try:
            geom = self.win.get_geometry()
            pos = self.root.translate_coords(self.win, 0, 0)
            attrs = self.win.get_attributes()
        except self._errors:
            return None
        if attrs.map_state == 0:  # IsUnmapped: the game hid or is tearing down its window
            return None
        return int(pos.x), int(pos.y), int(geom.width), int(geom.height)

    def configure(self, **kw: int) -> None:
        self.win.configure(**kw)
        self.display.sync()

    def focus(self) -> None:
        from Xlib import X

        try:
            self.win.set_input_focus(X.RevertToParent, X.CurrentTime)
            self.display.sync()
        except self._errors:
            pass  # gone: the next rect() reports it


def xdotool_search(args: Sequence[str]) -> list[int]:
    """Visible windows matching xdotool's search ``args`` (``--name re``, ``--pid n``)."""
    out = subprocess.run(["xdotool", "search", "--onlyvisible", *args],
                         capture_output=True, text=True, timeout=5)
    return [int(w) for w in out.stdout.split()]
