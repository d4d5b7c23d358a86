"""A desktop game window as a Gymnasium env: pixels in (mss), mouse and keys out (pyautogui).

The env launches a game command (``DesktopEnv(["/usr/games/sgt-flip", "3x3#{seed}"])``) or
attaches to a running window (``window_title=`` regex or ``window_id=``) on the X display in
``$DISPLAY``. The observation is exactly the window's client region, RGB uint8, of the fixed
size in ``observation_space`` (``size=`` resizes a launched window; without it the first window
found sets the size). ``reset(seed=s)`` relaunches the game with ``{seed}`` in the command
replaced by ``s`` (extra placeholders come from ``options["format"]``); an attached window is
not restarted, only captured again. Reward is always 0: goals are read off the screen.

Actions (``action_space`` is a ``Dict``; build them with :func:`click`, :func:`drag`, ...):

- ``kind``: index into :data:`ACTION_KINDS` (a kind's name is accepted too),
- ``point``: (x, y) in window pixels; ``end``: (x2, y2) for ``drag``,
- ``text``: a key name for ``key`` (pyautogui names: "space", "up", "a") or text for ``type``.

**A click outside the window is refused, never sent:** the step returns the current frame with
``info["refused"] = True`` and ``info["reason"]``. Accepted points are clamped to the window's
current screen rectangle as well, and screen corners (pyautogui's fail-safe points) are refused.

**Kill switch**: ``kill -USR1 <pid>``, creating ``kill_file`` (default
``$CAIRN_DESKTOP_KILL_FILE``), or moving the mouse into a screen corner (pyautogui's fail-safe,
which stays on) stops the run: every held key and button is released and the current or next
``step`` (or ``reset``, or the launch in progress) raises :class:`KillSwitch`, whose message
says which of the three it was; the env refuses to act again until it is closed. SIGUSR1 is
handled from the moment the env (or :func:`virtual_display`) is created, before any process
is started, and a SIGUSR1 while a run is starting stops the run's next env
(``cairn.envs.x11``).

**Processes**: the game is started so that it dies with this process however that ends
(SIGKILL included), and SIGTERM unwinds like Ctrl-C (:class:`Terminated`), so ``close`` runs
and stops it; see ``cairn.envs.x11``.

After each action the env waits until the frame settles (unchanged for ``settle_quiet`` s once
it changed, or for ``settle_idle`` s if it never changed, at most ``settle_timeout`` s) so the
next observation shows the effect; ``info["settled"]`` says whether it did. A window that
closes ends the episode with ``truncated=True`` and ``info["window_closed"] = True``; one that
is resized ends it with ``info["window_resized"] = True``; one that moves is followed.

Keys and mouse buttons the X server reports held are released after every action, on error,
at episode end, on ``close`` and on the kill switch. ``pyautogui.PAUSE`` is set to 0 (its 0.1 s
default pause per call would dominate step latency).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import gymnasium as gym
import numpy as np

from cairn.envs.x11 import (
    DesktopError,
    KillLatch,
    Terminated,
    Window,
    check_terminated,
    hold_stop_signals,
    listen,
    private_display,
    release_stop_signals,
    spawn,
    stop,
    unlisten,
    virtual_display,
    xdotool_search,
)

__all__ = ["ACTION_KINDS", "BUTTONS", "DesktopEnv", "DesktopError", "KillSwitch", "Terminated",
           "click", "double_click", "drag", "key", "middle_click", "mouse_click", "right_click",
           "type_text", "virtual_display"]

log = logging.getLogger(__name__)

ACTION_KINDS: tuple[str, ...] = ("click", "double_click", "drag", "key", "type", "right_click",
                                 "middle_click")
"""New kinds go at the end, so a kind's index stays what it was."""
BUTTONS = {"click": "left", "right_click": "right", "middle_click": "middle"}
"""Single-click kinds and the mouse button each presses."""
MAX_TEXT = 64


class KillSwitch(DesktopError):
    """The operator stopped the run: SIGUSR1, the kill file, or the mouse in a screen corner.

    The message says which; ``trigger`` names it for code (``"signal"``, ``"kill_file"``,
    ``"fail_safe"``), and ``end_reason`` is what a recording of the episode it stopped says
    (the loop reads it), so a killed episode is never mistaken for one that ended normally.
    """

    end_reason = "killed"

    def __init__(self, reason: str, trigger: str):
        super().__init__(f"run stopped by the kill switch: {reason}")
        self.trigger = trigger


def click(x: int, y: int) -> dict[str, Any]:
    return _action("click", (x, y))


def right_click(x: int, y: int) -> dict[str, Any]:
    return _action("right_click", (x, y))


def middle_click(x: int, y: int) -> dict[str, Any]:
    return _action("middle_click", (x, y))


def mouse_click(kind: str, x: int, y: int) -> dict[str, Any]:
    """A single click of the button ``kind`` names (a key of :data:`BUTTONS`)."""
    if kind not in BUTTONS:
        raise DesktopError(f"unknown click kind {kind!r}; expected one of {tuple(BUTTONS)}")
    return _action(kind, (x, y))


def double_click(x: int, y: int) -> dict[str, Any]:
    return _action("double_click", (x, y))


def drag(x: int, y: int, x2: int, y2: int) -> dict[str, Any]:
    return _action("drag", (x, y), (x2, y2))


def key(name: str) -> dict[str, Any]:
    return _action("key", text=name)


def type_text(text: str) -> dict[str, Any]:
    return _action("type", text=text)


def _action(kind: str, point=(0, 0), end=(0, 0), text: str = "") -> dict[str, Any]:
    return {
        "kind": ACTION_KINDS.index(kind),
        "point": np.asarray(point, np.int64),
        "end": np.asarray(end, np.int64),
        "text": text,
    }


def _import_gui():
    """Import pyautogui and Xlib, which connect to ``$DISPLAY`` at import time."""
    if not os.environ.get("DISPLAY"):
        raise DesktopError("DISPLAY is not set: start an X server (e.g. Xvfb :99) and export it")
    xauth = Path(os.environ.get("XAUTHORITY", Path.home() / ".Xauthority"))
    if not xauth.exists():
        raise DesktopError(f"{xauth} does not exist; pyautogui needs it (`touch {xauth}`)")
    try:
        import pyautogui
        from Xlib import display as xdisplay
    except ImportError as err:
        raise DesktopError(f"{err}; install the extra: pip install 'cairn[desktop]'") from err
    pyautogui.PAUSE = 0.0
    return pyautogui, xdisplay


class DesktopEnv(gym.Env[np.ndarray, dict]):
    """A game window on an X display; see the module docstring for actions and guarantees."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        command: Sequence[str] | None = None,
        *,
        window_title: str | None = None,
        window_id: int | None = None,
        size: tuple[int, int] | None = None,
        position: tuple[int, int] | None = (40, 40),
        launch_timeout: float = 10.0,
        settle_quiet: float = 0.06,
        settle_idle: float = 0.12,
        settle_timeout: float = 1.5,
        max_steps: int | None = None,
        kill_file: str | os.PathLike | None = None,
        render_mode: str | None = "rgb_array",
    ):
        if command is None and window_title is None and window_id is None:
            raise DesktopError("give a command to launch, or a window_title / window_id to attach")
        if command is not None and not shutil.which("xdotool"):
            raise DesktopError("xdotool is not installed (apt-get install xdotool)")
        self.command = list(command) if command is not None else None
        self.window_title, self.window_id = window_title, window_id
        self.position, self.launch_timeout = position, launch_timeout
        self.settle_quiet, self.settle_idle = settle_quiet, settle_idle
        self.settle_timeout, self.max_steps = settle_timeout, max_steps
        #: False: step returns the pre-action frame right after acting; call settle() next.
        self.settle_after_step = True
        self.render_mode = render_mode
        kill_file = kill_file or os.environ.get("CAIRN_DESKTOP_KILL_FILE")
        self.kill_file = Path(kill_file) if kill_file else None
        self._closed, self._display, self._mss = False, None, None
        self._proc: subprocess.Popen | None = None
        self._finalizer: weakref.finalize | None = None
        self._window: Window | None = None
        self._frame: np.ndarray | None = None
        self._ended, self._steps = True, 0
        self._launched_args: list[str] | None = None
        self._pristine = False
        self._latch, self._kill_logged = KillLatch(), False
        # SIGUSR1 and SIGTERM are handled from here on, before the game is started; whatever
        # goes wrong below (a failed launch, the kill switch, SIGTERM), close() undoes it.
        hold_stop_signals()
        listen(self._latch)
        try:
            self._check_kill()
            self._gui, xdisplay = _import_gui()
            import mss

            self._mss = getattr(mss, "MSS", mss.mss)()
            self._screenshot_error = mss.exception.ScreenShotError
            self._xdisplay = xdisplay
            self._display = xdisplay.Display()
            if size is None:  # measure the window once; a fresh probe is reused by the 1st reset
                self._open(self._format({"seed": 0}))
                size = self._window.rect()[2:]
        except BaseException:
            with contextlib.suppress(Exception):  # keep the first error, not close()'s
                self.close()
            raise
        self.size = (int(size[0]), int(size[1]))
        w, h = self.size
        self.observation_space = gym.spaces.Box(0, 255, (h, w, 3), np.uint8)
        self.action_space = gym.spaces.Dict({
            "kind": gym.spaces.Discrete(len(ACTION_KINDS)),
            "point": gym.spaces.Box(0, np.array([w - 1, h - 1]), (2,), np.int64),
            "end": gym.spaces.Box(0, np.array([w - 1, h - 1]), (2,), np.int64),
            "text": gym.spaces.Text(MAX_TEXT),
        })

    # -- lifecycle ------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._check_kill()
        self._release_all()
        fields = {"seed": seed if seed is not None else int(self.np_random.integers(2**31 - 1))}
        fields.update((options or {}).get("format", {}))
        args = self._format(fields)
        if args is None or not (self._pristine and args == self._launched_args):
            self._open(args)
        self._fit_window()
        self._frame = self._capture()
        self._frame = self._settle(self._frame.tobytes(), idle=self.settle_idle)[0]
        self._ended, self._steps, self._pristine = False, 0, False
        return self._frame.copy(), {"window_id": self._window.id, "command": args,
                                    "pid": self._proc.pid if self._proc else None}

    def close(self) -> None:
        """Release held inputs, stop the game, give the signal handlers back; idempotent.

        ``close`` often runs because Ctrl-C or SIGTERM raised in the middle of an X request,
        which leaves python-xlib's connection waiting forever for a reply it will never
        read: inputs are released over a fresh connection, and the old one is shut without
        another request. The game is stopped even if the display is already gone."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._display is not None:
                self._release_on_fresh_connection()
        finally:
            self._stop_game()
            if self._mss is not None:
                self._mss.close()  # libX11 through ctypes: never left mid-request
            if self._display is not None:
                self._display.display.close_internal("client")  # no flush: it may be stuck
                self._display = None
            unlisten(self._latch)
            release_stop_signals()

    def _release_on_fresh_connection(self) -> None:
        from Xlib import error as xerror

        gone = (xerror.DisplayError, xerror.ConnectionClosedError, OSError)
        try:
            fresh = self._xdisplay.Display()
        except gone as err:  # the X server is gone: nothing is held any more
            log.debug("no X connection to release inputs on: %s", err)
            return
        try:
            self._release_all(fresh)
        except gone as err:
            log.debug("the X server went away while inputs were released: %s", err)
        finally:
            with contextlib.suppress(*gone):
                fresh.close()

    def observe(self) -> np.ndarray:
        """Grab the window now without acting (e.g. to watch an animation play out)."""
        if self._window is None:
            raise DesktopError("no window yet: call reset() first")
        self._frame = self._capture()
        return self._frame.copy()

    def settle(self) -> tuple[np.ndarray, bool]:
        """Wait until the frame stops changing (see the module docstring): (frame, settled)."""
        frame, settled = self._settle(self.observe().tobytes())
        if frame is None:
            raise DesktopError(f"window {self._window.id:#x} closed or was resized")
        self._frame = frame
        return frame.copy(), settled

    def render(self) -> np.ndarray | None:
        return None if self._frame is None else self._frame.copy()

    def press_key(self, name: str) -> None:
        """Press and release one key in the game's window, outside any step (it is neither
        counted nor recorded): e.g. the game's pause key while a planner thinks."""
        if self._window is None or self._ended:
            raise DesktopError("no episode running: call reset() first")
        self._check_kill()
        if name not in self._gui.KEYBOARD_KEYS:
            raise DesktopError(f"unknown key name {name!r}")
        try:
            self._window.focus()
            self._gui.press(name)
        finally:
            self._release_all()

    # -- stepping -------------------------------------------------------------------------

    def step(self, action: dict[str, Any]):
        if self._ended:
            raise DesktopError("the episode has ended (or never started): call reset() first")
        self._check_kill()
        info: dict[str, Any] = {"refused": False, "window_closed": False, "window_resized": False}
        rect = self._window.rect()
        if rect is None or rect[2:] != self.size:
            return self._end(info, rect)
        # The last frame this env captured (reset/step/observe/settle) is the pre-action frame:
        # grabbing again here would double the capture cost of an observe -> act loop.
        before = self._frame
        try:
            refusal = self._act(action, rect)
        except self._gui.FailSafeException as err:
            self._latch.trip("the mouse reached a screen corner (pyautogui's fail-safe)",
                             "fail_safe")
            self._check_kill(cause=err)  # releases held inputs, raises KillSwitch
        except Exception:
            self._release_all()
            raise
        # Ctrl-C or SIGTERM may have cut an X request short: close() releases the inputs
        # over a fresh connection, as this one may never answer again.
        self._release_all()
        self._steps += 1
        if refusal:
            info.update(refused=True, reason=refusal, settled=True)
            self._frame = before
        else:
            frame, settled = (self._settle(before.tobytes()) if self.settle_after_step
                              else (before if self._window.rect() else None, False))
            info["settled"] = settled
            if frame is None:
                return self._end(info, None)
            self._frame = frame
        truncated = self.max_steps is not None and self._steps >= self.max_steps
        self._ended = truncated
        return self._frame.copy(), 0.0, False, truncated, info

    def _end(self, info: dict[str, Any], rect) -> tuple:
        info["window_closed"] = rect is None
        info["window_resized"] = rect is not None
        log.info("desktop episode ends: window %s", "closed" if rect is None else "resized")
        self._ended = True
        self._release_all()
        return self._frame.copy(), 0.0, False, True, info

    def _act(self, action: dict[str, Any], rect) -> str | None:
        """Send one action; return why it was refused, or None once sent."""
        kind = action["kind"]
        kind = ACTION_KINDS[int(kind)] if not isinstance(kind, str) else kind
        if kind not in ACTION_KINDS:
            raise DesktopError(f"unknown action kind {kind!r}; expected one of {ACTION_KINDS}")
        gui = self._gui
        if kind in ("key", "type"):
            text = str(action.get("text", ""))
            self._window.focus()
            if kind == "key":
                if text not in gui.KEYBOARD_KEYS:
                    return f"unknown key name {text!r}"
                gui.press(text)
            else:
                gui.write(text[:MAX_TEXT])
            return None
        points = [action["point"]] + ([action["end"]] if kind == "drag" else [])
        screen = []
        for p in points:
            target = self._to_screen(p, rect)
            if isinstance(target, str):
                return target
            screen.append(target)
        if kind in BUTTONS:
            gui.click(*screen[0], button=BUTTONS[kind])
        elif kind == "double_click":
            gui.doubleClick(*screen[0])
        else:
            (x, y), (x2, y2) = screen
            gui.moveTo(x, y)
            gui.mouseDown()
            for t in np.linspace(0.25, 1.0, 4):  # a few motion events: games track the path
                gui.moveTo(round(x + (x2 - x) * t), round(y + (y2 - y) * t))
            gui.mouseUp()
        return None

    def _to_screen(self, point, rect) -> tuple[int, int] | str:
        x, y = (int(v) for v in np.asarray(point).reshape(-1)[:2])
        left, top, w, h = rect
        if not (0 <= x < w and 0 <= y < h):
            return f"point ({x}, {y}) is outside the {w}x{h} window"
        sx = min(max(left + x, left), left + w - 1)
        sy = min(max(top + y, top), top + h - 1)
        if (sx, sy) in set(self._gui.FAILSAFE_POINTS):
            return f"point ({x}, {y}) is a screen corner (pyautogui's fail-safe point)"
        return sx, sy

    # -- capture and settling -------------------------------------------------------------

    def _capture(self, rect=None) -> np.ndarray:
        left, top, w, h = rect or self._window.rect() or (0, 0, 0, 0)
        if w == 0:
            raise DesktopError(f"window {self._window.id:#x} vanished before it could be captured")
        try:
            shot = self._mss.grab({"left": left, "top": top, "width": w, "height": h})
        except self._screenshot_error as err:
            raise DesktopError(f"cannot capture window {self._window.id:#x} at {left},{top} "
                               f"{w}x{h} (partly off-screen?): {err}") from err
        return cv2.cvtColor(np.frombuffer(shot.bgra, np.uint8).reshape(h, w, 4), cv2.COLOR_BGRA2RGB)

    def _settle(self, before: bytes, idle: float | None = None):
        """Grab until the frame stops changing; (frame or None if the window closed, settled)."""
        start = last_change = time.perf_counter()
        idle = self.settle_idle if idle is None else idle
        previous, changed, frame = before, False, None
        while True:
            self._check_kill()
            rect = self._window.rect()
            if rect is None or rect[2:] != self.size:
                return None, False
            frame = self._capture(rect)
            now = time.perf_counter()
            raw = frame.tobytes()
            if raw != previous:
                previous, changed, last_change = raw, True, now
            if now - last_change >= (self.settle_quiet if changed else idle):
                return frame, True
            if now - start >= self.settle_timeout:
                log.debug("frame still changing after %.2fs", self.settle_timeout)
                return frame, False
            time.sleep(0.004)

    # -- the game process and its window -----------------------------------------------------

    def _format(self, fields: dict[str, Any]) -> list[str] | None:
        if self.command is None:
            return None
        try:
            return [arg.format(**fields) for arg in self.command]
        except KeyError as err:
            raise DesktopError(f"command placeholder {err} has no value: pass it in "
                               "reset(options={'format': {...}})") from err

    def _open(self, args: list[str] | None) -> None:
        self._stop_game()
        self._launched_args, self._pristine = args, True
        if args is None:
            self._window = self._find(lambda: [self.window_id] if self.window_id is not None
                                      else xdotool_search(["--name", self.window_title]))
            return
        log.info("launching %s", args)
        try:
            self._proc = spawn(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
        except OSError as err:
            raise DesktopError(f"cannot launch {args[0]!r}: {err}") from err
        self._finalizer = weakref.finalize(self, stop, self._proc)
        search = (["--name", self.window_title] if self.window_title
                  else ["--pid", str(self._proc.pid)])
        self._window = self._find(lambda: xdotool_search(search))

    def _find(self, search) -> Window:
        """Poll for the window until ``launch_timeout``; the largest visible match wins."""
        deadline = time.monotonic() + self.launch_timeout
        while time.monotonic() < deadline:
            self._check_kill()
            if self._proc is not None and self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace").strip()[-500:]
                raise DesktopError(f"{self.command[0]} exited with code {self._proc.returncode} "
                                   f"before opening a window: {err or 'no error output'}")
            found = [(r[2] * r[3], w) for w in (Window(self._display, i) for i in search())
                     if (r := w.rect()) is not None]
            if found:
                return max(found, key=lambda f: f[0])[1]
            time.sleep(0.05)
        what = self.command or f"title {self.window_title!r} / id {self.window_id}"
        self._stop_game()
        message = f"no visible window for {what} after {self.launch_timeout:g} s"
        display = os.environ.get("DISPLAY")
        if display is not None and display == private_display():
            # Cairn's own Xvfb: the display is right by construction; the window is missing.
            message += f" on the private Xvfb Cairn started ({display})"
            if self.command:
                message += "; does the command open a window?"
        else:  # the user's display: it may be the wrong one
            message += f"; is DISPLAY={display} the right display?"
        raise DesktopError(message)

    def _fit_window(self) -> None:
        """Move/resize a launched window to ``position``/``size`` and wait until it is so."""
        if self.command is None:
            rect = self._window.rect()
            if rect is None or rect[2:] != getattr(self, "size", rect[2:]):
                raise DesktopError(f"attached window {self._window.id:#x} is gone or no longer "
                                   f"{getattr(self, 'size', '')}: attach again")
            return
        want = dict(width=self.size[0], height=self.size[1])
        if self.position is not None:
            want.update(x=self.position[0], y=self.position[1])
        deadline = time.monotonic() + self.launch_timeout
        while (rect := self._window.rect()) is not None and time.monotonic() < deadline:
            self._check_kill()
            if rect[2:] == self.size and (self.position is None or rect[:2] == self.position):
                return
            self._window.configure(**want)
            time.sleep(0.02)
        raise DesktopError(f"window {self._window.id:#x} did not take size {self.size} "
                           f"at {self.position}; got {rect}")

    def _stop_game(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = self._proc = None

    # -- inputs held and the kill switch ------------------------------------------------------

    def _release_all(self, display: Any = None) -> None:
        """Release every key and button the X server reports held (bypasses the fail-safe),
        over ``display`` (default: the env's own connection)."""
        if display is None:
            display = self._display
        if display is None:
            return
        from Xlib import X
        from Xlib.ext import xtest

        pointer = display.screen().root.query_pointer()
        for button, mask in enumerate((X.Button1Mask, X.Button2Mask, X.Button3Mask), start=1):
            if pointer.mask & mask:
                xtest.fake_input(display, X.ButtonRelease, button)
        keymap = display.query_keymap()
        for byte, bits in enumerate(keymap):
            for bit in range(8):
                if bits & (1 << bit):
                    xtest.fake_input(display, X.KeyRelease, byte * 8 + bit)
        display.sync()

    @property
    def _killed(self) -> bool:
        """Whether the kill switch has stopped this env (setting False re-arms it: tests)."""
        return self._latch.reason is not None

    @_killed.setter
    def _killed(self, value: bool) -> None:
        if not value:
            self._latch.reason = self._latch.trigger = None
        else:
            self._latch.trip("stopped by the program", "program")

    def _check_kill(self, cause: BaseException | None = None) -> None:
        """Raise :class:`KillSwitch` once any of its three triggers has fired, and
        :class:`Terminated` after a SIGTERM (again, in case its first raise was lost)."""
        check_terminated()
        if self._latch.reason is None and self.kill_file is not None and self.kill_file.exists():
            self._latch.trip(f"the kill file {self.kill_file} exists (delete it to run again)",
                             "kill_file")
        if self._latch.reason is None:
            return
        if not self._kill_logged:
            log.info("desktop run stopped by the kill switch: %s", self._latch.reason)
            self._kill_logged = True
        self._ended = True
        self._release_all()
        raise KillSwitch(self._latch.reason, self._latch.trigger) from cause
