"""Make the Minetest perception assets from real games: the HUD templates and the look book.

    python -m bench.minetest_perception make-assets            # about 6 minutes on 2 cores

(Perception imports nothing of the envs, so the games are started from the bench, which
hands :func:`make_assets` a ``make_env``.)

HUD: a calibration world mod (written here, loaded into the calibration games only) fills
the hotbar with random stacks of :data:`ITEMS`, sets the health and the breath, and changes
them every ``PHASE_S`` seconds, while the player turns and looks about so that the scene
behind the HUD keeps changing. A frame counts when the truth agrees with itself one step
before and after it (the HUD had time to show it) and no damage flash tints it. The truth
labels those frames (that is calibration: training the perception); from them come the
hotbar's geometry, the item icons, the digits, the hearts and the bubbles (see
``minetest_hud``). The last HUD seed is held out and read back as a check.

Looks: :func:`scripted_episode` plays a few worlds (dig the ground, find and dig a trunk and
its crown, walk about), and a seeded k-means over the looks of the crosshair patches and of
the view's cells, unlabelled, makes the look book.

Both files go to ``perception/assets/`` (``--out`` elsewhere); the same seeds make the same
HUD assets, and the look book up to what the games drew.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cairn.perception.first_person import (
    HUE_BINS,
    LookBook,
    ViewConfig,
    crosshair_patch,
    grid_features,
    look_features,
)
from cairn.perception.minetest_hud import ASSETS, HudAssets, HudReader, Templates

ITEMS = ("default:dirt", "default:tree", "default:leaves", "default:apple", "default:sapling",
         "default:grass_1", "default:wood", "default:stick", "default:cobble", "default:stone",
         "default:sand", "default:gravel", "flowers:dandelion_yellow", "flowers:rose",
         "flowers:tulip", "flowers:dandelion_white", "flowers:viola", "flowers:geranium",
         "flowers:chrysanthemum_green", "flowers:mushroom_brown", "flowers:mushroom_red",
         "default:blueberries", "default:bush_stem", "default:bush_leaves",
         "default:bush_sapling", "default:blueberry_bush_leaves", "default:coal_lump",
         "default:flint", "default:clay_lump", "default:torch", "default:papyrus",
         "default:aspen_tree", "default:aspen_leaves", "default:pine_tree", "default:jungletree",
         "default:snow", "default:mossycobble", "default:fern_1", "default:dry_grass_1",
         "default:junglegrass", "default:clay", "default:desert_sand", "default:pine_needles",
         "default:dirt_with_grass", "default:water_source")
"""Items the calibration shows; their icons become the item kinds, in this order."""
PHASE_S = 2.0
SLOTS = 8
"""Minetest Game's hotbar holds 8 stacks."""
MOD = """
-- Air that stops the breath refilling (the game refills it every half second, and takes one
-- every two seconds where a node drowns): placed where the player's eyes are.
minetest.register_node("cairn_calibrate:stale_air", {
	drawtype = "airlike", paramtype = "light", sunlight_propagates = true, walkable = false,
	pointable = false, diggable = false, buildable_to = true, drowning = 1,
})
local items = {%(items)s}
local phase_s = %(phase)s
local rng = PcgRandom(tonumber(minetest.settings:get("cairn_calibrate_seed")) or 1)
local t, phase = 0, -1
minetest.register_globalstep(function(dtime)
	local player = minetest.get_connected_players()[1]
	if not player then return end
	t = t + dtime
	if math.floor(t / phase_s) ~= phase then
		phase = math.floor(t / phase_s)
		local eye = vector.round(vector.add(player:get_pos(),
			{x = 0, y = player:get_properties().eye_height, z = 0}))
		if minetest.get_node(eye).name == "air" then
			minetest.set_node(eye, {name = "cairn_calibrate:stale_air"})
		end
		local inv = player:get_inventory()
		for i = 1, %(slots)d do
			local count = rng:next(1, 6) == 1 and 1 or rng:next(2, 99)
			local stack = items[rng:next(1, #items)] .. " " .. count
			inv:set_stack("main", i, rng:next(1, 5) == 1 and "" or stack)
		end
		player:set_hp(rng:next(1, 20))
		player:set_breath(rng:next(1, 3) == 1 and 10 or rng:next(2, 9))
	end
end)
"""
LOOK_ACTIONS = ("noop", "turn_left", "look_up", "noop", "turn_left", "look_down", "noop",
                "look_down", "turn_right", "look_up")


MakeEnv = Callable[[list[str], dict[str, Any]], Any]
"""``make_env(world_mods, settings)``: a new Minetest env of the assets' window size."""


def _key(truth: dict[str, Any]) -> str:
    return json.dumps([truth["inventory"], truth["hp"]], sort_keys=True)


def calibration_frames(make_env: MakeEnv, seed: int, steps: int, cache: Path | None = None
                       ) -> list[tuple[np.ndarray, dict[str, Any]]]:
    """Frames whose hotbar and health the truth states one step before and after too; the
    truth of each gets ``steady_breath``, whether the same holds for the breath (the game
    refills it every half second, so it changes more often). ``cache``: a folder where the
    frames of a seed are kept, and read back instead of playing again."""
    path = cache / f"calibration-{seed}-{steps}.npz" if cache else None
    if path is not None and path.exists():
        with np.load(path) as saved:
            return list(zip(saved["frames"], json.loads(str(saved["truths"])), strict=True))
    with tempfile.TemporaryDirectory(prefix="cairn-calibrate-") as tmp:
        mod = Path(tmp) / "cairn_calibrate"
        mod.mkdir()
        items = ", ".join(f'"{name}"' for name in ITEMS)
        (mod / "init.lua").write_text(MOD % {"items": items, "phase": PHASE_S, "slots": SLOTS})
        (mod / "mod.conf").write_text("name = cairn_calibrate\n")
        env = make_env([str(mod)], {"cairn_calibrate_seed": seed})
        try:
            frame, info = env.reset(seed=seed)
            seen = [(frame, info["privileged"])]
            for i in range(steps):
                frame, _, terminated, truncated, info = env.step(LOOK_ACTIONS[i % 10])
                seen.append((frame, info["privileged"]))
                if terminated or truncated:
                    break
        finally:
            env.close()
    kept = []
    for before, (frame, truth), after in zip(seen, seen[1:], seen[2:], strict=False):
        if _key(before[1]) == _key(truth) == _key(after[1]):
            steady = before[1]["breath"] == truth["breath"] == after[1]["breath"]
            kept.append((frame, {"inventory": truth["inventory"], "hp": truth["hp"],
                                 "breath": truth["breath"], "steady_breath": steady}))
    if path is not None and kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        _save_atomic(path, lambda tmp: np.savez_compressed(
            tmp, frames=np.stack([f for f, _ in kept]), truths=json.dumps([t for _, t in kept])))
    return kept


# -- the HUD ---------------------------------------------------------------------------------------


def _frame_lines(frames: np.ndarray, run: int = 21) -> np.ndarray:
    """Pixels of the hotbar's grey frame: the same grey in nearly every frame, in straight
    runs of at least ``run`` pixels (a statbar's icons are grey in places too)."""
    median = np.median(frames, axis=0)
    same = (np.abs(frames - median[None]).max(axis=3) <= 1).mean(axis=0) >= 0.9
    grey = (np.ptp(median, axis=2) == 0) & (median[..., 0] >= 100)
    lines = (same & grey).astype(np.uint8)
    lines[:frames.shape[1] * 3 // 4] = 0
    along = cv2.morphologyEx(lines, cv2.MORPH_OPEN, np.ones((1, run), np.uint8))
    down = cv2.morphologyEx(lines, cv2.MORPH_OPEN, np.ones((run, 1), np.uint8))
    return (along | down).astype(bool)


def _runs(profile: np.ndarray, share: float) -> list[tuple[int, int]]:
    idx = np.flatnonzero(profile >= share * profile.max())
    groups = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
    return [(int(g[0]), int(g[-1])) for g in groups if len(g)]


def hotbar_geometry(frames: np.ndarray) -> dict[str, Any]:
    lines = _frame_lines(frames)
    seps = _runs(lines.sum(axis=0), 0.5)
    gaps = [(a[1] + 1, b[0] - a[1] - 1) for a, b in zip(seps, seps[1:], strict=False)]
    width = int(np.bincount([g for _, g in gaps]).argmax())
    starts = [x for x, g in gaps if abs(g - width) <= 1]
    pitch = int(np.median(np.diff(starts)))
    borders = _runs(lines.sum(axis=1), 0.5)
    y0 = borders[0][1] + 1
    xs = [starts[-1] - pitch * k for k in range(SLOTS - 1, -1, -1)]
    ys, xs_line = np.nonzero(lines)
    grey = float(np.median(frames[0][ys, xs_line, 1]))
    top = min(int(ys.min()), y0) - 4
    box = (max(xs[0] - 8, 0), top, min(xs[-1] + width + 8, frames.shape[2]), frames.shape[1])
    pick = np.linspace(0, len(ys) - 1, min(len(ys), 200)).astype(int)
    return {"slots": np.array([[y0, x] for x in xs], np.int32), "slot_size": width,
            "hotbar": box, "frame_pixels": np.stack([ys[pick], xs_line[pick]], axis=1),
            "frame_grey": grey}


def _template(stack: np.ndarray, keep: np.ndarray, cap: int = 400, spread: float = 4.0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels (where ``keep``) the same over a stack of images, at most ``cap`` of them."""
    same = (np.ptp(stack, axis=0).max(axis=2) <= spread) & keep
    ys, xs = np.nonzero(same)
    pick = np.linspace(0, len(ys) - 1, min(len(ys), cap)).astype(int) if len(ys) else []
    ys, xs = ys[pick], xs[pick]
    return ys, xs, np.median(stack, axis=0)[ys, xs]


def fit_items(data, geometry) -> Templates:
    s = geometry["slot_size"]
    keep = np.ones((s, s), bool)
    keep[s * 3 // 5:, s // 2:] = False  # where counts are drawn
    found = []
    for name in ITEMS:
        cells = [_slot(frame, geometry, stack["slot"] - 1) for frame, truth in data
                 for stack in truth["inventory"] if stack["name"] == name]
        if len(cells) < 4:
            raise ValueError(f"the calibration showed {name} {len(cells)} times (4 needed): "
                             "give more --hud-steps")
        found.append(_template(np.stack(cells), keep))
    return Templates.pack(found)


def _slot(frame: np.ndarray, geometry: dict[str, Any], k: int) -> np.ndarray:
    y, x = geometry["slots"][k]
    s = geometry["slot_size"]
    return frame[y:y + s, x:x + s].astype(np.float32)


def fit_glyphs(data, geometry) -> tuple[np.ndarray, np.ndarray]:
    """Digit cells (left, right) and each digit's coverage, from the labelled counts."""
    whites: dict[int, list[np.ndarray]] = {}
    for frame, truth in data:
        for stack in truth["inventory"]:
            cell = _slot(frame, geometry, stack["slot"] - 1).min(axis=2) / 255.0
            whites.setdefault(stack["count"], []).append(cell)
    ones = np.mean([(w > 0.8).mean(axis=0) for c, ws in whites.items() if 2 <= c <= 9
                    for w in [np.stack(ws)]], axis=0)
    twos = np.mean([(w > 0.8).mean(axis=0) for c, ws in whites.items() if c >= 10
                    for w in [np.stack(ws)]], axis=0)
    rows = _runs(ones.max(axis=1), 0.2)
    right = _runs(ones.max(axis=0), 0.2)
    both = _runs(twos.max(axis=0), 0.2)
    y0, y1 = rows[0][0] - 1, rows[-1][1] + 2
    rx0, rx1 = right[0][0] - 1, right[-1][1] + 2
    lx1 = max(b for _, b in both if b < rx0 - 1) + 2
    gw = rx1 - rx0
    cells = np.array([[y0, lx1 - gw], [y0, rx0]], np.int32)
    samples: dict[int, list[np.ndarray]] = {d: [] for d in range(10)}
    for count, ws in whites.items():
        for w in ws:
            left, rightc = (w[y0:y1, x:x + gw] for _, x in cells)
            if count >= 2:
                samples[count % 10 if count >= 10 else count].append(rightc)
            if count >= 10:
                samples[count // 10].append(left)
    missing = [d for d, v in samples.items() if len(v) < 3]
    if missing:
        raise ValueError(f"the calibration drew digits {missing} under 3 times: give more "
                         "--hud-steps")
    glyphs = np.stack([np.percentile(np.stack(samples[d]), 5, axis=0) for d in range(10)])
    return cells, glyphs.astype(np.float32)


def fit_statbar(data, field: str, icons: int, parts: int, band: tuple[int, int],
                first: int = 1, shown: int | None = None) -> tuple[Templates, np.ndarray]:
    """Templates of a statbar's units, in order (``parts`` per icon: 2 for half hearts).

    Unit u is the pixels the same in every frame with ``field`` >= u that were not already
    the same in every frame with ``field`` >= u - 1 (only frames where the bar shows,
    ``field`` < ``shown``, count). That is measured for icons ``first`` to ``first + 2`` (the
    calibration shows each of them present and absent); a bar's icons are one image repeated
    at one pitch, so every unit is its part of the first measured icon, shifted."""
    y0, y1 = band
    rows = [(frame[y0:y1].astype(np.float32), truth[field]) for frame, truth in data
            if shown is None or truth[field] < shown]
    stack = np.stack([r for r, _ in rows])
    values = np.array([v for _, v in rows])
    lowest = first * parts
    before = np.ptp(stack[values >= lowest], axis=0).max(axis=2) <= 4
    measured = []
    for u in range(lowest + 1, lowest + 3 * parts + 1):
        ys, xs, vals = _template(stack[values >= u], ~before, cap=300)
        if len(ys) < 10:
            raise ValueError(f"{field} {u} was never told apart in the calibration: give more "
                             "--hud-steps")
        measured.append((ys, xs, vals))
        before |= np.ptp(stack[values >= u], axis=0).max(axis=2) <= 4
    centres = [float(np.median(xs)) for _, xs, _ in measured]
    pitch = int(round(np.median([centres[u + parts] - centres[u]
                                 for u in range(2 * parts)])))
    found, mask = [], np.zeros((data[0][0].shape[0], stack.shape[2]), bool)
    for icon in range(icons):
        for part in range(parts):
            ys, xs, vals = measured[part]
            xs = xs + (icon - first) * pitch
            if xs.min() < 0 or xs.max() >= stack.shape[2]:
                raise ValueError(f"the {field} bar's icon {icon} falls off the frame: the "
                                 "calibration did not measure its pitch right")
            found.append((ys + y0, xs, vals))
            mask[ys + y0, xs] = True
    return Templates.pack(found), mask


def fit_hud(data, size: tuple[int, int]) -> HudAssets:
    """Every HUD template from labelled frames; frames the damage flash tints are left out,
    except to measure the flash's colour (the hotbar's grey frame, tinted by a known amount)."""
    frames = np.stack([f for f, _ in data]).astype(np.int16)
    geometry = hotbar_geometry(frames)
    grey, pixels = geometry["frame_grey"], geometry["frame_pixels"]
    seen = [f[pixels[:, 0], pixels[:, 1]].astype(np.float32) for f, _ in data]
    tints = [1 - float(np.median(s[:, 1])) / grey for s in seen]
    clean = [d for d, a in zip(data, tints, strict=True) if a <= 0.001]
    est = [(np.median(s, axis=0) - (1 - a) * grey) / a
           for s, a in zip(seen, tints, strict=True) if a > 0.1]
    flash = np.clip(np.median(est, axis=0), 0, 255) if est else np.array([180.0, 0.0, 0.0])
    items = fit_items(clean, geometry)
    cells, glyphs = fit_glyphs(clean, geometry)
    top = geometry["hotbar"][1]
    band = (max(top - geometry["slot_size"], 0), top)
    hearts, heart_mask = fit_statbar(clean, "hp", 10, 2, band)
    steady = [d for d in clean if d[1]["steady_breath"]]
    bubbles, bubble_mask = fit_statbar(steady, "breath", 10, 1, band, first=2, shown=10)
    ys, xs = np.nonzero(heart_mask | bubble_mask)
    statbars = (int(xs.min()) - 2, int(ys.min()) - 2, int(xs.max()) + 3, top)
    return HudAssets(size, geometry["slots"], geometry["slot_size"], geometry["hotbar"],
                     statbars, cells, glyphs, items, hearts, bubbles, pixels, grey,
                     flash.astype(np.float32))


def check_hud(reader: HudReader, data) -> dict[str, float]:
    """Exact-read rates of slot counts, slot kinds (as the calibration's names), health and
    breath on labelled frames."""
    counts = kinds = slots = health = breath = shown = 0
    for frame, truth in data:
        reading = reader.read(frame)
        held = {s["slot"] - 1: s for s in truth["inventory"]}
        for k, (kind, count) in enumerate(reading.slots):
            stack = held.get(k)
            slots += 1
            counts += count == (stack["count"] if stack else 0)
            want = f"item-{ITEMS.index(stack['name'])}" if stack else None
            kinds += kind == want
        health += reading.counters["health"] == truth["hp"]
        if truth["steady_breath"]:
            shown += 1
            breath += reading.counters.get("breath", 10) == truth["breath"]
    return {"slot counts": counts / max(slots, 1), "slot kinds": kinds / max(slots, 1),
            "health": health / max(len(data), 1), "breath": breath / max(shown, 1),
            "frames": len(data), "frames with a steady breath": shown}


# -- looks -----------------------------------------------------------------------------------------


def scripted_episode(env, seed: int, max_steps: int = 140) -> Iterator[tuple[np.ndarray, dict]]:
    """(frame, info) of a scripted episode: dig the ground in front, turn to a trunk within
    reach and dig it, dig into its crown, look at the sky and the ground, walk about. The
    truth only steers the script (when a node is gone, when a trunk is in front); perception
    never sees it."""
    frame, info = env.reset(seed=seed)
    state = {"truth": info["privileged"], "steps": 0, "over": False}
    yield frame, info

    def act(action: str):
        frame, _, terminated, truncated, info = env.step(action)
        state["truth"], state["steps"] = info["privileged"], state["steps"] + 1
        state["over"] = terminated or truncated or state["steps"] >= max_steps
        return frame, info

    def pointed() -> str:
        target = state["truth"]["pointed"]
        return target["name"] if target else ""

    def dig(limit: int):
        start = state["truth"]["pointed"]
        for _ in range(limit):
            now = state["truth"]["pointed"]
            if state["over"] or now is None or now["under"] != start["under"]:
                return
            yield act("dig")

    def run(*actions: str):
        for action in actions:
            if state["over"]:
                return
            yield act(action)

    yield from run("noop", "turn_right", "turn_right", "look_up", "look_up", "look_up",
                   "look_down", "look_down", "look_down", "look_down", "look_down", "look_down")
    for _ in range(3):
        yield from dig(6)
        if state["truth"]["pointed"] is None:
            yield from run("look_down")
    yield from run("look_up", "look_up", "look_up")
    for action in ["turn_left"] * 24 + ["forward"] * 4:
        if pointed().endswith(":tree") or state["over"]:
            break
        yield act(action)
    yield from dig(10)
    yield from run("look_up", "look_up")
    for _ in range(3):
        yield from dig(6)
        yield from run("look_up")
    yield from run("look_down", "look_down", "look_down", "look_down", "turn_right",
                   "turn_right", "turn_right")
    walk = ("forward", "forward", "turn_left", "look_up", "forward", "turn_right", "turn_right",
            "look_down", "dig", "dig", "jump", "forward", "turn_right", "turn_right")
    while not state["over"]:
        yield from run(*walk)


def exploration_frames(make_env: MakeEnv, seed: int, steps: int, cache: Path | None = None
                       ) -> list[np.ndarray]:
    """The frames of :func:`scripted_episode` on ``seed`` (kept in ``cache`` if given)."""
    path = cache / f"exploration-{seed}-{steps}.npz" if cache else None
    if path is not None and path.exists():
        with np.load(path) as saved:
            return list(saved["frames"])
    env = make_env([], {})
    try:
        frames = [frame for frame, _ in scripted_episode(env, seed, steps)]
    finally:
        env.close()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _save_atomic(path, lambda tmp: np.savez_compressed(tmp, frames=np.stack(frames)))
    return frames


def look_samples(frames: list[np.ndarray], hud: HudReader, config: ViewConfig | None = None,
                 cells_per_frame: int = 2, seed: int = 0) -> np.ndarray:
    """Looks of every crosshair patch and of a few random view cells per frame (few: the
    kinds are then mostly of things up close, which is what the crosshair meets)."""
    config = config or ViewConfig()
    rng = np.random.default_rng(seed)
    out = []
    for frame in frames:
        view = hud.read(frame).frame
        patch, weights = crosshair_patch(view, config)
        out.append(look_features(patch, weights))
        feats, share = grid_features(view, (~hud.mask).astype(np.float32), config.rows,
                                     config.cols)
        visible = feats[share >= config.min_share]
        out.extend(visible[rng.choice(len(visible), min(cells_per_frame, len(visible)),
                                      replace=False)])
    return np.asarray(out, np.float32)


LOOK_SCALE = np.array([0.03, 0.03, 0.03, 0.03, 0.5, 0.2, 0.5, 0.15, 0.1, 0.2, 0.2]
                      + [0.3] * HUE_BINS, np.float32)
"""What difference in each of :data:`~cairn.perception.first_person.FEATURES` counts as one
unit of a look's distance: chroma most (a material's colour), brightness least (daylight and
face shading move it)."""


def _save_atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_assets(make_env: MakeEnv, size: tuple[int, int], out: Path = ASSETS,
                hud_seeds: tuple[int, ...] = (101, 102, 103, 104, 105), hud_steps: int = 240,
                look_seeds: tuple[int, ...] = (111, 112, 113, 114, 115), look_steps: int = 140,
                kinds: int = 32, cache: Path | None = None) -> dict[str, Any]:
    """Play the calibration and exploration games, write ``minetest_hud.npz`` and
    ``minetest_looks.npz`` into ``out``; returns the held-out HUD check and sizes.
    ``cache``: a folder to keep the calibration frames in (see :func:`calibration_frames`)."""
    out.mkdir(parents=True, exist_ok=True)
    data = {seed: calibration_frames(make_env, seed, hud_steps, cache) for seed in hud_seeds}
    train = [d for seed in hud_seeds[:-1] for d in data[seed]]
    _save_atomic(out / "minetest_hud.npz", fit_hud(train, size).save)
    reader = HudReader(HudAssets.load(out / "minetest_hud.npz"))
    check = check_hud(reader, data[hud_seeds[-1]])
    frames = [f for seed in look_seeds
              for f in exploration_frames(make_env, seed, look_steps, cache)]
    looks = look_samples(frames, reader)
    _save_atomic(out / "minetest_looks.npz", LookBook.fit(looks, kinds, LOOK_SCALE).save)
    return {"hud frames": len(train), "held-out seed": hud_seeds[-1], "held-out check": check,
            "look samples": len(looks), "look frames": len(frames), "kinds": kinds}
