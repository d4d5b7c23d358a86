"""Real Minecraft through MineDojo, for users who have it: a Gymnasium env whose observation is
the frame alone, played through a server process in the user's own MineDojo environment.

MineDojo cannot be installed next to Cairn (it pins ``gym==0.21``, needs JDK 8 and Python
3.9), so :class:`MineDojoEnv` starts ``envs/minedojo_server.py`` with the interpreter the
config names (``env.kwargs.python``) and talks to it over the server's stdin and stdout
(:mod:`cairn.envs.minedojo_wire`). docs/minedojo.md describes the setup and the protocol.

Mapping:

- observation: MineDojo's ``rgb`` (3, H, W) as an (H, W, 3) uint8 frame;
- ``info["privileged"]``: inventory totals, life and location stats, voxels, the task's
  success and what was collected, for measuring only (never for acting);
- actions: a ``Discrete`` set of named first-person actions (:data:`DEFAULT_ACTIONS`), each
  one MultiDiscrete vector held for some game ticks (MineDojo ticks at 20 Hz; ``dig`` holds
  attack for 60 ticks, about the 3 s a log takes by hand). The camera turns
  ``cam_interval`` degrees (15 by default) per bin; positive pitch looks down, positive yaw
  turns right;
- ``terminated``: MineDojo's ``done`` (the task succeeded or the player died) or life at 0;
  ``truncated``: ``length`` steps passed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from cairn.envs.game import Game, GameError, package_version
from cairn.envs.minedojo_wire import ServerProcess

FUNCTIONS = ("noop", "use", "drop", "attack", "craft", "equip", "place", "destroy")
"""MineDojo's functional actions, in the order of its action vector's 6th entry."""
CHOICES = {"move": (0, ("forward", "back")), "strafe": (1, ("left", "right")),
           "stance": (2, ("jump", "sneak", "sprint"))}
"""Action map keys for the first three entries: (index, the values 1, 2, ... stand for)."""
CRAFT_ARGS, INVENTORY_SLOTS = 244, 36

DEFAULT_ACTIONS: dict[str, dict[str, Any]] = {
    "noop": {},
    "forward": {"move": "forward"},
    "back": {"move": "back"},
    "left": {"strafe": "left"},
    "right": {"strafe": "right"},
    "jump": {"stance": "jump"},
    "turn_left": {"yaw": -1},
    "turn_right": {"yaw": 1},
    "look_up": {"pitch": -1},
    "look_down": {"pitch": 1},
    "dig": {"fn": "attack", "hold": 60},
    "place": {"fn": "use"},
}
"""Named actions, as action map entries (see :func:`action_vector`): the names of the
Minetest adapter's first-person actions."""


@dataclass
class MineDojoSettings:
    """``env.kwargs`` of a ``game: minedojo`` config."""

    python: str = ""
    """The interpreter of the Python environment MineDojo is installed in (its bin/python)."""
    task_id: str = "harvest_1_log"
    """A MineDojo task id (``minedojo.tasks.ALL_PROGRAMMATIC_TASK_IDS``)."""
    image_size: tuple[int, int] = (160, 256)
    """Frame (height, width) in pixels."""
    world_seed: int = 0
    """The world every episode plays (MineDojo's ``seed`` and ``world_seed``)."""
    reseed_world: bool = False
    """Make each episode's world from its seed instead: MineDojo is made anew (slow)."""
    length: int = 1000
    """Steps after which an episode is truncated."""
    hold_steps: int = 1
    """Game ticks an action is held for when its action map entry gives no ``hold``."""
    cam_interval: float = 15.0
    """Degrees per camera bin (``minedojo.make``'s ``cam_interval``)."""
    action_map: dict[str, Any] = field(default_factory=dict)
    """Named actions added to or replacing :data:`DEFAULT_ACTIONS` (null removes one)."""
    make_kwargs: dict[str, Any] = field(default_factory=dict)
    """More keyword arguments for ``minedojo.make`` (``break_speed_multiplier``, ...)."""
    info_keys: list[str] = field(default_factory=list)
    """Keys of MineDojo's step ``info`` copied into ``info["privileged"]["info"]``."""
    headless: bool = True
    """Set ``MINEDOJO_HEADLESS=1`` for the server (no display needed)."""
    env_vars: dict[str, str] = field(default_factory=dict)
    """More environment variables for the server (``JAVA_HOME``, ...)."""
    log: str | None = None
    """The server's log file (its stderr); None: a temporary file, kept if anything failed."""
    server: str | None = None
    """The server script (None: ``minedojo_server.py`` beside this module)."""
    world: str | None = None
    """``module:factory`` to serve instead of ``minedojo.make`` (the tests' stand-in)."""
    world_path: list[str] = field(default_factory=list)
    """Folders the server imports ``world``'s module from."""
    start_timeout_s: float = 120.0
    """Longest wait for the server to start and answer ``hello``."""
    reset_timeout_s: float = 1800.0
    """Longest wait for a reset: the first one builds Minecraft and may download for minutes."""
    step_timeout_s: float = 60.0
    """Longest wait for one step, all its held ticks together."""
    close_timeout_s: float = 30.0
    """Longest wait for MineDojo to close before its process group is killed."""

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> MineDojoSettings:
        """Settings from a config's ``env.kwargs``; unknown keys and bad values raise
        GameError naming the key."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise GameError(f"env.kwargs: unknown key '{unknown[0]}' for game minedojo "
                            f"(known: {', '.join(sorted(known))})")
        settings = cls(**kwargs)
        for key, kind, noun in (("action_map", dict, "mapping"), ("make_kwargs", dict, "mapping"),
                                ("env_vars", dict, "mapping"), ("info_keys", list, "list"),
                                ("world_path", list, "list")):
            if not isinstance(getattr(settings, key), kind):
                raise GameError(f"env.kwargs.{key} must be a {noun}, got "
                                f"{getattr(settings, key)!r}")
        size = settings.image_size
        if not (isinstance(size, Sequence) and len(size) == 2
                and all(isinstance(n, int) and n > 0 for n in size)):
            raise GameError(f"env.kwargs.image_size must be [height, width] in pixels, "
                            f"got {size!r}")
        settings.image_size = (int(size[0]), int(size[1]))
        for key in ("length", "hold_steps"):
            if not isinstance(getattr(settings, key), int) or getattr(settings, key) < 1:
                raise GameError(f"env.kwargs.{key} must be a whole number of at least 1, got "
                                f"{getattr(settings, key)!r}")
        for key in ("cam_interval", "start_timeout_s", "reset_timeout_s", "step_timeout_s",
                    "close_timeout_s"):
            value = getattr(settings, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise GameError(f"env.kwargs.{key} must be a positive number, got {value!r}")
        return settings

    def nvec(self) -> list[int]:
        """MineDojo's MultiDiscrete sizes for this ``cam_interval``."""
        bins = math.ceil(360 / self.cam_interval) + 1
        return [3, 3, 4, bins, bins, len(FUNCTIONS), CRAFT_ARGS, INVENTORY_SLOTS]

    def make(self, seed: int) -> dict[str, Any]:
        """``minedojo.make``'s keyword arguments for an episode with ``seed``."""
        world = seed if self.reseed_world else self.world_seed
        return {**self.make_kwargs, "task_id": self.task_id, "image_size": list(self.image_size),
                "seed": world, "world_seed": world, "cam_interval": self.cam_interval}


def action_vector(name: str, spec: dict[str, Any] | None, nvec: Sequence[int],
                  hold_steps: int = 1) -> tuple[list[int], int]:
    """(MultiDiscrete vector, ticks to hold it) for one action map entry.

    An entry is a mapping: ``move`` (forward/back), ``strafe`` (left/right), ``stance``
    (jump/sneak/sprint), ``pitch`` and ``yaw`` (camera bins from the centre; negative pitch
    looks up, negative yaw turns left), ``fn`` (one of :data:`FUNCTIONS`), ``craft`` and
    ``slot`` (the arguments of craft and of equip/place/destroy), ``hold`` (ticks).
    """
    where = f"env.kwargs.action_map.{name}"
    if not isinstance(spec, dict):
        raise GameError(f"{where} must be a mapping (move, strafe, stance, pitch, yaw, fn, "
                        f"craft, slot, hold), got {spec!r}")
    vector = [0, 0, 0, (nvec[3] - 1) // 2, (nvec[4] - 1) // 2, 0, 0, 0]
    hold = spec.get("hold", hold_steps)
    for key, value in spec.items():
        if key in CHOICES:
            index, values = CHOICES[key]
            if value not in values:
                raise GameError(f"{where}.{key} must be one of {', '.join(values)}, got "
                                f"{value!r}")
            vector[index] = values.index(value) + 1
        elif key in ("pitch", "yaw"):
            index = 3 if key == "pitch" else 4
            vector[index] += _whole(where, key, value)
            if not 0 <= vector[index] < nvec[index]:
                raise GameError(f"{where}.{key}: {value} bins is past the camera's range "
                                f"({(nvec[index] - 1) // 2} bins either way)")
        elif key == "fn":
            if value not in FUNCTIONS:
                raise GameError(f"{where}.fn must be one of {', '.join(FUNCTIONS)}, got "
                                f"{value!r}")
            vector[5] = FUNCTIONS.index(value)
        elif key in ("craft", "slot"):
            index = 6 if key == "craft" else 7
            vector[index] = _whole(where, key, value)
            if not 0 <= vector[index] < nvec[index]:
                raise GameError(f"{where}.{key} must be in 0..{nvec[index] - 1}, got {value}")
        elif key != "hold":
            raise GameError(f"{where}: unknown key '{key}' (known: move, strafe, stance, "
                            "pitch, yaw, fn, craft, slot, hold)")
    if _whole(where, "hold", hold) < 1:
        raise GameError(f"{where}.hold must be at least 1 tick, got {hold}")
    return vector, hold


def _whole(where: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GameError(f"{where}.{key} must be a whole number, got {value!r}")
    return value


def action_table(settings: MineDojoSettings) -> dict[str, tuple[list[int], int]]:
    """Every named action's (vector, hold): the defaults with the config's action map."""
    entries: dict[str, Any] = {**DEFAULT_ACTIONS, **settings.action_map}
    nvec = settings.nvec()
    table = {name: action_vector(str(name), spec, nvec, settings.hold_steps)
             for name, spec in entries.items() if spec is not None}
    if not table:
        raise GameError("env.kwargs.action_map removes every action")
    return table


def inventory_totals(inventory: dict[str, Any]) -> dict[str, int]:
    """Item name -> count over all slots (MineDojo's spaces in names become underscores)."""
    totals: dict[str, int] = {}
    names = np.asarray(inventory.get("name", []), dtype=str).ravel()
    counts = np.asarray(inventory.get("quantity", []), dtype=np.float64).ravel()
    for name, count in zip(names, counts, strict=False):
        key = str(name).replace(" ", "_")
        if key != "air" and count > 0:
            totals[key] = totals.get(key, 0) + int(count)
    return totals


def _scalars(stats: dict[str, Any]) -> dict[str, Any]:
    """MineDojo's one-element stat arrays as plain numbers (longer arrays as lists)."""
    out: dict[str, Any] = {}
    for key, value in stats.items():
        array = np.asarray(value)
        out[key] = array.reshape(-1)[0].item() if array.size == 1 else array.tolist()
    return out


class MineDojoEnv(gym.Env[np.ndarray, int]):
    """MineDojo's world as frames and named actions; see the module docstring.

    The server starts (and answers ``hello``) when the env is made; ``close`` stops it and
    everything it started. A server that dies, hangs past its deadline or breaks the
    protocol raises GameError, naming its exit status and the tail of its log.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, settings: MineDojoSettings | None = None, **kwargs: Any):
        self.settings = settings or MineDojoSettings.from_kwargs(kwargs)
        self._table = action_table(self.settings)
        self.action_names: tuple[str, ...] = tuple(self._table)
        height, width = self.settings.image_size
        self.observation_space = gym.spaces.Box(0, 255, (height, width, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(len(self.action_names))
        self.render_mode = "rgb_array"
        self.prompt: str | None = None
        self._server = ServerProcess(self.settings, server_script(self.settings))
        self.versions = self._server.versions
        self._frame: np.ndarray | None = None
        self._steps = 0
        self._start: dict[str, int] = {}
        self._collected: dict[str, int] = {}
        self._success = False

    def vector(self, name: str) -> tuple[list[int], int]:
        """The MultiDiscrete vector and hold ticks a named action sends."""
        return self._table[name]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(0, 2**31 - 1))
        reply, obs = self._server.call({"cmd": "reset", "make": self.settings.make(seed)},
                                       "reset_timeout_s")
        nvec = reply.get("action_nvec")
        if nvec is not None and list(nvec) != self.settings.nvec():
            raise GameError(f"MineDojo's action space is {nvec}, the bridge expected "
                            f"{self.settings.nvec()} for cam_interval {self.settings.cam_interval}")
        self.prompt = reply.get("prompt")
        self._frame = self._frame_of(obs)
        self._steps, self._success, self._collected = 0, False, {}
        self._start = inventory_totals(obs.get("inventory", {}))
        return self._frame, {"privileged": self._privileged(obs, {}, 0)}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._frame is None:
            raise RuntimeError("call reset() before step()")
        vector, hold = self._table[self.action_names[int(action)]]
        reply, obs = self._server.call(
            {"cmd": "step", "action": vector, "repeat": hold, "info_keys": self.settings.info_keys},
            "step_timeout_s")
        self._frame = self._frame_of(obs)
        self._steps += 1
        self._success = self._success or bool(reply.get("success"))
        privileged = self._privileged(obs, reply.get("info") or {}, int(reply.get("ticks", 0)))
        terminated = bool(reply.get("done")) or privileged["dead"]
        truncated = not terminated and self._steps >= self.settings.length
        return self._frame, float(reply.get("reward", 0.0)), terminated, truncated, {
            "privileged": privileged}

    def render(self) -> np.ndarray | None:
        return self._frame

    def close(self) -> None:
        self._server.close()

    def _frame_of(self, obs: dict[str, Any]) -> np.ndarray:
        rgb = obs.get("rgb")
        want = (3, *self.settings.image_size)
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.shape != want:
            got = (rgb.dtype, rgb.shape) if isinstance(rgb, np.ndarray) else type(rgb).__name__
            raise GameError(f"MineDojo's rgb observation is {got}, expected uint8 {want} "
                            "(env.kwargs.image_size is [height, width])")
        return np.ascontiguousarray(rgb.transpose(1, 2, 0))

    def _privileged(self, obs: dict[str, Any], info: dict[str, Any], ticks: int
                    ) -> dict[str, Any]:
        inventory = inventory_totals(obs.get("inventory", {}))
        for name, count in inventory.items():
            gained = count - self._start.get(name, 0)
            if gained > self._collected.get(name, 0):
                self._collected[name] = gained
        life = _scalars(obs.get("life_stats", {}))
        rest = {k: v for k, v in obs.items()
                if k not in ("rgb", "inventory", "life_stats", "location_stats")}
        return {
            "task_id": self.settings.task_id,
            "success": self._success,
            "collected": dict(self._collected),
            "inventory": inventory,
            "life_stats": life,
            "location_stats": _scalars(obs.get("location_stats", {})),
            "dead": "life" in life and float(life["life"]) <= 0,
            "ticks": ticks,
            "info": info,
            "obs": rest,
        }


def server_script(settings: MineDojoSettings) -> Path:
    return Path(settings.server).expanduser() if settings.server else \
        Path(__file__).with_name("minedojo_server.py")


class MineDojoGame(Game):
    """Minecraft through MineDojo: a first-person game scored by the task's own success."""

    name = "minedojo"
    family = "first_person"

    def __init__(self, env_kwargs: dict[str, Any], options: dict[str, Any] | None = None):
        super().__init__(env_kwargs, options)
        self.settings = MineDojoSettings.from_kwargs(self.env_kwargs)
        action_table(self.settings)  # a bad action map fails here, before anything starts
        self._versions: dict[str, str] = {}

    def make_env(self) -> MineDojoEnv:
        env = MineDojoEnv(self.settings)
        self._versions = env.versions
        return env

    def perceiver(self, env: gym.Env) -> Any:
        raise GameError("game minedojo: no first-person perception is registered yet; the "
                        "env can be used directly (docs/minedojo.md)")

    def reached(self, info: dict[str, Any]) -> set[str]:
        """The task id once MineDojo reports success, and every item the episode collected."""
        privileged = info.get("privileged", {})
        reached = {name for name, count in privileged.get("collected", {}).items() if count > 0}
        if privileged.get("success"):
            reached.add(self.settings.task_id)
        return reached

    def items(self) -> tuple[str, ...]:
        return (self.settings.task_id,)

    def versions(self) -> dict[str, str]:
        return {"cairn_bridge_protocol": str(self._versions.get("protocol", "")),
                "minedojo": self._versions.get("minedojo") or "not started",
                "minedojo_python": self._versions.get("python") or "unknown",
                "gymnasium": package_version("gymnasium") or "unknown"}
