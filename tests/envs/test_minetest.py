"""MinetestEnv against the real Minetest 5.6.1 on its own private Xvfb: frames, the truth the
world mod writes, input (walk, turn, look, dig), seeds, death, and teardown however a run
ends. One game serves most tests (a start costs seconds on two cores), so they run in order
on one episode: what one test did is where the next one starts.

The world is the one configs/minetest.yaml makes (every biome a forest), seed 2: the player
spawns on open ground, walks forward freely and then faces a trunk.
"""

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cairn.envs import minetest_world as mw
from cairn.envs.game import GameError, make_game
from cairn.envs.minetest import ACTIONS, DesktopError, KillSwitch, MinetestEnv, find_binary
from cairn.runtime.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SEED = 2

pytestmark = pytest.mark.skipif(
    shutil.which("Xvfb") is None or shutil.which("minetest", path="/usr/games:" +
                                                 os.environ.get("PATH", "")) is None,
    reason="needs Xvfb and Minetest (apt-get install xvfb minetest minetest-data)")

DEATH_MOD = """
-- Test only: the player dies on looking steeply up (so a test can make it die on purpose).
minetest.register_globalstep(function()
    for _, player in ipairs(minetest.get_connected_players()) do
        if player:get_look_vertical() < -1.2 and player:get_hp() > 0 then
            player:set_hp(0)
        end
    end
end)
"""


@pytest.fixture(scope="module")
def config():
    return load_config(ROOT / "configs" / "minetest.yaml")


@pytest.fixture(scope="module")
def game(config, tmp_path_factory):
    mod = tmp_path_factory.mktemp("mods") / "cairn_test_death"
    mod.mkdir()
    (mod / "init.lua").write_text(DEATH_MOD)
    (mod / "mod.conf").write_text("name = cairn_test_death\n")
    return make_game("minetest", {**config.env.kwargs, "world_mods": [str(mod)]})


@pytest.fixture(scope="module")
def env(game):
    env = game.make_env()
    yield env
    env.close()


@pytest.fixture(scope="module")
def first(env):
    """The reset of the module's episode: (frame, info)."""
    return env.reset(seed=SEED)


def held(env) -> tuple[int, int]:
    """(mouse buttons, keys) the game's X server reports held right now."""
    d = env._game.display
    buttons = d.screen().root.query_pointer().mask & (0x100 | 0x200 | 0x400)
    return buttons, sum(bin(b).count("1") for b in d.query_keymap())


def step(env, name: str, times: int = 1) -> dict:
    for _ in range(times):
        _, _, terminated, truncated, info = env.step(name)
        assert not (terminated or truncated)
    return info["privileged"]


def angle(a: float, b: float) -> float:
    """b - a in degrees, wrapped to (-180, 180]."""
    return (math.degrees(b - a) + 180) % 360 - 180


def test_reset_shows_the_world_and_the_truth_has_the_player(env, first):
    frame, info = first
    assert env.observation_space.contains(frame) and frame.shape == (360, 640, 3)
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 500  # a rendered scene
    assert frame.std() > 15
    truth = info["privileged"]
    assert truth["name"] == "cairn" and truth["hp"] == 20 and truth["inventory"] == []
    assert truth["pos"] is not None and truth["pitch"] == 0.0
    assert info["seed"] == SEED and info["pid"] == env._game.proc.pid
    assert set(info) == {"privileged", "seed", "pid"}  # the truth is under "privileged" only


def test_forward_walks_along_the_look_direction(env, first):
    start = env.truth()
    truth = step(env, "forward", 4)
    dx, dz = truth["pos"][0] - start["pos"][0], truth["pos"][2] - start["pos"][2]
    lx, _, lz = start["look_dir"]
    along, across = dx * lx + dz * lz, abs(dx * lz - dz * lx)
    # About 0.5 node a step at 60 frames/s; fewer frames (a busy machine) see the key held
    # for less of the step, so only the direction and a clear advance are asserted.
    assert along > 0.5 and across < 0.1 * along, (start["pos"], truth["pos"])
    assert held(env) == (0, 0)


def test_turning_and_looking_change_yaw_and_pitch_by_the_configured_angle(env, first):
    start = env.truth()
    left = step(env, "turn_left", 2)
    assert angle(start["yaw"], left["yaw"]) == pytest.approx(30, abs=1)  # yaw: counter-clockwise
    back = step(env, "turn_right", 2)
    assert angle(start["yaw"], back["yaw"]) == pytest.approx(0, abs=1)
    down = step(env, "look_down")
    assert math.degrees(down["pitch"] - start["pitch"]) == pytest.approx(15, abs=1)
    assert step(env, "look_up")["pitch"] == pytest.approx(start["pitch"], abs=0.02)
    assert back["pos"] == pytest.approx(start["pos"], abs=0.2)  # turning is no walk


def test_dig_removes_the_node_looked_at_and_place_puts_it_back(env, first):
    truth = env.truth()
    for _ in range(8):  # down until the crosshair is on the ground, not a plant on it, nor
        target = truth["pointed"]  # the node stood on (the player would fall into its hole)
        if target is not None and target["under"][1] < truth["pos"][1]:
            if not _stands_on(truth, target["under"]):
                break
            truth = step(env, "back")
        else:
            truth = step(env, "look_down")
    target = truth["pointed"]
    assert target is not None and target["under"][1] < truth["pos"][1], target
    digs = 0
    while not truth["dug"] and digs < 8:
        if digs:
            assert held(env)[0]  # the button stays down through consecutive digs
        _, _, _, _, info = env.step("dig")
        truth, digs = info["privileged"], digs + 1
    assert truth["dug"] == {target["name"]: 1}, truth["dug"]
    assert sum(s["count"] for s in truth["inventory"]) == 1
    assert truth["pointed"] is None or truth["pointed"]["under"] != target["under"]
    assert digs >= 2  # the ground takes 0.7 s by hand, a dig step 0.5 s: held across steps
    truth = step(env, "noop")
    assert held(env) == (0, 0)  # released at the next other action
    for _ in range(3):  # the hole's floor may be out of reach: the ground before it is not
        if truth["pointed"] is not None:
            break
        truth = step(env, "look_down")
    spot = truth["pointed"]["above"]  # in the hole when its floor is in reach
    for _ in range(3):  # the dug node goes back on that face (a busy machine may need a retry)
        placed = step(env, "place")
        if not placed["inventory"]:
            break
    assert placed["inventory"] == [] and placed["pointed"]["under"] == spot


def _stands_on(truth: dict, node: tuple[int, int, int]) -> bool:
    x, _, z = truth["pos"]
    return (round(x), round(z)) == (node[0], node[2])


def test_digging_a_trunk_reaches_the_task_item(env, game, first):
    truth = env.truth()
    for _ in range(5):
        if truth["pitch"] < 0.01:
            break
        truth = step(env, "look_up")
    assert abs(truth["pitch"]) < 0.02
    for _ in range(6):  # the trunk ahead, within reach
        if truth["pointed"] and truth["pointed"]["name"].endswith("tree"):
            break
        truth = step(env, "forward")
    assert truth["pointed"] and truth["pointed"]["name"].endswith("tree"), truth["pointed"]
    assert game.reached({"privileged": truth}) == set()
    for _ in range(12):  # a trunk takes 3.5 s by hand
        truth = step(env, "dig")
        if truth["dug_groups"].get("tree"):
            break
    assert game.reached({"privileged": truth}) == {"log"}
    assert game.score([{"log"}, set()]).rates == {"log": 50.0}
    step(env, "noop")


def test_the_same_seed_makes_the_same_world_and_spawn(env, first):
    again = env.reset(seed=SEED)[1]["privileged"]
    for key in ("pos", "yaw", "pitch", "pointed", "near", "inventory", "dug"):
        assert again[key] == first[1]["privileged"][key], key


def test_death_ends_the_episode(env, first):
    for _ in range(6):
        _, _, terminated, truncated, info = env.step("look_up")
        if terminated:
            break
    assert terminated and not truncated and info["privileged"]["hp"] == 0
    with pytest.raises(DesktopError, match="reset"):
        env.step("noop")


def test_kill_switch_then_close_stop_everything(env, first):
    game, xvfb, run_dir = env._game.proc, env._game.xvfb.proc, env.run_dir
    os.kill(os.getpid(), signal.SIGUSR1)
    with pytest.raises(KillSwitch, match="signal SIGUSR1"):
        env.reset(seed=SEED)
    assert game.poll() is None  # the reset stopped before it stopped or started anything
    assert held(env) == (0, 0)
    env.close()
    assert game.poll() is not None and xvfb.poll() is not None
    assert not run_dir.exists()
    env.close()  # idempotent


# -- killed runs -----------------------------------------------------------------------------------

RUN = """
import sys, time
from cairn.envs.minetest import MinetestEnv
env = MinetestEnv()
try:
    env.reset(seed=3)
    print(env._game.proc.pid, env._game.xvfb.proc.pid, env.run_dir, flush=True)
    time.sleep(120)
finally:
    env.close()
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_run_leaves_no_game_nor_display(signum):
    proc = subprocess.Popen([sys.executable, "-c", RUN], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        game, xvfb, run_dir = line.split()
        assert alive(int(game)) and alive(int(xvfb))
        proc.send_signal(signum)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 5
    while (alive(int(game)) or alive(int(xvfb))) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(int(game)) and not alive(int(xvfb))
    if signum == signal.SIGKILL:  # nothing ran to remove its folder: the next run sweeps it
        assert Path(run_dir).exists()
        mw.sweep_run_folders()
    assert not Path(run_dir).exists()


# -- bad setups ------------------------------------------------------------------------------------


def test_a_missing_binary_is_one_clear_line(config):
    with pytest.raises(DesktopError) as caught:
        MinetestEnv(binary="/nonexistent/minetest")
    assert str(caught.value) == ("Minetest not found ('/nonexistent/minetest' is not on PATH nor "
                                 "in /usr/games): apt-get install minetest minetest-data")
    game = make_game("minetest", {**config.env.kwargs, "binary": "/nonexistent/minetest"})
    with pytest.raises(GameError, match="^cannot open the game: Minetest not found"), \
            game.open():
        pass


def test_an_unwritable_world_folder_is_one_clear_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(DesktopError) as caught:
        MinetestEnv(world_dir=blocker / "worlds")
    assert str(caught.value) == (f"cannot make a Minetest run folder in {blocker / 'worlds'}: "
                                 "Not a directory; give a writable world_dir")


def test_a_game_that_exits_at_once_says_so_with_its_log(tmp_path):
    env = MinetestEnv(binary="/bin/false", world_dir=tmp_path, launch_timeout=10)
    try:
        with pytest.raises(DesktopError) as caught:
            env.reset(seed=0)
        assert "\n" not in str(caught.value)
        assert str(caught.value) == ("Minetest did not start within 10 s: the game exited "
                                     "(exit code 1); its log: no log")
    finally:
        env.close()
    assert list(tmp_path.iterdir()) == []


def test_the_config_loads_as_a_first_person_game(config):
    assert config.family == "first_person"
    game = config.game_adapter()
    assert game.items() == ("log",) and game.task == {"log": ["group:tree"]}
    assert game.versions()["minetest"].startswith("Minetest 5.")
    perceiver = game.perceiver(None)  # the assets shipped for the config's 640x360 window
    assert perceiver.classes[0] == "look-0" and "health" in perceiver.counter_names
    small = make_game("minetest", {"size": [320, 180]})
    with pytest.raises(GameError, match="are for 640x360 windows, not 320x180"):
        small.perceiver(None)
    assert len(ACTIONS) == 12 and ACTIONS[0] == "noop"
    assert find_binary().endswith("minetest")
    with pytest.raises(GameError, match="env.kwargs.task"):
        make_game("minetest", {"task": ["group:tree"]})


def test_named_tasks_are_scored_from_what_the_truth_shows_dug_or_held():
    dirt = make_game("minetest", {"task": "dirt"})
    sapling = make_game("minetest", {"task": "sapling"})
    assert dirt.items() == ("dirt",) and sapling.items() == ("sapling",)
    with pytest.raises(GameError, match="one of log, dirt, sapling"):
        make_game("minetest", {"task": "diamond"})
    grass_dug = {"dug": {"default:dirt_with_grass": 1}, "dug_groups": {"crumbly": 1},
                 "inventory": [{"slot": 1, "name": "default:dirt", "count": 1,
                                "groups": ["crumbly", "soil"]}]}
    assert dirt.reached({"privileged": grass_dug}) == {"dirt"}  # the grass drops dirt
    assert sapling.reached({"privileged": grass_dug}) == set()
    leaves = {"dug": {"default:leaves": 3}, "dug_groups": {"leaves": 3}, "inventory": [
        {"slot": 2, "name": "default:sapling", "count": 1, "groups": ["sapling", "snappy"]}]}
    assert sapling.reached({"privileged": leaves}) == {"sapling"}
    assert make_game("minetest", {}).reached({"privileged": leaves}) == set()  # no log
