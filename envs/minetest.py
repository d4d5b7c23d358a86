"""Minetest (Minetest Game) as a Gymnasium env: a first-person 3D world seen as pixels.

``reset(seed=s)`` starts a fresh Minetest on a fresh world whose map seed is ``s`` (the same
seed gives the same map and spawn), in a window of ``size`` on the env's own private Xvfb,
and returns the first frame once the player stands in the world. Each episode is a new game
process and a new world; the previous ones are stopped and removed.

Actions are :data:`ACTIONS`, by index or name. Movement keys are held for ``hold_ms`` (XTest
key down, wait, key up); turning and looking are relative mouse motion of ``turn_deg`` /
``look_deg`` degrees; ``dig`` holds the left button for ``dig_ms`` and keeps holding it
through consecutive ``dig`` steps (Minetest restarts a dig whose button is released, and a
trunk takes seconds by hand); ``place`` clicks the right button. Input goes only to the
game's own display. Every key and button is released after each step (a held ``dig`` at the
next other action), at episode end, on error, on ``close`` and on the kill switch.

The observation is the window, RGB uint8 ``(h, w, 3)``. Reward is 0. ``terminated`` is the
player's death, ``truncated`` the step limit (or the game exiting). The world mod
``cairn_truth`` writes the player's true state every server step; it is returned under
``info["privileged"]`` (see ``docs/minetest.md``) to *measure* perception and score tasks,
never to act on. After each action the env waits for a truth record written at least
``truth_delay`` s after the inputs were released, then captures, so frame and truth agree.

Processes, signals and the kill switch are those of the desktop env (``cairn.envs.x11``):
the game and the Xvfb die with this process however it ends (SIGKILL included), SIGTERM
unwinds like Ctrl-C, SIGUSR1 or ``kill_file`` stops the run with :class:`KillSwitch`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from cairn.envs import minetest_world as mw
from cairn.envs.desktop import KillSwitch
from cairn.envs.game import Game, GameError, Score, package_version, success_rates
from cairn.envs.minetest_process import GameExited, GameProcess
from cairn.envs.x11 import (
    DesktopError,
    KillLatch,
    check_terminated,
    hold_stop_signals,
    listen,
    release_stop_signals,
    unlisten,
)

__all__ = ["ACTIONS", "DesktopError", "KillSwitch", "MinetestEnv", "MinetestGame"]

log = logging.getLogger(__name__)

ACTIONS: tuple[str, ...] = ("noop", "forward", "back", "left", "right", "jump", "turn_left",
                            "turn_right", "look_up", "look_down", "dig", "place")
"""New actions go at the end, so an action's index stays what it was."""
KEYS = {"forward": "w", "back": "s", "left": "a", "right": "d", "jump": "space"}
BUTTONS = {"dig": 1, "place": 3}
LOOKS = {"turn_left": (-1, 0), "turn_right": (1, 0), "look_up": (0, -1), "look_down": (0, 1)}
"""Mouse motion direction per look action (screen x right, y down)."""
MAX_MOTION = 120
"""Pixels per motion event: the pointer sits at the window's centre and must not reach the
screen's edge (where X clamps it and the turn comes out short)."""
TRUTH_TIMEOUT = 5.0
PLACE_MS = 120.0
"""How long ``place`` holds its button: several frames of a busy game, under the game's
0.25 s before a held button places again."""


def find_binary(binary: str | None = None) -> str:
    """The Minetest program: ``binary`` if given, else ``minetest`` on PATH or in /usr/games."""
    name = binary or "minetest"
    found = shutil.which(name) or shutil.which(name, path="/usr/games")
    if not found:
        raise DesktopError(f"Minetest not found ({name!r} is not on PATH nor in /usr/games): "
                           "apt-get install minetest minetest-data")
    return found


class MinetestEnv(gym.Env[np.ndarray, int]):
    """One Minetest game per episode; see the module docstring."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        size: tuple[int, int] = (640, 360),
        *,
        hold_ms: float = 150,
        dig_ms: float = 500,
        turn_deg: float = 15,
        look_deg: float = 15,
        truth_delay: float = 0.1,
        max_steps: int | None = 1000,
        launch_timeout: float = 60.0,
        world_dir: str | os.PathLike | None = None,
        keep_worlds: bool = False,
        world_mods: Sequence[str | os.PathLike] = (),
        settings: dict[str, Any] | None = None,
        binary: str | None = None,
        kill_file: str | os.PathLike | None = None,
        task: dict[str, list[str]] | None = None,
        render_mode: str | None = "rgb_array",
    ):
        self.size = (int(size[0]), int(size[1]))
        self.hold_ms, self.dig_ms = float(hold_ms), float(dig_ms)
        self.turn_deg, self.look_deg = float(turn_deg), float(look_deg)
        self.truth_delay, self.max_steps = float(truth_delay), max_steps
        self.keep_worlds = keep_worlds
        self.settings = {**mw.SETTINGS, **(settings or {})}
        self.render_mode = render_mode
        self.task = dict(task or {})
        """Task item -> node or item names (or ``group:NAME``): the env's reward is 1 the first
        time in an episode the player digs or holds one of an item's."""
        self._rewarded: set[str] = set()
        kill_file = kill_file or os.environ.get("CAIRN_DESKTOP_KILL_FILE")
        self.kill_file = Path(kill_file) if kill_file else None
        w, h = self.size
        self.observation_space = gym.spaces.Box(0, 255, (h, w, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(len(ACTIONS))
        self.action_names = ACTIONS
        self.run_dir: Path | None = None
        self._game: GameProcess | None = None
        self._closed, self._ended, self._steps, self._digging = False, True, 0, False
        self._frame: np.ndarray | None = None
        self._truth: mw.Truth | None = None
        self.last_input_at = 0.0
        """``time.perf_counter()`` when the last step's first input reached the X server."""
        self._latch = KillLatch()
        hold_stop_signals()  # from here on close() undoes whatever goes wrong
        listen(self._latch)
        try:
            self._check_kill()
            mods = [Path(m) for m in world_mods]
            for mod in mods:
                if not (mod / "init.lua").is_file():
                    raise DesktopError(f"world mod {mod} has no init.lua: give a mod folder")
            binary = find_binary(binary)
            self.run_dir = mw.new_run_folder(world_dir)
            self._game = GameProcess(binary, self.run_dir, self.size, self.settings, mods,
                                     float(launch_timeout), self._check_kill)
        except BaseException:
            with contextlib.suppress(Exception):
                self.close()
            raise

    # -- lifecycle ----------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if self._closed:
            raise DesktopError("the env is closed: make a new one")
        self._check_kill()
        self._release_all()
        seed = int(self.np_random.integers(2**31 - 1)) if seed is None else int(seed)
        self._game.stop_game(self.keep_worlds)
        self._truth = self._game.launch(seed)
        self._frame = self._game.capture()
        self._ended, self._steps = False, 0
        self._rewarded = task_reached(self._truth.data, self.task)  # held from the start
        return self._frame.copy(), {"privileged": self._truth.data, "seed": seed,
                                    "pid": self._game.proc.pid}

    def close(self) -> None:
        """Release held inputs, stop the game and the display, remove the run folder (unless
        ``keep_worlds``), give the signal handlers back; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._game is not None:
                self._game.release_on_fresh_connection()
        finally:
            if self._game is not None:
                self._game.close(self.keep_worlds)
            if self.run_dir is not None and not self.keep_worlds:
                shutil.rmtree(self.run_dir, ignore_errors=True)
            unlisten(self._latch)
            release_stop_signals()

    def render(self) -> np.ndarray | None:
        return None if self._frame is None else self._frame.copy()

    def observe(self) -> np.ndarray:
        """Capture the window now without acting."""
        if self._ended and self._frame is None:
            raise DesktopError("no game yet: call reset() first")
        self._frame = self._game.capture()
        return self._frame.copy()

    def truth(self) -> dict[str, Any] | None:
        """The newest truth record now (privileged: for measuring only)."""
        world = self._game.world if self._game else None
        truth = mw.read_truth(world) if world else None
        return None if truth is None else truth.data

    @property
    def display_name(self) -> str:
        """The private display the game runs on (e.g. to watch it with a VNC server)."""
        return self._game.xvfb.name

    # -- stepping -----------------------------------------------------------------------------

    def step(self, action: int | str):
        if self._ended:
            raise DesktopError("the episode has ended (or never started): call reset() first")
        name = self._action_name(action)
        self._check_kill()
        if self._game.exited():
            return self._end_game_exited()
        try:
            self._act(name)
        except BaseException:
            self._release_all()
            raise
        released = mw.truth_clock()
        self._steps += 1
        try:
            truth = self._game.wait_truth(released + self.truth_delay, TRUTH_TIMEOUT)
        except GameExited:
            return self._end_game_exited()
        if truth is None:
            raise DesktopError(f"Minetest wrote no truth for {TRUTH_TIMEOUT:g} s after a step "
                               f"(is the cairn_truth mod loaded?): {mw.log_tail(self._game.log)}")
        self._truth = truth
        self._frame = self._game.capture()
        terminated = truth.data["hp"] <= 0
        truncated = not terminated and self.max_steps is not None and \
            self._steps >= self.max_steps
        self._ended = terminated or truncated
        if self._ended:
            self._release_all()
        info = {"privileged": truth.data, "action": name, "game_exited": False}
        reached = task_reached(truth.data, self.task) - self._rewarded
        self._rewarded |= reached
        return self._frame.copy(), float(len(reached)), terminated, truncated, info

    def _action_name(self, action: int | str) -> str:
        if isinstance(action, str):
            if action not in ACTIONS:
                raise DesktopError(f"unknown action {action!r}; expected one of {ACTIONS}")
            return action
        index = int(action)
        if not 0 <= index < len(ACTIONS):
            raise DesktopError(f"action {index} is out of range 0..{len(ACTIONS) - 1}")
        return ACTIONS[index]

    def _end_game_exited(self):
        log.info("minetest exited during the episode: %s", mw.log_tail(self._game.log))
        self._ended = True
        self._release_all()
        info = {"privileged": self._truth.data if self._truth else {}, "game_exited": True}
        return self._frame.copy(), 0.0, False, True, info

    def _act(self, name: str) -> None:
        game, dig = self._game, BUTTONS["dig"]
        if self._digging and name != "dig":
            game.button(dig, False)
            self._digging = False
        if name in KEYS:
            game.key(KEYS[name], True)
            self._sent()
            self._hold(self.hold_ms)
            game.key(KEYS[name], False)
        elif name in LOOKS:
            self._look(*LOOKS[name])
        elif name == "dig":
            if not self._digging:
                game.button(dig, True)
                self._digging = True
            self._sent()
            self._hold(self.dig_ms)
        elif name == "place":  # pressed for a few client frames, so a busy game sees it
            game.button(BUTTONS["place"], True)
            self._sent()
            self._hold(min(self.hold_ms, PLACE_MS))
            game.button(BUTTONS["place"], False)
            self._hold(max(self.hold_ms - PLACE_MS, 0))
        else:
            self._sent()
            self._hold(self.hold_ms)
        game.release_all(keep_button=dig if self._digging else None)

    def _look(self, sx: int, sy: int) -> None:
        """Relative pointer motion of the configured angle, in events small enough that the
        pointer (which Minetest warps back to the centre each frame) never hits an edge."""
        degrees = self.turn_deg if sx else self.look_deg
        pixels = round(degrees / float(self.settings["mouse_sensitivity"]))
        frame_s = 1.5 / max(float(self.settings["fps_max"]), 1.0)
        start = time.monotonic()
        for i, at in enumerate(range(0, pixels, MAX_MOTION)):
            chunk = min(MAX_MOTION, pixels - at)
            if i:
                time.sleep(frame_s)  # let a frame warp the pointer back to the centre
            self._game.motion(sx * chunk, sy * chunk)
            if not i:
                self._sent()
        self._hold(self.hold_ms - (time.monotonic() - start) * 1e3)

    def _sent(self) -> None:
        self._game.display.sync()
        self.last_input_at = time.perf_counter()

    def _hold(self, ms: float) -> None:
        """Keep the inputs down ``ms``, checking the kill switch every 50 ms."""
        self._game.display.flush()
        end = time.monotonic() + max(ms, 0.0) / 1e3
        while (left := end - time.monotonic()) > 0:
            self._check_kill()
            time.sleep(min(left, 0.05))

    def _release_all(self) -> None:
        self._digging = False
        if self._game is not None and self._game.display is not None:
            self._game.release_all()

    def _check_kill(self) -> None:
        check_terminated()
        if self._latch.reason is None and self.kill_file is not None and self.kill_file.exists():
            self._latch.trip(f"the kill file {self.kill_file} exists (delete it to run again)",
                             "kill_file")
        if self._latch.reason is None:
            return
        self._ended = True
        with contextlib.suppress(Exception):
            self._release_all()
        raise KillSwitch(self._latch.reason, self._latch.trigger)


# -- the game adapter ---------------------------------------------------------------------------

TASKS: dict[str, dict[str, list[str]]] = {
    "log": {"log": ["group:tree"]},
    "dirt": {"dirt": ["default:dirt"]},
    "sapling": {"sapling": ["group:sapling"]},
}
"""Named tasks, like MineDojo's programmatic harvest tasks: item -> the node or item names
(or ``group:NAME``) that count as reaching it, when dug or held. ``env.kwargs.task`` is one
of these names or such a mapping; ``log`` by default."""


class MinetestGame(Game):
    """Minetest Game in first person; an episode reaches a task item when the player digs or
    holds a matching node (read from the truth: measuring only)."""

    name = "minetest"
    family = "first_person"

    def __init__(self, env_kwargs: dict[str, Any], options: dict[str, Any] | None = None):
        super().__init__(env_kwargs, options)
        task = self.env_kwargs.pop("task", None) or TASKS["log"]
        if isinstance(task, str) and task in TASKS:
            task = TASKS[task]
        if not isinstance(task, dict) or not all(isinstance(v, list) for v in task.values()):
            raise GameError(f"'env.kwargs.task' must be one of {', '.join(TASKS)} or map each "
                            "task item to a list of node or item names (or group:NAME), e.g. "
                            "{log: [group:tree]}")
        self.task = {str(k): [str(p) for p in v] for k, v in task.items()}

    @contextlib.contextmanager
    def open(self) -> Iterator[gym.Env]:
        """The env; the stop signals and one kill-switch latch span the run, as for desktop
        boards. The kill switch and SIGTERM pass through as themselves."""
        from cairn.envs.x11 import run_latch, stop_signals

        try:
            with stop_signals(), run_latch():
                env = self.make_env()
                try:
                    yield env
                finally:
                    env.close()
        except KillSwitch:
            raise
        except DesktopError as err:
            raise GameError(str(err)) from None

    def make_env(self) -> MinetestEnv:
        kwargs = dict(self.env_kwargs)
        targets = sorted({p for patterns in self.task.values() for p in patterns})
        kwargs["settings"] = {"cairn_truth_near": ",".join(targets),
                              **(kwargs.get("settings") or {})}
        kwargs["task"] = self.task
        if "size" in kwargs:
            kwargs["size"] = tuple(kwargs["size"])
        try:
            return MinetestEnv(**kwargs)
        except TypeError as err:
            raise GameError(f"env.kwargs: {err}") from None
        except KillSwitch:
            raise
        except DesktopError as err:
            raise GameError(f"cannot open the game: {err}") from None

    def perceiver(self, env: gym.Env) -> Any:
        """The first-person perceiver (``cairn.perception.minetest_hud``): look kinds
        ``look-<k>``, counters ``item-<k>``, ``health``, ``breath``; it reads pixels only."""
        from cairn.perception.minetest_hud import load_perceiver

        size = getattr(env, "size", None) or tuple(self.env_kwargs.get("size", (640, 360)))
        try:
            return load_perceiver(tuple(size))
        except ValueError as err:
            raise GameError(str(err)) from None

    def reached(self, info: dict[str, Any]) -> set[str]:
        return task_reached(info.get("privileged") or {}, self.task)

    def items(self) -> tuple[str, ...]:
        return tuple(self.task)

    def score(self, reached: Sequence[set[str]]) -> Score:
        rates = success_rates(reached, self.items())
        return Score("task items reached %", sum(rates.values()) / max(len(rates), 1), rates)

    def versions(self) -> dict[str, str]:
        try:
            out = subprocess.run([find_binary(self.env_kwargs.get("binary")), "--version"],
                                 capture_output=True, text=True, timeout=10).stdout
            version = out.splitlines()[0] if out else "unknown"
        except (DesktopError, OSError, subprocess.TimeoutExpired):
            version = "not installed"
        return {"minetest": version, "mss": package_version("mss") or "unknown",
                "python-xlib": package_version("python-xlib") or "unknown"}


def task_reached(truth: dict[str, Any], task: dict[str, list[str]]) -> set[str]:
    """The task items the truth shows dug or held (for the reward and the score only)."""
    held = [(s["name"], s.get("groups", [])) for s in truth.get("inventory", [])]
    names = {name for name, _ in held} | set(truth.get("dug", {}))
    groups = {g for _, gs in held for g in gs} | set(truth.get("dug_groups", {}))
    return {item for item, patterns in task.items()
            if any(_matches(p, names, groups) for p in patterns)}


def _matches(pattern: str, names: set[str], groups: set[str]) -> bool:
    if pattern.startswith("group:"):
        return pattern[len("group:"):] in groups
    return pattern in names
