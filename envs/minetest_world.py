"""What one Minetest episode runs in: its world folder, its config, and the truth file the
``cairn_truth`` world mod writes.

Each episode gets a fresh world (``world.mt`` naming Minetest Game, the ``cairn_truth`` mod in
``worldmods/``); the map seed and generator come from the config (``fixed_map_seed``,
``mg_name``), so the same seed gives the same map and spawn. The run folder holds the worlds,
the config, the game's log and a private ``HOME`` (Minetest's user folder and Mesa's caches),
so nothing outside it is written. A run killed with SIGKILL leaves its folder behind; the
next run sweeps the folders whose process is gone (as ``cairn.envs.x11`` sweeps cookies).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cairn.envs.x11 import DesktopError

MOD_SOURCE = Path(__file__).with_name("minetest_mod") / "cairn_truth"
TRUTH_FILE = "cairn_truth.json"
RUN_PREFIX = "cairn-minetest-"
"""Run folders: ``cairn-minetest-<pid>-<random>`` in the temp folder unless given one."""

SETTINGS: dict[str, Any] = {
    "fullscreen": False,
    "autosave_screensize": False,
    "enable_sound": False,
    "mute_sound": True,
    "bind_address": "127.0.0.1",
    "server_announce": False,
    "pause_on_lost_focus": False,
    "fps_max": 60,
    "fps_max_unfocused": 60,
    "vsync": False,
    "enable_clouds": False,
    "smooth_lighting": False,
    "enable_shaders": False,
    "enable_minimap": False,
    "enable_particles": False,
    "show_debug": False,
    "creative_mode": False,
    "enable_damage": True,
    "mg_name": "v7",
    "menu_last_game": "minetest_game",
    "dedicated_server_step": 0.05,
    "viewing_range": 60,
    "mouse_sensitivity": 0.2,
    "invert_mouse": False,
    "cinematic": False,
    "camera_smoothing": 0.0,
    "enable_client_modding": False,
    "ask_reconnect_on_crash": False,
}
"""The minetest.conf every episode starts from; the env adds the window size, the seed and
the port, and its ``settings=`` override any key. Sound off, the server on 127.0.0.1 only,
no pause or frame-rate drop without focus, and the costly effects off (software GL)."""


@dataclass
class Truth:
    """One record of the truth file, with its fields made regular (JSON writes an empty Lua
    table as null, numbers as floats)."""

    data: dict[str, Any]

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Truth:
        data = dict(raw)
        for key in ("step", "hp", "breath"):
            data[key] = int(data.get(key) or 0)
        data["pos"] = _xyz(data.get("pos"))
        data["pointed"] = _pointed(data.get("pointed"))
        data["wielded"] = _stack(data.get("wielded") or {})
        data["inventory"] = [_stack(s) for s in data.get("inventory") or []]
        data["dug"] = {str(k): int(v) for k, v in (data.get("dug") or {}).items()}
        data["dug_groups"] = {str(k): int(v) for k, v in (data.get("dug_groups") or {}).items()}
        data["near"] = {str(k): {"name": v["name"], "pos": _xyz(v["pos"]),
                                 "distance": float(v["distance"])}
                        for k, v in (data.get("near") or {}).items()}
        data["look_dir"] = look_dir(float(data.get("yaw", 0.0)), float(data.get("pitch", 0.0)))
        return cls(data)


def _xyz(p: dict[str, Any] | None) -> tuple[float, float, float] | None:
    return None if not p else (float(p["x"]), float(p["y"]), float(p["z"]))


def _pointed(p: dict[str, Any] | None) -> dict[str, Any] | None:
    if not p:
        return None
    return {"name": p["name"], "under": tuple(int(v) for v in _xyz(p["under"])),
            "above": tuple(int(v) for v in _xyz(p["above"])),
            "distance": float(p.get("distance", 0.0))}


def _stack(s: dict[str, Any]) -> dict[str, Any]:
    out = {"name": str(s.get("name") or ""), "count": int(s.get("count") or 0),
           "groups": sorted(s.get("groups") or [])}
    if "slot" in s:
        out["slot"] = int(s["slot"])
    return out


def look_dir(yaw: float, pitch: float) -> tuple[float, float, float]:
    """The unit look vector for Minetest's yaw (radians, 0 = +z, counter-clockwise seen from
    above) and pitch (radians, positive = down)."""
    return (-math.sin(yaw) * math.cos(pitch), -math.sin(pitch), math.cos(yaw) * math.cos(pitch))


def truth_clock() -> float:
    """Seconds on the clock the mod stamps records with (Minetest's ``get_us_time`` reads
    ``CLOCK_MONOTONIC_RAW``, which runs apart from ``time.monotonic``)."""
    return time.clock_gettime(time.CLOCK_MONOTONIC_RAW)


def read_truth(world: Path) -> Truth | None:
    """The newest complete record, or None before the first one (the mod replaces the file
    atomically, so a record is never read half-written)."""
    try:
        return Truth.parse(json.loads((world / TRUTH_FILE).read_text()))
    except FileNotFoundError:
        return None


# -- the world and the config -------------------------------------------------------------------


def new_run_folder(parent: str | os.PathLike | None = None) -> Path:
    """A fresh run folder; in the temp folder (the stale ones of dead runs swept) by default."""
    if parent is None:
        sweep_run_folders()
        return Path(tempfile.mkdtemp(prefix=f"{RUN_PREFIX}{os.getpid()}-"))
    parent = Path(parent)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{RUN_PREFIX}{os.getpid()}-", dir=parent))
    except OSError as err:
        raise DesktopError(f"cannot make a Minetest run folder in {parent}: "
                           f"{err.strerror or err}; give a writable world_dir") from None


def sweep_run_folders() -> None:
    """Remove the temp run folders of runs that were SIGKILLed."""
    for path in Path(tempfile.gettempdir()).glob(f"{RUN_PREFIX}*-*"):
        pid = path.name[len(RUN_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def make_world(folder: Path, mods: Sequence[Path] = (), gameid: str = "minetest_game") -> Path:
    """A world Minetest generates on first start, with the truth mod and ``mods`` (folders
    of other world mods, e.g. a task's setup) installed."""
    folder.mkdir(parents=True)
    (folder / "world.mt").write_text(f"gameid = {gameid}\nbackend = sqlite3\n"
                                     "player_backend = sqlite3\nauth_backend = sqlite3\n")
    for mod in (MOD_SOURCE, *mods):
        shutil.copytree(mod, folder / "worldmods" / mod.name)
    return folder


def write_config(path: Path, settings: dict[str, Any]) -> Path:
    lines = [f"{key} = {_conf_value(value)}" for key, value in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _conf_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if "\n" in text:
        raise DesktopError(f"a Minetest setting cannot span lines: {text!r}")
    return text


def free_udp_port() -> int:
    """A UDP port free on 127.0.0.1 now (the local server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "no log"
    kept = [line for line in text.splitlines() if "ERROR" in line or "WARNING" not in line]
    return " | ".join(line.strip() for line in kept[-lines:] if line.strip()) or "empty log"


def wait_for(check, timeout: float, poll: float = 0.05, tick=None):
    """Poll ``check()`` until it returns something truthy or ``timeout`` s pass (then None);
    ``tick()`` runs before each poll (the kill-switch check)."""
    deadline = time.monotonic() + timeout
    while True:
        if tick is not None:
            tick()
        value = check()
        if value or time.monotonic() >= deadline:
            return value or None
        time.sleep(poll)
