"""``cairn run`` for board games on the desktop: the env, the episodes, the table."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

from cairn.runtime.config import RunConfig


class BoardRunError(Exception):
    """The game, its window or the goal image cannot be used; the message says why."""


def open_env(config: RunConfig):
    """A DesktopEnv from ``env.kwargs``: ``command`` (with ``{board}``), settle times, size."""
    from cairn.envs.desktop import DesktopError

    kwargs = dict(config.env.kwargs)
    command = kwargs.pop("command", None)
    if not command:
        raise BoardRunError("'env.kwargs.command' is needed: the game to launch, with {board}")
    try:
        if "size" in kwargs:
            from cairn.envs.desktop import DesktopEnv

            return DesktopEnv(command, **dict(kwargs, size=tuple(kwargs["size"])))
        return _sized_env(config, command, kwargs)
    except (DesktopError, TypeError) as err:
        raise BoardRunError(f"cannot open the game: {err}") from None


def _sized_env(config: RunConfig, command, kwargs):
    """The game's own window size, measured on the first board (``{board}`` filled in)."""
    from cairn.envs.desktop import DesktopEnv

    first = config.board.ids[0] if config.board.ids else f"{config.board.params}#{config.seed}"
    probe = DesktopEnv([a.replace("{board}", first) for a in command], **kwargs)
    size = probe.size
    probe.close()
    return DesktopEnv(command, size=size, **kwargs)


def run_boards(config: RunConfig, store, run_dir: Path | None, quiet: bool = False) -> list:
    """Play ``config.episodes`` boards and print the table; returns the results."""
    from cairn.envs.desktop import DesktopError, virtual_display
    from cairn.runtime.board import BoardAgent

    display = virtual_display() if config.board.xvfb else contextlib.nullcontext()
    results = []
    try:
        with display:
            env = open_env(config)
            try:
                agent = BoardAgent(config, store, env, run_dir)
                for i in range(config.episodes):
                    def progress(clicks: int, why: str, i: int = i) -> None:
                        if not quiet:
                            print(f"\repisode {i + 1}/{config.episodes}  click {clicks}  "
                                  f"({why})   ", end="", file=sys.stderr, flush=True)
                    results.append(agent.run_episode(config.seed + i, i, progress))
                    if not quiet:
                        print(file=sys.stderr)
            finally:
                env.close()
    except (DesktopError, ValueError) as err:
        raise BoardRunError(str(err)) from None
    print_board_table(results, run_dir)
    return results


def print_board_table(results, run_dir: Path | None) -> None:
    header = f"{'episode':<24} {'board':<28} {'clicks':>6} {'explore':>7} {'solved':>6} " \
             f"{'seconds':>7}  end"
    print(header)
    print("-" * len(header))
    for r in results:
        board = r.board if len(r.board) <= 28 else r.board[:25] + "..."
        print(f"{r.episode:<24} {board:<28} {r.clicks:>6} {r.explore_clicks:>7} "
              f"{'yes' if r.solved else 'no':>6} {r.seconds:>7.1f}  {r.end}")
    if run_dir is not None:
        print(f"recordings: {run_dir}")


def run_dir_for(config: RunConfig, record: bool) -> Path | None:
    return Path(config.out) / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}" if record \
        else None
