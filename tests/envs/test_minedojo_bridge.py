"""The MineDojo bridge: Cairn's env, its client and the wire protocol, against a real server
process. MINEDOJO ITSELF IS NOT EXERCISED: it cannot run here (its only release pins
``gym==0.21``, which modern pip refuses to build, it needs JDK 8 and downloads Minecraft's
build at its first reset). Every test starts the real server script with the real client,
through real pipes, under ``sys.executable`` as the "MineDojo interpreter", serving the
stand-in world of ``tests/envs/minedojo_standin.py`` (``--world minedojo_standin:make``)
instead of ``minedojo.make``. What a real MineDojo does with the actions is not tested.
"""

from __future__ import annotations

import ast
import os
import re
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cairn.envs.game import GameError, game_family, make_game
from cairn.envs.minedojo import MineDojoEnv
from cairn.runtime.config import load_config
from tests.envs import minedojo_standin

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "envs" / "minedojo_server.py"
HERE = Path(__file__).resolve().parent
SIZE = [48, 64]
CENTRE = 12  # camera bins 0..24 at MineDojo's 15 degrees a bin


def kwargs(**extra) -> dict:
    base = {"python": sys.executable, "world": "minedojo_standin:make",
            "world_path": [str(HERE)], "image_size": SIZE, "world_seed": 3,
            "start_timeout_s": 20, "reset_timeout_s": 20, "step_timeout_s": 20}
    make = extra.pop("make_kwargs", {})
    return {**base, **extra, "make_kwargs": make}


def vec(move=0, strafe=0, stance=0, pitch=CENTRE, yaw=CENTRE, fn=0, craft=0, slot=0):
    return [move, strafe, stance, pitch, yaw, fn, craft, slot]


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def group_members(pgid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def gone_soon(pids: list[int], within: float = 3.0, group: int | None = None) -> bool:
    """Whether ``pids`` (and every member of process group ``group``) end within ``within``
    s: a SIGKILLed process that is not our child takes a moment to go."""
    deadline = time.monotonic() + within
    while any(alive(p) for p in pids) or (group is not None and group_members(group)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def children() -> set[int]:
    me, found = os.getpid(), set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me and fields[0] != "Z":
                found.add(int(entry.name))
    return found


# -- the server script stays standalone ------------------------------------------------------


@pytest.mark.parametrize("path", [SERVER, HERE / "minedojo_standin.py"], ids=["server", "standin"])
def test_runs_under_python39_with_numpy_only(path):
    """Both run in MineDojo's interpreter: Python 3.9 syntax, stdlib + numpy (+ minedojo)."""
    tree = ast.parse(path.read_text(), str(path), feature_version=(3, 9))
    allowed = set(sys.stdlib_module_names) | {"numpy", "minedojo"}
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert imported - allowed == set()
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Match)]


def test_without_minedojo_the_default_server_says_so(tmp_path):
    """The real default path: the server imports minedojo at hello (not installed here)."""
    before = children()
    with pytest.raises(GameError, match=r"could not start: ModuleNotFoundError: No module "
                                        r"named 'minedojo'; is MineDojo installed"):
        MineDojoEnv(python=sys.executable, log=str(tmp_path / "log"))
    assert children() == before


@pytest.mark.skipif(not os.environ.get("CAIRN_TEST_PYTHON39"),
                    reason="set CAIRN_TEST_PYTHON39 to a Python 3.9 with numpy to run the "
                           "server under MineDojo's Python version")
def test_the_server_runs_under_python39():
    env = MineDojoEnv(**kwargs(python=os.environ["CAIRN_TEST_PYTHON39"]))
    try:
        assert env.versions["python"].startswith("3.9.")
        local = minedojo_standin.make("harvest_1_log", SIZE, seed=3, world_seed=3)
        assert np.array_equal(env.reset(seed=0)[0], local.reset()["rgb"].transpose(1, 2, 0))
        frame = env.step(env.action_names.index("turn_right"))[0]
        assert np.array_equal(frame, local.step(vec(yaw=13))[0]["rgb"].transpose(1, 2, 0))
    finally:
        env.close()


# -- round trips --------------------------------------------------------------------------------


def test_frames_arrive_bit_exact_and_steps_map_to_the_world():
    env = MineDojoEnv(**kwargs(length=5))
    try:
        assert env.versions["python"] == ".".join(map(str, sys.version_info[:3]))
        assert env.versions["world"] == "minedojo_standin:make"
        local = minedojo_standin.make("harvest_1_log", SIZE, seed=3, world_seed=3,
                                      cam_interval=15.0)
        frame, info = env.reset(seed=11)
        assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
        assert env.observation_space.contains(frame)
        assert np.array_equal(frame, local.reset()["rgb"].transpose(1, 2, 0))
        assert env.prompt == "obtain 1 log"
        ends = []
        for name in ("forward", "turn_right", "look_down", "left", "back"):
            before = frame
            frame, reward, terminated, truncated, info = env.step(env.action_names.index(name))
            vector, hold = env.vector(name)
            for _ in range(hold):
                expected = local.step(vector)[0]["rgb"].transpose(1, 2, 0)
            assert np.array_equal(frame, expected), name
            assert not np.array_equal(frame, before), f"{name} did not change the view"
            ends.append((terminated, truncated))
        assert ends == [(False, False)] * 4 + [(False, True)]  # length 5 truncates
        location = info["privileged"]["location_stats"]
        assert location["yaw"] == pytest.approx(15.0) and location["pitch"] == pytest.approx(15.0)
        assert info["privileged"]["life_stats"]["life"] == 20.0
    finally:
        env.close()
    assert not env._server.log_path.exists()  # a temporary log goes when nothing failed


def test_named_actions_send_their_multidiscrete_vectors():
    env = MineDojoEnv(**kwargs(
        hold_steps=2, info_keys=["actions"], make_kwargs={"break_ticks": 10_000},
        action_map={"turn_left": {"yaw": -2}, "place": None,
                    "craft_first": {"fn": "craft", "craft": 7, "hold": 1}}))
    expected = {
        "noop": (vec(), 2), "forward": (vec(move=1), 2), "back": (vec(move=2), 2),
        "left": (vec(strafe=1), 2), "right": (vec(strafe=2), 2), "jump": (vec(stance=1), 2),
        "turn_left": (vec(yaw=10), 2), "turn_right": (vec(yaw=13), 2),
        "look_up": (vec(pitch=11), 2), "look_down": (vec(pitch=13), 2),
        "dig": (vec(fn=3), 60), "craft_first": (vec(fn=4, craft=7), 1),
    }
    try:
        assert set(env.action_names) == set(expected)
        env.reset(seed=0)
        sent = 0
        for name, (vector, hold) in expected.items():
            *_, info = env.step(env.action_names.index(name))
            received = info["privileged"]["info"]["actions"]
            assert received[sent:] == [vector] * hold, name
            assert info["privileged"]["ticks"] == hold
            sent = len(received)
    finally:
        env.close()


def test_held_dig_collects_a_log_and_the_task_is_reached():
    game = make_game("minedojo", kwargs(make_kwargs={"break_ticks": 60}))
    assert game.family == "first_person" == game_family("minedojo")
    with game.open() as env:
        _, info = env.reset(seed=0)
        assert info["privileged"]["inventory"] == {} and game.reached(info) == set()
        _, reward, terminated, truncated, info = env.step(env.action_names.index("dig"))
        privileged = info["privileged"]
        assert reward == 1.0 and terminated and not truncated  # MineDojo's done on success
        assert privileged["ticks"] == 60 and privileged["success"]
        assert privileged["inventory"] == {"log": 1} and privileged["collected"] == {"log": 1}
        assert game.reached(info) == {"harvest_1_log", "log"}
        assert game.score([game.reached(info), set()]).rates == {"harvest_1_log": 50.0}
        assert game.versions()["minedojo_python"] == env.versions["python"]


def test_dig_steps_hold_attack_on_and_anything_else_lets_go():
    """Consecutive dig steps keep breaking (the button is held through them); any other
    action in between starts the block over, as releasing the button does in Minecraft."""
    env = MineDojoEnv(**kwargs(action_map={"dig": {"fn": "attack", "hold": 40}},
                               make_kwargs={"break_ticks": 60}))
    dig, turn = env.action_names.index("dig"), env.action_names.index("turn_left")
    try:
        env.reset(seed=0)
        for action in (dig, turn, dig):
            *_, info = env.step(action)
        assert info["privileged"]["inventory"] == {}
        *_, info = env.step(dig)
        assert info["privileged"]["inventory"] == {"log": 1}
    finally:
        env.close()


def test_death_terminates_the_episode():
    game = make_game("minedojo", kwargs(make_kwargs={"hurt_per_tick": 5.0}))
    with game.open() as env:
        env.reset(seed=0)
        ends = [env.step(0)[2] for _ in range(4)]
        assert ends == [False, False, False, True]
        assert env.step(0)[4]["privileged"]["dead"]


def test_reseed_world_makes_each_episode_from_its_seed():
    fixed = MineDojoEnv(**kwargs())
    reseeded = MineDojoEnv(**kwargs(reseed_world=True))
    try:
        fixed_frames = [fixed.reset(seed=s)[0] for s in (1, 2)]
        frames = [reseeded.reset(seed=s)[0] for s in (1, 2, 1)]
        assert np.array_equal(*fixed_frames)  # one world: world_seed
        assert not np.array_equal(frames[0], frames[1])
        assert np.array_equal(frames[0], frames[2])
    finally:
        fixed.close()
        reseeded.close()


def test_output_on_the_servers_stdout_goes_to_the_log(tmp_path):
    """MineDojo and its Java print; the server keeps its protocol pipe to itself."""
    log = tmp_path / "server.log"
    env = MineDojoEnv(**kwargs(log=str(log), make_kwargs={"chatty": True}))
    try:
        env.reset(seed=0)
        env.step(0)
        env.step(0)
    finally:
        env.close()
    text = log.read_text()  # a configured log stays
    assert "stand-in: made, on stdout" in text and "stand-in child: on fd 1" in text
    assert "stand-in: tick 2, on stdout" in text


# -- faults -----------------------------------------------------------------------------------


def test_a_server_that_dies_mid_episode_is_a_clear_error():
    env = MineDojoEnv(**kwargs(make_kwargs={"die_at_tick": 2, "leak": True}))
    try:
        env.reset(seed=0)
        env.step(0)
        pid, log = env._server.pid, env._server.log_path
        leaked = int(re.search(r"leaked child (\d+)", log.read_text()).group(1))
        with pytest.raises(GameError) as err:
            env.step(0)
        message = str(err.value)
        assert f"(pid {pid}) exited with status 7 while answering 'step'" in message
        assert "stand-in: exiting at tick 2 as the test asked" in message  # the log's tail
        assert not alive(pid) and gone_soon([leaked])  # what it left in its group too
        with pytest.raises(GameError, match="not running"):
            env.step(0)
    finally:
        env.close()
    assert log.exists()  # kept: it explains the failure
    log.unlink()


def test_a_hung_server_is_killed_at_the_deadline():
    env = MineDojoEnv(**kwargs(step_timeout_s=1.0, make_kwargs={"hang_at_tick": 1}))
    try:
        env.reset(seed=0)
        pid = env._server.pid
        started = time.monotonic()
        with pytest.raises(GameError) as err:
            env.step(0)
        took = time.monotonic() - started
        message = str(err.value)
        assert 1.0 <= took < 4.0
        assert "did not answer 'step' within 1 s (env.kwargs.step_timeout_s)" in message
        child = int(re.search(r"stand-in: child (\d+) started", message).group(1))
        assert gone_soon([pid, child], group=pid)
    finally:
        env.close()
        env._server.log_path.unlink(missing_ok=True)


def test_an_error_in_the_world_is_reported_and_the_server_survives():
    env = MineDojoEnv(**kwargs(make_kwargs={"fail_at_tick": 1}))
    try:
        env.reset(seed=0)
        with pytest.raises(GameError, match=r"could not step: RuntimeError: stand-in: step "
                                            r"failed at tick 1"):
            env.step(0)
        frame, _ = env.reset(seed=0)
        assert frame.shape == (48, 64, 3)
    finally:
        env.close()
        env._server.log_path.unlink(missing_ok=True)


def _header(n_json: int, n_payload: int, version: int = 1) -> bytes:
    return struct.pack(">4sHHIQ", b"CMDJ", version, 0, n_json, n_payload)


def _reply(text: bytes, payload: bytes = b"") -> bytes:
    return _header(len(text), len(payload)) + text + payload


GARBAGE = {
    "banner": (b"Starting Minecraft server, please wait...\n", "bad magic"),
    "version": (_header(2, 0, version=9) + b"{}", "protocol version 9, expected 1"),
    "huge": (_header(2**31, 0), "lengths past the caps"),
    "json": (_reply(b"{not json"), "the JSON part does not parse"),
    "arrays": (_reply(b'{"cmd": "hello", "ok": true, "arrays": [{"dtype": "|u1", '
                      b'"shape": [3, 4, 4]}]}', b"0123456789"), "runs past the payload"),
    "dtype": (_reply(b'{"cmd": "hello", "ok": true, "arrays": [{"dtype": "|O", '
                     b'"shape": [1]}]}', b"01234567"), "no known dtype"),
    "answer": (_reply(b'{"cmd": "step", "ok": true}'), "the reply answers 'step'"),
}


@pytest.mark.parametrize("case", sorted(GARBAGE))
def test_a_server_that_writes_garbage_is_stopped(tmp_path, case):
    data, words = GARBAGE[case]
    script = tmp_path / "garbage.py"
    script.write_text("import sys, time\n"
                      f"sys.stdout.buffer.write({data!r}); sys.stdout.buffer.flush()\n"
                      "time.sleep(30)\n")
    before = children()
    with pytest.raises(GameError) as err:
        MineDojoEnv(**kwargs(server=str(script), log=str(tmp_path / "log")))
    message = str(err.value)
    assert "sent a malformed reply to 'hello'" in message and words in message
    pid = int(re.search(r"\(pid (\d+)\)", message).group(1))
    assert not alive(pid) and children() == before


def test_a_reply_cut_short_names_the_exit_status(tmp_path):
    script = tmp_path / "short.py"
    data = _header(100, 0) + b'{"cmd"'
    script.write_text("import sys\n"
                      f"sys.stdout.buffer.write({data!r})\n"
                      "print('server: giving up', file=sys.stderr)\nsys.exit(3)\n")
    with pytest.raises(GameError, match=r"(?s)exited with status 3 while answering 'hello'.*"
                                        r"server: giving up"):
        MineDojoEnv(**kwargs(server=str(script), log=str(tmp_path / "log")))


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize("python, words", [
    ("/nonexistent/minedojo/bin/python", "does not exist"),
    ("{tmp}", "is not an executable file"),
    ("", "env.kwargs.python is missing"),
])
def test_a_wrong_interpreter_is_one_line_before_anything_starts(tmp_path, python, words):
    before = children()
    with pytest.raises(GameError) as err:
        make_game("minedojo", kwargs(python=python.format(tmp=tmp_path))).make_env()
    message = str(err.value)
    assert words in message and "env.kwargs.python" in message and "\n" not in message
    assert children() == before


@pytest.mark.parametrize("bad, words", [
    ({"color": 1}, "env.kwargs: unknown key 'color' for game minedojo"),
    ({"image_size": [64]}, "env.kwargs.image_size must be [height, width]"),
    ({"action_map": {"dig": {"fn": "chop"}}}, "env.kwargs.action_map.dig.fn must be one of"),
    ({"action_map": {"spin": {"yaw": 20}}}, "env.kwargs.action_map.spin.yaw: 20 bins is past"),
    ({"step_timeout_s": 0}, "env.kwargs.step_timeout_s must be a positive number"),
    ({"world_path": "tests/envs"}, "env.kwargs.world_path must be a list"),
])
def test_bad_settings_fail_before_the_server_starts(bad, words):
    before = children()
    with pytest.raises(GameError, match=re.escape(words)):
        make_game("minedojo", kwargs(**bad))
    assert children() == before


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("minedojo-*.yaml")),
                         ids=lambda p: p.stem)
def test_the_task_configs_load(path):
    config = load_config(path)
    game = config.game_adapter()
    assert config.game == "minedojo" and config.family == "first_person"
    assert game.items() == (game.settings.task_id,)
    assert game.settings.task_id.startswith(("harvest_", "techtree_", "combat_"))
    with pytest.raises(GameError, match="env.kwargs.python"):  # a placeholder path
        game.make_env()


def test_close_leaves_no_process(tmp_path):
    log = tmp_path / "server.log"
    env = MineDojoEnv(**kwargs(log=str(log), make_kwargs={"leak": True}))
    env.reset(seed=0)
    env.step(0)
    pid = env._server.pid
    leaked = int(re.search(r"leaked child (\d+)", log.read_text()).group(1))
    assert alive(pid) and alive(leaked)
    env.close()
    assert not alive(pid) and gone_soon([leaked], group=pid)
    env.close()
    with pytest.raises(GameError, match="not running"):
        env.step(0)
