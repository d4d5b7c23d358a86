"""However a desktop run ends, its game and its display end with it, and it says why.

Real processes only: `cairn run configs/flip.yaml` subprocesses that start their own Xvfb and
the real sgt-flip, stopped with SIGTERM, SIGKILL or the kill switch (SIGUSR1) at several
points; then the Xvfb and the game it started must be gone within a few seconds and its
recording must say how the episode really ended. Every process a run starts carries a marker
in its environment, so a leftover is found even after it is re-parented to init.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from pathlib import Path

import pytest
import yaml

from cairn.envs.desktop import DesktopEnv, KillSwitch, Terminated, click
from cairn.envs.x11 import _Signals, run_latch, spawn, stop
from tests.desktop_fixtures import desktop_display  # noqa: F401  (a pytest fixture)

ROOT = Path(__file__).resolve().parents[2]
FLIP = "/usr/games/sgt-flip"
BOARD = "3x3:d074191345d1644c17058,628"
MARK = "CAIRN_TEST_MARK"

pytestmark = [
    pytest.mark.fault,
    pytest.mark.skipif(
        shutil.which("Xvfb") is None or shutil.which("xdotool") is None
        or not Path(FLIP).exists(),
        reason="needs Xvfb, xdotool and sgt-puzzles (apt-get install xvfb xdotool sgt-puzzles)"),
]


# -- processes, found by the marker in their environment ------------------------------------------


def state(pid: int) -> tuple[str, int] | None:
    """(state letter, start time) of a process, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0], int(fields[19])


def alive(pid: int, started: int) -> bool:
    """Still running (a zombie is dead; a reused pid is another process)."""
    now = state(pid)
    return now is not None and now[0] != "Z" and now[1] == started


def gone_within(pid: int, started: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid, started):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def marked(mark: str) -> dict[int, tuple[str, int]]:
    """Live processes whose environment carries ``mark``: pid -> (name, start time)."""
    found = {}
    needle = f"{MARK}={mark}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            name = Path(f"/proc/{entry}/comm").read_text().strip()
        except OSError:
            continue
        now = state(int(entry))
        if needle in environ.split(b"\0") and now and now[0] != "Z":
            found[int(entry)] = (name, now[1])
    return found


def catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler for ``signum`` (its SigCgt mask in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(mask, 16) >> (signum - 1) & 1)


def leftovers(mark: str, tracked: dict[int, tuple[str, int]], within: float = 3.0) -> list:
    """What a stopped run left running after ``within`` s: tracked pids, anything marked."""
    deadline = time.monotonic() + within
    while True:
        left = [(pid, name) for pid, (name, started) in tracked.items() if alive(pid, started)]
        left += [(pid, name) for pid, (name, _) in marked(mark).items() if pid not in tracked]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


class Run:
    """`cairn run configs/flip.yaml --episodes 50` on its own Xvfb, as a subprocess."""

    def __init__(self, tmp: Path, config: Path = ROOT / "configs" / "flip.yaml"):
        self.mark, self.runs = uuid.uuid4().hex, tmp / "runs"
        env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "XAUTHORITY")}
        env[MARK] = self.mark
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cairn.runtime", "run", str(config), "--quiet",
             "--episodes", "50", "--out", str(self.runs), "--store", str(tmp / "s.sqlite")],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.seen: dict[int, tuple[str, int]] = {}

    def children(self) -> dict[int, tuple[str, int]]:
        """Its Xvfb and game processes now (and remember them)."""
        now = {pid: v for pid, v in marked(self.mark).items() if v[0] in ("Xvfb", "sgt-flip")}
        self.seen.update(now)
        return now

    def wait_until(self, ready, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            assert self.proc.poll() is None, f"the run ended early: {self.proc.stderr.read()}"
            assert time.monotonic() < deadline, "the run did not get there in time"
            time.sleep(0.003)

    def playing(self) -> bool:
        """Both processes up and the first episode mid-way (a step recorded, not finished)."""
        names = {name for name, _ in self.children().values()}
        steps = list(self.runs.glob("*/episode-000/steps.jsonl"))
        return names == {"Xvfb", "sgt-flip"} and bool(steps) and steps[0].stat().st_size > 0

    def finish(self, signum: int) -> tuple[int, str, str]:
        self.proc.send_signal(signum)
        out, err = self.proc.communicate(timeout=20)
        return self.proc.returncode, out, err

    def ends(self) -> list[str | None]:
        """Each recorded episode's end reason (None: never closed), in order."""
        metas = sorted(self.runs.glob("*/episode-*/meta.json"))
        return [json.loads(m.read_text())["end_reason"] for m in metas]


@pytest.fixture
def run(tmp_path):
    runs: list[Run] = []
    yield lambda **kw: runs.append(Run(tmp_path, **kw)) or runs[-1]
    for r in runs:  # a failed test must not leave its run behind either
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait()


# -- the run ends, and so does everything it started -----------------------------------------------


def test_sigterm_is_a_clean_interrupt_that_stops_the_game_and_the_display(run):
    r = run()
    r.wait_until(r.playing)
    tracked = dict(r.seen)
    code, out, err = r.finish(signal.SIGTERM)
    assert code == 143, err  # 128 + SIGTERM, as a shell reports a process ended by it
    assert err.strip().splitlines()[-1] == ("cairn: interrupted; recordings and the store keep "
                                           "every completed step")
    assert "Traceback" not in err
    assert leftovers(r.mark, tracked) == []
    assert r.ends()[-1] == "interrupted"
    assert "xauthority" not in out + err  # the private Xvfb's cookie is found: no Xlib noise


def test_sigkill_takes_the_game_and_the_display_with_it(run):
    r = run()
    r.wait_until(r.playing)
    tracked = dict(r.seen)
    code, _, _ = r.finish(signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert leftovers(r.mark, tracked) == []
    assert r.ends()[-1] is None  # cut short: the recording never claims a normal end
    # Only its private display's cookie file is left, and the next private display sweeps it.
    cookie = list(Path(tempfile.gettempdir()).glob(f"cairn-xauth-{r.proc.pid}-*"))
    assert len(cookie) == 1
    subprocess.run([sys.executable, "-c", "from cairn.envs.x11 import virtual_display\n"
                    "with virtual_display(): pass"], check=True, timeout=30)
    assert not cookie[0].exists()


def test_kill_switch_mid_episode_stops_the_run_and_says_how(run):
    r = run()
    r.wait_until(r.playing)
    tracked = dict(r.seen)
    code, _, err = r.finish(signal.SIGUSR1)
    assert code == 3, err  # stopped on purpose: its own exit status, one line, no traceback
    expected = f"run stopped by the kill switch: signal SIGUSR1 sent to process {r.proc.pid}"
    assert expected in err and "close the env" not in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert leftovers(r.mark, tracked) == []
    assert r.ends()[-1] == "killed"


@pytest.mark.parametrize("first", ["Xvfb", "sgt-flip"])
def test_kill_switch_while_the_run_starts(run, first):
    """SIGUSR1 as soon as the private Xvfb (or the game's size probe) is up. The old gap:
    after Xvfb was started and before an env took the signal, its default action killed the
    run and could leave Xvfb running."""
    r = run()
    r.wait_until(lambda: first in {name for name, _ in r.children().values()})
    tracked = dict(r.seen)
    code, _, err = r.finish(signal.SIGUSR1)
    assert code == 3, err
    assert f"run stopped by the kill switch: signal SIGUSR1 sent to process {r.proc.pid}" in err
    assert leftovers(r.mark, tracked) == []
    assert all(end == "killed" for end in r.ends())  # no episode claims a normal end


@pytest.mark.parametrize("delay", [0.0, 0.2])
def test_early_kill_switch_is_a_clean_stop(run, delay):
    """A SIGUSR1 this early finds the run still importing Python modules: the command takes
    the signal before those imports (``cairn.runtime.__main__``), so it is a clean stop with
    its own exit status, and nothing is left behind.

    The clock starts when the handler is in place: before that the interpreter itself is
    starting up (tens of ms, more on a loaded machine), and no Python code can take a signal
    then; a signal sent at a fixed time after launch landed there once in CI."""
    r = run()
    r.wait_until(lambda: catches(r.proc.pid, signal.SIGUSR1), timeout=10)
    ready = time.monotonic()
    r.wait_until(lambda: time.monotonic() - ready >= delay or bool(r.children()))
    code, _, err = r.finish(signal.SIGUSR1)
    assert code == 3, err
    assert "run stopped by the kill switch: signal SIGUSR1" in err and "Traceback" not in err
    assert leftovers(r.mark, r.seen) == []
    assert all(end == "killed" for end in r.ends())


# -- what the kill switch says ------------------------------------------------------------------


def test_kill_switch_says_which_trigger_fired(desktop_display, tmp_path):  # noqa: F811
    stop_file = tmp_path / "stop"
    env = DesktopEnv([FLIP, BOARD], size=(192, 254), kill_file=stop_file)
    try:
        env.reset()
        os.kill(os.getpid(), signal.SIGUSR1)
        with pytest.raises(KillSwitch) as caught:
            env.step(click(96, 120))
        assert str(caught.value) == ("run stopped by the kill switch: signal SIGUSR1 sent to "
                                     f"process {os.getpid()}")
        assert caught.value.trigger == "signal" and caught.value.end_reason == "killed"
        env._killed = False
        stop_file.touch()
        with pytest.raises(KillSwitch) as caught:
            env.reset()
        assert str(caught.value) == (f"run stopped by the kill switch: the kill file {stop_file} "
                                     "exists (delete it to run again)")
        assert caught.value.trigger == "kill_file"
        env._killed = False
        stop_file.unlink()
        env.reset()
        # The operator moves the mouse into a corner: pyautogui's fail-safe trips.
        subprocess.run(["xdotool", "mousemove", "0", "0"], check=True)
        with pytest.raises(KillSwitch) as caught:
            env.step(click(96, 120))
        assert str(caught.value) == ("run stopped by the kill switch: the mouse reached a screen "
                                     "corner (pyautogui's fail-safe)")
        assert caught.value.trigger == "fail_safe"
    finally:
        subprocess.run(["xdotool", "mousemove", "400", "300"], check=True)
        env.close()


def test_kill_switch_during_start_up_stops_every_env_of_the_run(desktop_display):  # noqa: F811
    """A SIGUSR1 while a run measures its window with a probe env stops the run's next env
    before it launches anything; after the run, a new env plays again."""
    children = len(_children())
    with run_latch():
        os.kill(os.getpid(), signal.SIGUSR1)
        with pytest.raises(KillSwitch, match="signal SIGUSR1"):
            DesktopEnv([FLIP, BOARD])
        assert len(_children()) == children  # nothing was launched
    env = DesktopEnv([FLIP, BOARD], size=(192, 254))
    try:
        env.reset()
    finally:
        env.close()


def test_kill_switch_with_no_env_alive_stops_the_next_one(desktop_display):  # noqa: F811
    assert not list(_Signals.latches), "another env is still open"
    os.kill(os.getpid(), signal.SIGUSR1)
    with pytest.raises(KillSwitch, match="signal SIGUSR1"):
        DesktopEnv([FLIP, BOARD])
    DesktopEnv([FLIP, BOARD], size=(192, 254)).close()  # the signal was used up


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_sigterm_whose_exception_was_swallowed_still_stops_the_env(desktop_display):  # noqa: F811
    """A signal handler's exception raised inside a weakref callback is printed and dropped
    by Python (seen once in 55 SIGTERMs of `cairn run`, during an import): the env raises
    it again at its next check, so the run still stops."""
    env = DesktopEnv([FLIP, BOARD], size=(192, 254))
    try:
        env.reset()

        class Owner:
            pass

        def callback(_ref):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler runs (and raises) in here: the exception is lost

        owner = Owner()
        ref = weakref.ref(owner, callback)
        del owner
        assert ref() is None
        with pytest.raises(Terminated, match="SIGTERM"):
            env.step(click(96, 120))
    finally:
        _Signals.terminated = False  # this test's SIGTERM must not stop later tests
        env.close()


def _children() -> list[int]:
    pids = []
    for task in Path("/proc/self/task").iterdir():
        pids += [int(p) for p in (task / "children").read_text().split()]
    return pids


# -- the DISPLAY hint only where the display may be wrong ------------------------------------------


def no_window_config(tmp_path: Path, xvfb: bool) -> Path:
    """configs/flip.yaml with a "game" that never opens a window."""
    config = yaml.safe_load((ROOT / "configs" / "flip.yaml").read_text())
    config["env"]["kwargs"].update(command=["sleep", "30"], launch_timeout=0.5)
    config["board"]["xvfb"] = xvfb
    path = tmp_path / "no-window.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_cli(tmp_path: Path, config: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cairn.runtime", "run", str(config), "--quiet",
         "--out", str(tmp_path / "runs"), "--store", str(tmp_path / "s.sqlite")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_no_display_hint_on_the_private_xvfb(tmp_path):
    mark = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "XAUTHORITY")}
    done = run_cli(tmp_path, no_window_config(tmp_path, xvfb=True), {**env, MARK: mark})
    assert done.returncode == 2
    line = done.stderr.strip()
    assert "\n" not in line and "DISPLAY" not in line
    assert line.endswith("cannot open the game: no visible window for ['sleep', '30'] after "
                         "0.5 s on the private Xvfb Cairn started (:" + line.split("(:")[-1])
    assert line.endswith("); does the command open a window?")
    assert leftovers(mark, {}) == []


def test_display_hint_on_the_users_display(tmp_path, desktop_display):  # noqa: F811
    """With ``board.xvfb: false`` the display is the user's: it may be the wrong one."""
    done = run_cli(tmp_path, no_window_config(tmp_path, xvfb=False), dict(os.environ))
    assert done.returncode == 2
    assert done.stderr.strip().endswith(
        f"cannot open the game: no visible window for ['sleep', '30'] after 0.5 s; "
        f"is DISPLAY={desktop_display} the right display?")


# -- the mechanism, on its own -------------------------------------------------------------------


def test_a_spawned_child_dies_with_its_parent_even_on_sigkill():
    parent = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom cairn.envs.x11 import spawn\n"
         "print(spawn(['sleep', '60']).pid, flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        started = state(child)[1]
    finally:
        parent.kill()
        parent.wait()
    assert gone_within(child, started, 2.0)


def test_stop_ends_the_whole_process_group():
    proc = spawn(["sh", "-c", "sleep 60 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
    grandchild = int(proc.stdout.readline())
    started = state(grandchild)[1]
    stop(proc)
    assert proc.returncode is not None and gone_within(grandchild, started, 2.0)
