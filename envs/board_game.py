"""Board games on the desktop (Simon Tatham's Flip, Pattern, ...): a game window, the mouse,
and a grid of cells found on the screen.

The config's ``env.kwargs`` hold the command that starts the game (``{board}`` is filled in
with each episode's board id) and the desktop env's settle times; its ``board`` section holds
the boards to play, the grid's size if known and whether to run on a private Xvfb.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import gymnasium as gym

from cairn.envs.game import Game, GameError, Score, package_version, success_rates
from cairn.perception.grid import GridConfig, GridPerceiver

SOLVED = "solved"


class BoardGame(Game):
    """A click-a-cell puzzle in a desktop window; one episode is one board."""

    name = "board"
    family = "board"

    @contextlib.contextmanager
    def open(self) -> Iterator[gym.Env]:
        """The game's env, on a private Xvfb if ``board.xvfb``; everything it started is
        stopped when the block ends, however it ends.

        The stop signals (SIGTERM unwinds like Ctrl-C, SIGUSR1 is the kill switch) are taken
        before the display or the game is started, and one kill-switch latch spans the whole
        run, so a SIGUSR1 while the size probe or the display starts stops the run too. The
        kill switch and SIGTERM pass through as themselves (:class:`KillSwitch`,
        :class:`Terminated`): they are how the run was stopped, not a bad config.
        """
        from cairn.envs.desktop import DesktopError, KillSwitch, virtual_display
        from cairn.envs.x11 import run_latch, stop_signals

        display = virtual_display() if self.options.get("xvfb") else contextlib.nullcontext()
        try:
            with stop_signals(), run_latch(), display:
                env = self.make_env()
                try:
                    self._ensure_goal(env)
                    yield env
                finally:
                    env.close()
        except KillSwitch:
            raise
        except DesktopError as err:
            raise GameError(str(err)) from None

    def make_env(self) -> gym.Env:
        """A DesktopEnv; without ``size``, the game's own window size on the first board."""
        from cairn.envs.desktop import DesktopEnv, DesktopError, KillSwitch

        kwargs = dict(self.env_kwargs)
        command = kwargs.pop("command", None)
        if not command:
            raise GameError("'env.kwargs.command' is needed: the game to launch, with {board}")
        try:
            if "size" in kwargs:
                return DesktopEnv(command, **dict(kwargs, size=tuple(kwargs["size"])))
            first = self.board_id(int(self.options.get("seed", 0)), 0)
            probe = DesktopEnv([a.replace("{board}", first) for a in command], **kwargs)
            try:
                size = probe.size
            finally:
                probe.close()
            return DesktopEnv(command, size=size, **kwargs)
        except TypeError as err:
            raise GameError(f"env.kwargs: {err}") from None
        except KillSwitch:
            raise
        except DesktopError as err:
            raise GameError(f"cannot open the game: {err}") from None

    def _ensure_goal(self, env: gym.Env) -> None:
        """A goal picture the config names but nothing made yet: the game's own Solve menu
        makes it, for the first board (a task definition, as a person would give it)."""
        goal = self.options.get("goal") or {}
        if goal.get("kind") == "image" and goal.get("image"):
            from cairn.envs.puzzle_goal import ensure_goal_picture

            ensure_goal_picture(goal["image"], env, self.board_id(
                int(self.options.get("seed", 0)), 0))

    def perceiver(self, env: gym.Env) -> GridPerceiver:
        return GridPerceiver(GridConfig(rows=self.options.get("rows"),
                                        cols=self.options.get("cols")))

    def board_id(self, seed: int, index: int) -> str:
        ids = self.options.get("ids") or []
        return ids[index % len(ids)] if ids else f"{self.options.get('params', '3x3')}#{seed}"

    def reset_options(self, seed: int, index: int) -> dict[str, Any]:
        return {"format": {"board": self.board_id(seed, index)}}

    def reached(self, info: dict[str, Any]) -> set[str]:
        # The desktop env knows nothing of the board; the loop reports reaching the goal it
        # sees on the screen under "goal_reached".
        return {SOLVED} if info.get("goal_reached") else set()

    def score(self, reached: Sequence[set[str]]) -> Score:
        rates = success_rates(reached, [SOLVED])
        return Score("solved %", rates[SOLVED], rates)

    def versions(self) -> dict[str, str]:
        return {"mss": package_version("mss") or "unknown",
                "pyautogui": package_version("pyautogui") or "unknown"}
