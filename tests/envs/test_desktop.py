"""DesktopEnv against the real sgt-flip on a private Xvfb: capture, clicks, refusals, exits."""

import os
import shutil
import signal
import time

import numpy as np
import pytest

from cairn.envs.desktop import (
    DesktopEnv,
    DesktopError,
    KillSwitch,
    click,
    drag,
    key,
    type_text,
    virtual_display,
)
from cairn.perception.grid import GridPerceiver

FLIP = "/usr/games/sgt-flip"
# A fixed 3x3 board (from `sgt-flip --generate 1 3x3`): every click flips a cross.
BOARD = "3x3:d074191345d1644c17058,628"

pytestmark = pytest.mark.skipif(
    shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install xvfb)"
)


@pytest.fixture(scope="session")
def display():
    with virtual_display() as name:
        yield name


@pytest.fixture(scope="module")
def env(display):
    env = DesktopEnv([FLIP, BOARD])
    yield env
    env.close()


def held_inputs() -> tuple[int, int]:
    """(mouse buttons, keys) the X server reports held right now."""
    from Xlib import X, display

    d = display.Display()
    try:
        mask = d.screen().root.query_pointer().mask
        buttons = mask & (X.Button1Mask | X.Button2Mask | X.Button3Mask)
        return buttons, sum(bin(b).count("1") for b in d.query_keymap())
    finally:
        d.close()


def cross(row: int, col: int) -> np.ndarray:
    mask = np.zeros((3, 3), bool)
    for r, c in ((row, col), (row - 1, col), (row + 1, col), (row, col - 1), (row, col + 1)):
        if 0 <= r < 3 and 0 <= c < 3:
            mask[r, c] = True
    return mask


def test_observation_is_the_window(env):
    obs, info = env.reset()
    assert env.observation_space.contains(obs)
    assert info["pid"] and info["window_id"]
    assert len(np.unique(obs.reshape(-1, 3), axis=0)) > 3  # a drawn board, not a blank grab


def test_click_flips_the_cross_around_the_cell(env):
    obs, _ = env.reset()
    perceiver = GridPerceiver()
    before = perceiver.parse(obs)
    assert before.tiles.shape == (3, 3)
    for row, col in ((1, 1), (0, 0), (2, 1)):
        x, y = before.centers[row, col]
        after_obs, reward, terminated, truncated, info = env.step(click(x, y))
        assert not (terminated or truncated) and info["settled"] and not info["refused"]
        after = perceiver.parse(after_obs, previous=obs)
        assert (after.changed_cells == cross(row, col)).all(), after.changed_cells
        assert ((after.tiles != before.tiles) == cross(row, col)).all()
        obs, before = after_obs, after
    assert held_inputs() == (0, 0)


def test_clicks_outside_the_window_are_refused(env):
    obs, _ = env.reset()
    w, h = env.size
    for action in (click(-1, 10), click(w, 0), click(5, h + 40), drag(10, 10, w + 5, 10)):
        out, _, _, truncated, info = env.step(action)
        assert info["refused"] and "outside" in info["reason"]
        assert not truncated and (out == obs).all()


def test_keys_reach_the_game_and_are_released(env):
    obs, _ = env.reset()
    out, _, _, _, info = env.step(key("right"))  # Flip shows its keyboard cursor
    assert not info["refused"] and (out != obs).any()
    assert env.step(key("no-such-key"))[4]["refused"]
    env.step(type_text("ab"))
    assert held_inputs() == (0, 0)


def test_press_key_between_steps_reaches_the_game_uncounted(env):
    obs, _ = env.reset()
    steps = env._steps
    env.press_key("right")  # Flip shows its keyboard cursor
    deadline = time.monotonic() + 5
    while not (env.observe() != obs).any() and time.monotonic() < deadline:
        time.sleep(0.02)  # the game redraws when it gets to it
    assert (env.observe() != obs).any()
    assert env._steps == steps
    assert held_inputs() == (0, 0)
    with pytest.raises(DesktopError, match="unknown key name"):
        env.press_key("no-such-key")


def test_inputs_released_when_an_action_fails(env, monkeypatch):
    env.reset()
    gui = env._gui

    def broken_move(*args, **kwargs):
        raise RuntimeError("input device fault")

    monkeypatch.setattr(gui, "moveTo", lambda *a, **k: None)
    monkeypatch.setattr(gui, "mouseUp", broken_move)
    with pytest.raises(RuntimeError, match="input device fault"):
        env.step(drag(60, 100, 100, 100))  # mouseDown happened, mouseUp never did
    monkeypatch.setattr(gui, "press", lambda name: (gui.keyDown("shift"), broken_move()))
    with pytest.raises(RuntimeError):
        env.step(key("a"))
    assert held_inputs() == (0, 0)


def test_window_that_moves_is_followed(env):
    obs, _ = env.reset()
    env._window.configure(x=300, y=200)
    perceiver = GridPerceiver()
    x, y = perceiver.parse(obs).centers[1, 1]
    out, _, _, truncated, info = env.step(click(x, y))
    assert not truncated and (perceiver.parse(out, previous=obs).changed_cells == cross(1, 1)).all()


def test_killed_game_ends_the_episode(display):
    env = DesktopEnv([FLIP, BOARD], size=(192, 254), settle_timeout=5.0)
    try:
        env.reset()
        os.kill(env._proc.pid, signal.SIGKILL)
        start = time.monotonic()
        _, _, terminated, truncated, info = env.step(click(96, 120))
        assert truncated and not terminated and info["window_closed"]
        assert time.monotonic() - start < 2.0
        assert held_inputs() == (0, 0)
        with pytest.raises(DesktopError, match="reset"):
            env.step(click(96, 120))
    finally:
        env.close()


def test_kill_switch_signal_and_file(display, tmp_path):
    stop = tmp_path / "stop"
    env = DesktopEnv([FLIP, BOARD], size=(192, 254), kill_file=stop)
    try:
        env.reset()
        os.kill(os.getpid(), signal.SIGUSR1)
        with pytest.raises(KillSwitch):
            env.step(click(96, 120))
        with pytest.raises(KillSwitch):
            env.reset()
        env._killed = False  # the file alone trips it too
        stop.touch()
        with pytest.raises(KillSwitch):
            env.reset()
        assert held_inputs() == (0, 0)
    finally:
        env.close()


def test_reset_seed_fills_the_board_id(display):
    env = DesktopEnv([FLIP, "3x3#{seed}"], size=(192, 254))
    try:
        first, info = env.reset(seed=7)
        assert info["command"][-1] == "3x3#7"
        again, _ = env.reset(seed=7)
        assert (first == again).all()
    finally:
        env.close()


def test_missing_window_is_an_error_not_a_hang(display):
    start = time.monotonic()
    with pytest.raises(DesktopError, match="no visible window"):
        DesktopEnv(window_title="no such window 4f1c", launch_timeout=0.5)
    with pytest.raises(DesktopError, match="no visible window"):
        DesktopEnv(["sleep", "30"], launch_timeout=0.5)
    with pytest.raises(DesktopError, match="exited"):
        DesktopEnv(["false"])
    assert time.monotonic() - start < 5


def test_registered():
    import gymnasium as gym

    from cairn import envs

    assert envs.DESKTOP_ID in gym.registry
