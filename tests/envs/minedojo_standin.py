"""A stand-in world for the MineDojo bridge's tests. MINEDOJO ITSELF IS NOT EXERCISED HERE.

MineDojo cannot run on this machine (its only release pins ``gym==0.21``, it needs JDK 8 and
downloads Minecraft's build at its first reset), so the bridge is tested against this small
numpy world instead. It has MineDojo's interface as the bridge server uses it:
``make(task_id=..., image_size=(H, W), seed=..., world_seed=..., cam_interval=...)``, then
``reset() -> obs`` and ``step(8-int MultiDiscrete action) -> (obs, reward, done, info)``
(gym 0.21 style), ``is_successful``, ``task_prompt``, ``action_space.nvec``, ``close()``; its
observations are MineDojo-shaped dicts (``rgb`` (3, H, W) uint8, ``inventory`` with 36
slots of names and quantities, ``life_stats``, ``location_stats``, ``voxels``).

The world is a flat grid seen in first person by ray casting, so moving and turning change
the view; holding attack on the log in front for ``break_ticks`` ticks adds a log to the
inventory, and ``harvest_N_ITEM`` succeeds once N items were gained. It is deterministic:
the same make arguments and actions give the same frames, so a test can render locally what
the server must have sent. Options for fault tests: ``die_at_tick`` (``os._exit(7)``),
``hang_at_tick`` (starts a child in its process group, then sleeps), ``fail_at_tick``
(raises), ``hurt_per_tick`` (life drains; death ends the episode), ``chatty`` (prints on
stdout, and so does a child it starts), ``leak`` (starts a child that no close stops).

Runs under the bridge server's interpreter: numpy and the standard library only, Python 3.9.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import numpy as np

SIZE = 24
AIR, LOG, LEAVES, STONE = 0, 1, 2, 3
NAMES = ("air", "log", "leaves", "stone")
COLOURS = np.array([[0, 0, 0], [110, 80, 40], [40, 140, 40], [128, 128, 128]], np.float64)
SKY, GROUND = np.array([150, 190, 250.0]), np.array([90, 150, 60.0])
FOV, VIEW, RAY_STEP, WALK, REACH = 70.0, 12.0, 0.05, 0.25, 3.0
SLOTS = 36


class Space:
    def __init__(self, nvec: list) -> None:
        self.nvec = np.array(nvec, dtype=np.int64)


class StandInWorld:
    def __init__(self, task_id: str, image_size, seed=None, world_seed=None,
                 cam_interval: float = 15.0, break_ticks: int = 20, hurt_per_tick: float = 0.0,
                 die_at_tick=None, hang_at_tick=None, fail_at_tick=None,
                 chatty: bool = False, leak: bool = False) -> None:
        task = re.fullmatch(r"harvest_(\d+)_(\w+)", task_id)
        if task is None:
            raise ValueError(f"the stand-in knows harvest_N_ITEM tasks only, not {task_id!r}")
        self.quantity, self.target = int(task.group(1)), task.group(2)
        self.task_prompt = f"obtain {self.quantity} {self.target}"
        self.height, self.width = (image_size, image_size) if isinstance(image_size, int) \
            else (int(image_size[0]), int(image_size[1]))
        self.seeds = (int(world_seed or 0), int(seed or 0))
        self.cam = float(cam_interval)
        bins = int(np.ceil(360 / self.cam)) + 1
        self.action_space = Space([3, 3, 4, bins, bins, 8, 244, SLOTS])
        self.break_ticks, self.hurt = int(break_ticks), float(hurt_per_tick)
        self.faults = {"die": die_at_tick, "hang": hang_at_tick, "fail": fail_at_tick}
        self.chatty = chatty
        if leak:  # as a Java process that outlives a close: only a group kill reaches it
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            print(f"stand-in: leaked child {child.pid}", file=sys.stderr, flush=True)
        if chatty:  # as libraries and Minecraft's Java do: text on stdout, from a child too
            print("stand-in: made, on stdout")
            subprocess.run([sys.executable, "-c", "print('stand-in child: on fd 1')"],
                           check=True)
        self.is_successful = False

    def reset(self) -> dict:
        rng = np.random.default_rng(list(self.seeds))
        grid = rng.choice(4, size=(SIZE, SIZE), p=[0.8, 0.1, 0.05, 0.05])
        grid[0, :] = grid[-1, :] = grid[:, 0] = grid[:, -1] = STONE
        c = SIZE // 2
        grid[c - 2:c + 3, c - 2:c + 3] = AIR
        grid[c + 2, c] = LOG  # a log in reach in front of the spawn, which faces +x
        self.grid = grid
        self.pos = np.array([c + 0.5, c + 0.5])
        self.yaw, self.pitch, self.life = 0.0, 0.0, 20.0
        self.names = ["air"] * SLOTS
        self.counts = np.zeros(SLOTS, np.float32)
        self.ticks, self.hits, self.actions = 0, 0, []
        self.start = self.count(self.target)
        self.is_successful = False
        return self.observe()

    def step(self, action) -> tuple:
        a = [int(v) for v in np.asarray(action).reshape(-1)]
        nvec = self.action_space.nvec
        if len(a) != 8 or any(not 0 <= a[i] < int(nvec[i]) for i in range(8)):
            raise ValueError(f"action {a} is outside MultiDiscrete{self.action_space.nvec}")
        self.actions.append(a)
        self.ticks += 1
        if self.chatty:
            print(f"stand-in: tick {self.ticks}, on stdout")
        self.misbehave()
        centre = (int(self.action_space.nvec[3]) - 1) // 2
        self.pitch = float(np.clip(self.pitch + (a[3] - centre) * self.cam, -90, 90))
        self.yaw = (self.yaw + (a[4] - centre) * self.cam) % 360
        ahead, right = self.direction(0.0), self.direction(90.0)
        motion = {1: ahead, 2: -ahead}.get(a[0], 0) + {1: -right, 2: right}.get(a[1], 0)
        self.walk(np.asarray(motion, np.float64) * WALK)
        before = self.count(self.target)
        self.act(a[5])
        gained = self.count(self.target) - before
        self.life = max(0.0, self.life - self.hurt)
        self.is_successful = self.count(self.target) - self.start >= self.quantity
        done = self.is_successful or self.life <= 0
        return self.observe(), float(gained), done, {"actions": [list(v) for v in self.actions],
                                                     "ticks": self.ticks}

    def close(self) -> None:
        self.grid = None

    # -- the world -------------------------------------------------------------------------------

    def direction(self, offset: float) -> np.ndarray:
        angle = np.radians(self.yaw + offset)
        return np.array([np.cos(angle), np.sin(angle)])

    def cell(self, point) -> tuple:
        x, z = (int(np.clip(np.floor(v), 0, SIZE - 1)) for v in point)
        return x, z

    def walk(self, delta: np.ndarray) -> None:
        target = self.pos + delta
        if self.grid[self.cell(target)] == AIR:
            self.pos = target

    def facing(self) -> tuple:
        """The first cell that is not air within reach straight ahead (or the last one)."""
        for reach in np.arange(0.5, REACH + 0.01, 0.1):
            cell = self.cell(self.pos + self.direction(0.0) * reach)
            if self.grid[cell] != AIR:
                return cell
        return cell

    def act(self, fn: int) -> None:
        front = self.facing()
        if fn == 3 and self.grid[front] == LOG:
            self.hits += 1
            if self.hits >= self.break_ticks:
                self.grid[front], self.hits = AIR, 0
                self.add("log", 1)
            return
        self.hits = 0
        if fn == 1 and self.grid[front] == AIR and self.count("log") > 0:
            self.grid[front] = LOG
            self.add("log", -1)

    def count(self, name: str) -> int:
        return int(sum(self.counts[i] for i, n in enumerate(self.names) if n == name))

    def add(self, name: str, amount: int) -> None:
        slot = self.names.index(name) if name in self.names else self.names.index("air")
        self.names[slot] = name
        self.counts[slot] += amount
        if self.counts[slot] <= 0:
            self.names[slot], self.counts[slot] = "air", 0

    def misbehave(self) -> None:
        if self.ticks == self.faults["die"]:
            print(f"stand-in: exiting at tick {self.ticks} as the test asked", file=sys.stderr,
                  flush=True)
            os._exit(7)
        if self.ticks == self.faults["fail"]:
            raise RuntimeError(f"stand-in: step failed at tick {self.ticks} as the test asked")
        if self.ticks == self.faults["hang"]:
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            print(f"stand-in: child {child.pid} started; hanging", file=sys.stderr, flush=True)
            time.sleep(600)

    # -- observations ----------------------------------------------------------------------------

    def render(self) -> np.ndarray:
        """(3, H, W) uint8: one ray per column, walls shaded by distance."""
        h, w = self.height, self.width
        angles = np.radians(self.yaw + np.linspace(-FOV / 2, FOV / 2, w))
        dists = np.arange(1, int(VIEW / RAY_STEP) + 1) * RAY_STEP
        xs = np.clip(np.floor(self.pos[0] + np.cos(angles)[:, None] * dists), 0, SIZE - 1)
        zs = np.clip(np.floor(self.pos[1] + np.sin(angles)[:, None] * dists), 0, SIZE - 1)
        blocks = self.grid[xs.astype(np.int64), zs.astype(np.int64)]
        hit = blocks != AIR
        first = hit.argmax(axis=1)
        seen = hit.any(axis=1)
        dist = dists[first] * np.cos(angles - np.radians(self.yaw))
        kind = blocks[np.arange(w), first]
        horizon = h / 2 - self.pitch / 90 * h
        rows = np.arange(h)[:, None]
        frame = np.where((rows < horizon)[..., None], SKY, GROUND) * np.ones((h, w, 1))
        half = h / np.maximum(dist, 0.1) / 2
        wall = (rows >= horizon - half) & (rows <= horizon + half) & seen
        colour = COLOURS[kind] * np.clip(1 - dist / VIEW, 0.25, 1)[:, None]
        frame = np.where(wall[..., None], colour[None, :, :], frame)
        return np.round(frame).astype(np.uint8).transpose(2, 0, 1)

    def observe(self) -> dict:
        x, z = self.cell(self.pos)
        ring = self.grid[max(x - 1, 0):x + 2, max(z - 1, 0):z + 2]
        layer = np.array([[NAMES[b] for b in row] for row in ring])
        voxels = np.stack([np.full(layer.shape, "grass block"), layer,
                           np.full(layer.shape, "air")], axis=1)
        return {
            "rgb": self.render(),
            "inventory": {"name": np.array(self.names), "quantity": self.counts.copy(),
                          "variant": np.zeros(SLOTS, np.int64),
                          "cur_durability": np.full(SLOTS, -1, np.float32),
                          "max_durability": np.full(SLOTS, -1, np.float32)},
            "life_stats": {"life": np.array([self.life], np.float32),
                           "food": np.array([20.0], np.float32),
                           "oxygen": np.array([300.0], np.float32),
                           "is_sleeping": False},
            "location_stats": {"pos": np.array([self.pos[0], 64.0, self.pos[1]], np.float32),
                               "yaw": np.array([self.yaw], np.float32),
                               "pitch": np.array([self.pitch], np.float32),
                               "biome_id": np.int64(4)},
            "voxels": {"block_name": voxels},
        }


def make(task_id: str, image_size, **kwargs) -> StandInWorld:
    """The factory the bridge server calls with ``minedojo.make``'s keyword arguments."""
    return StandInWorld(task_id, image_size, **kwargs)
