"""The processes behind a Minetest env: its private Xvfb and one game process per episode.

Both are started with ``cairn.envs.x11.spawn``, so they die with the Python process however
it ends (SIGKILL included), and are stopped by process group. The Xvfb is the env's own (of
exactly the window's size, with its own cookie) and is never made the process's
``$DISPLAY``: input sent there reaches the game only, and several envs can live side by side.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cairn.envs import minetest_world as mw
from cairn.envs.x11 import DesktopError, Window, spawn, start_xvfb, stop

log = logging.getLogger(__name__)

PLAYER = "cairn"
STILL_S, FRAME_POLL_S, SETTLED_DIFF, WARMUP_MAX_S = 0.5, 0.25, 1.0, 8.0
"""A launch waits for the player still ``STILL_S``, then for two frames ``FRAME_POLL_S``
apart that differ by at most ``SETTLED_DIFF`` (mean absolute, 0-255), or ``WARMUP_MAX_S``:
the sky fades in over about three seconds after the player lands."""


class GameExited(DesktopError):
    """The game process ended while the env waited on it."""


class _PortTaken(Exception):
    """The local server could not bind its UDP port (taken between choosing and binding)."""


class GameProcess:
    """The env's display (Xvfb, an Xlib connection for input, mss for capture) and the game
    of the current episode. ``tick`` is called while waiting (the env's kill-switch check)."""

    def __init__(self, binary: str, run_dir: Path, size: tuple[int, int],
                 settings: dict[str, Any], world_mods: Sequence[Path], launch_timeout: float,
                 tick: Callable[[], None]):
        self.binary, self.run_dir, self.size = binary, run_dir, size
        self.settings, self.world_mods = settings, list(world_mods)
        self.launch_timeout, self.tick = launch_timeout, tick
        self.log = run_dir / "minetest.log"
        self.proc: subprocess.Popen | None = None
        self.world: Path | None = None
        self.window: Window | None = None
        self.region: dict[str, int] | None = None
        self.clock_offset = 0.0
        """``mw.truth_clock()`` minus the mod's stamps, measured at launch (about 0)."""
        self.display = self.mss = None
        self._stop_ref: weakref.finalize | None = None
        self._episode = 0
        try:
            import mss
            from Xlib import display as xdisplay
        except ImportError as err:
            raise DesktopError(f"{err}; install the extra: pip install 'cairn[desktop]'") \
                from err
        self._xdisplay = xdisplay
        self.xvfb = start_xvfb(size)
        try:
            with self.xvfb.client_env():
                self.display = xdisplay.Display(self.xvfb.name)
                self.mss = getattr(mss, "MSS", mss.mss)(display=self.xvfb.name)
        except BaseException:
            self.close(keep_worlds=True)
            raise

    def close(self, keep_worlds: bool) -> None:
        self.stop_game(keep_worlds)
        if self.mss is not None:
            self.mss.close()
            self.mss = None
        if self.display is not None:
            self.display.display.close_internal("client")  # no flush: it may be stuck
            self.display = None
        self.xvfb.stop()

    # -- one episode's game ---------------------------------------------------------------------

    def launch(self, seed: int) -> mw.Truth:
        """A new world for ``seed`` and a game in it; returns the first settled truth."""
        self._episode += 1
        self.world = mw.make_world(self.run_dir / f"world-{self._episode:04d}-seed{seed}",
                                   self.world_mods)
        home = self.run_dir / "home"
        home.mkdir(exist_ok=True)
        env = {**os.environ, "DISPLAY": self.xvfb.name, "XAUTHORITY": str(self.xvfb.auth),
               "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
        for attempt in range(2):
            port = mw.free_udp_port()
            conf = mw.write_config(self.run_dir / "minetest.conf", {
                **self.settings, "screen_w": self.size[0], "screen_h": self.size[1],
                "fixed_map_seed": seed, "port": port})
            # --go serves on 30000 whatever the config's port says: --port it is.
            args = [self.binary, "--go", "--world", str(self.world), "--gameid",
                    "minetest_game", "--config", str(conf), "--name", PLAYER, "--password", "",
                    "--port", str(port), "--logfile", str(self.log)]
            self.log.unlink(missing_ok=True)
            log.info("launching %s", args)
            with open(self.run_dir / "minetest.out", "wb") as out:  # a pipe could fill up
                try:
                    self.proc = spawn(args, env=env, cwd=self.run_dir,
                                      stdin=subprocess.DEVNULL, stdout=out,
                                      stderr=subprocess.STDOUT)
                except OSError as err:
                    raise DesktopError(f"cannot start {self.binary}: {err}") from None
            self._stop_ref = weakref.finalize(self, stop, self.proc)
            try:
                return self._wait_in_world()
            except _PortTaken:
                self.stop_game(keep_worlds=True)
                if attempt:
                    raise DesktopError("Minetest could not bind a UDP port on 127.0.0.1: "
                                       f"{mw.log_tail(self.log)}") from None
        raise AssertionError("unreachable")

    def stop_game(self, keep_worlds: bool) -> None:
        """Stop the episode's game and remove its world (unless ``keep_worlds``)."""
        if self._stop_ref is not None:
            self._stop_ref()
            self._stop_ref = None
        self.window = self.region = None
        if self.world is not None and not keep_worlds:
            shutil.rmtree(self.world, ignore_errors=True)

    def exited(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def check_alive(self) -> None:
        self.tick()
        if self.exited():
            raise GameExited(f"Minetest exited: {mw.log_tail(self.log)}")

    def wait_truth(self, after: float, timeout: float) -> mw.Truth | None:
        """The first truth record stamped at or after ``after`` (``mw.truth_clock``). The
        stamps are matched to that clock at launch (``clock_offset``: the youngest record
        seen), so a game whose clock is another one is still waited for correctly."""
        def fresh():
            truth = mw.read_truth(self.world)
            if truth is None or truth.data["time"] + self.clock_offset < after:
                return None
            return truth

        return mw.wait_for(fresh, timeout, poll=0.005, tick=self.check_alive)

    def capture(self) -> np.ndarray:
        """The game window, RGB uint8. Its place is measured once per game: with no window
        manager on the display nothing moves or resizes it."""
        if self.region is None:
            raise DesktopError("no Minetest window: call reset() first")
        shot = self.mss.grab(self.region)
        w, h = self.size
        return cv2.cvtColor(np.frombuffer(shot.bgra, np.uint8).reshape(h, w, 4),
                            cv2.COLOR_BGRA2RGB)

    def _wait_in_world(self) -> mw.Truth:
        """Wait for the window, for the player standing still in the world (the first
        records show it falling onto its spawn while the map loads), then for the picture to
        settle (see ``STILL_S``)."""
        deadline = time.monotonic() + self.launch_timeout
        try:
            self.window = mw.wait_for(self._find_window, self.launch_timeout,
                                      tick=self._check_started)
            if self.window is None:
                raise self._launch_error(f"no {self.size[0]}x{self.size[1]} window")
            self.window.focus()  # no window manager: keys reach the focused window only
            left, top, w, h = self.window.rect()
            self.region = {"left": left, "top": top, "width": w, "height": h}
            last = still_since = frame = None
            ages: dict[int, float] = {}
            while time.monotonic() < deadline:
                self._check_started()
                truth = mw.read_truth(self.world)
                now = time.monotonic()
                if truth is not None:
                    age = mw.truth_clock() - truth.data["time"]
                    ages[truth.data["step"]] = min(age, ages.get(truth.data["step"], age))
                if truth is not None and truth.data["pos"] != last:
                    last, still_since, frame = truth.data["pos"], now, None
                elif truth is not None and now - still_since >= STILL_S:
                    before, frame = frame, self.capture().astype(np.int16)
                    if before is not None and (np.abs(frame - before).mean() <= SETTLED_DIFF
                                               or now - still_since >= WARMUP_MAX_S):
                        self.clock_offset = min(ages.values())
                        return truth
                time.sleep(FRAME_POLL_S if frame is not None else 0.05)
        except GameExited:
            raise self._launch_error("the game exited") from None
        raise self._launch_error("the player did not appear in the world")

    def _check_started(self) -> None:
        self.check_alive()
        tail = mw.log_tail(self.log, 3)
        if "Failed to bind" in tail:
            raise _PortTaken
        if "ERROR[Main]" in tail:
            raise self._launch_error("it logged an error")

    def _launch_error(self, what: str) -> DesktopError:
        code = self.proc.poll()
        tail = mw.log_tail(self.log)
        self.stop_game(keep_worlds=True)
        exited = f" (exit code {code})" if code is not None else ""
        return DesktopError(f"Minetest did not start within {self.launch_timeout:g} s: {what}"
                            f"{exited}; its log: {tail}")

    def _find_window(self) -> Window | None:
        for child in self.display.screen().root.query_tree().children:
            window = Window(self.display, child.id)
            rect = window.rect()
            if rect is not None and rect[2:] == self.size:
                return window
        return None

    # -- input: XTest on the env's display ------------------------------------------------------

    def key(self, keysym: str, down: bool) -> None:
        from Xlib import XK, X
        from Xlib.ext import xtest

        code = self.display.keysym_to_keycode(XK.string_to_keysym(keysym))
        xtest.fake_input(self.display, X.KeyPress if down else X.KeyRelease, code)

    def button(self, number: int, down: bool) -> None:
        from Xlib import X
        from Xlib.ext import xtest

        xtest.fake_input(self.display, X.ButtonPress if down else X.ButtonRelease, number)

    def motion(self, dx: int, dy: int) -> None:
        """Relative pointer motion (Minetest turns the view by it and re-centres the pointer)."""
        from Xlib import X
        from Xlib.ext import xtest

        xtest.fake_input(self.display, X.MotionNotify, detail=True, x=dx, y=dy)

    def release_all(self, keep_button: int | None = None, display: Any = None) -> None:
        """Release every key and button the X server reports held (but ``keep_button``), over
        ``display`` (default: the env's connection)."""
        from Xlib import X
        from Xlib.ext import xtest

        d = display or self.display
        pointer = d.screen().root.query_pointer()
        masks = (X.Button1Mask, X.Button2Mask, X.Button3Mask)
        for button, mask in enumerate(masks, start=1):
            if pointer.mask & mask and button != keep_button:
                xtest.fake_input(d, X.ButtonRelease, button)
        for byte, bits in enumerate(d.query_keymap()):
            for bit in range(8):
                if bits & (1 << bit):
                    xtest.fake_input(d, X.KeyRelease, byte * 8 + bit)
        d.sync()

    def release_on_fresh_connection(self) -> None:
        """``close`` may run because Ctrl-C cut an X request short, leaving the env's own
        connection waiting forever for a reply: release over a new one."""
        try:
            with self.xvfb.client_env():
                fresh = self._xdisplay.Display(self.xvfb.name)
        except Exception as err:  # the server is gone: nothing is held any more
            log.debug("no X connection to release inputs on: %s", err)
            return
        try:
            self.release_all(display=fresh)
        except Exception as err:
            log.debug("the X server went away while inputs were released: %s", err)
        finally:
            with contextlib.suppress(Exception):
                fresh.close()
