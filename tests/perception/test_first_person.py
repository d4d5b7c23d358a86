"""First-person perception: the generic pieces on synthetic images, the Minetest HUD and the
perceiver on real Minetest frames saved with their truth (tests/perception/data/minetest/,
made by the calibration's games on seeds the assets were not made from; the view outside
the centre and the HUD is coarsened to keep the files small), and one real game.
"""

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from cairn.perception.first_person import (
    FEATURES,
    LookBook,
    ViewConfig,
    crosshair_patch,
    grid_features,
    look_features,
)
from cairn.perception.make_minetest_assets import ITEMS
from cairn.perception.minetest_hud import HudAssets, HudReader, load_perceiver
from cairn.perception.percept import UNKNOWN

from ..conftest import tiny_clip_folder

DATA = Path(__file__).parent / "data" / "minetest"
TRUTH = json.loads((DATA / "frames.json").read_text())


def frame(name: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(DATA / f"{name}.png")), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def reader():
    return HudReader()


@pytest.fixture(scope="module")
def perceiver():
    return load_perceiver((640, 360))


# -- generic pieces ----------------------------------------------------------------------------


def test_a_cell_and_the_same_pixels_as_a_patch_have_the_same_look():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (90, 160, 3)).astype(np.uint8)
    image[:45, :40] = (120, 70, 40)  # a brown: hue 22 degrees
    image[45:, 120:] = (50, 120, 40)  # a green: hue 113 degrees
    feats, share = grid_features(image, np.ones((90, 160), np.float32), 2, 4)
    assert feats.shape == (2, 4, len(FEATURES)) and np.allclose(share, 1.0)
    for r, c in ((0, 0), (0, 2), (1, 3)):
        alone = look_features(image[r * 45:(r + 1) * 45, c * 40:(c + 1) * 40])
        assert np.allclose(feats[r, c], alone, atol=1e-4)
    brown, green = feats[0, 0], feats[1, 3]
    assert brown[FEATURES.index("chroma_r")] == pytest.approx(121 / 233, abs=1e-4)
    assert brown[FEATURES.index("log_brightness_spread")] == pytest.approx(0, abs=2e-3)
    hue = FEATURES.index("hue_0")
    assert brown[hue] == pytest.approx(1.0) and green[hue + 3] == pytest.approx(1.0)


def test_the_crosshair_patch_leaves_out_the_cross_and_outlines_but_not_a_black_view():
    image = np.full((100, 200, 3), 90, np.uint8)
    image[48:52, :] = 255  # a crosshair's lines
    image[:, 98:102] = 255
    image[40, :] = 0  # an outline
    patch, weights = crosshair_patch(image, ViewConfig(patch=28))
    assert patch.shape == (28, 28, 3)
    assert (patch[weights > 0] == 90).all() and (weights == 0).sum() > 4 * 28
    black = np.zeros((100, 200, 3), np.uint8)
    _, weights = crosshair_patch(black, ViewConfig(patch=28))
    assert weights.sum() > 0.7 * 28 * 28  # the eye inside a block: the view is black


def test_a_look_book_is_deterministic_and_survives_saving(tmp_path):
    rng = np.random.default_rng(1)
    centres = np.array([[0.0] * len(FEATURES), [5.0] * len(FEATURES), [-5.0] * len(FEATURES)])
    looks = np.concatenate([c + rng.normal(0, 0.3, (50, len(FEATURES))) for c in centres])
    book = LookBook.fit(looks, 3, seed=4)
    again = LookBook.fit(looks, 3, seed=4)
    assert np.array_equal(book.centroids, again.centroids)
    assert book.names == ("look-0", "look-1", "look-2")
    ids, conf = book.assign(centres)
    assert sorted(ids.tolist()) == [0, 1, 2] and (conf > 0.5).all()
    assert ids[2] == 0 and ids[1] == 2  # numbered by brightness (a feature), darkest first
    book.save(tmp_path / "book.npz")
    loaded = LookBook.load(tmp_path / "book.npz")
    assert np.array_equal(loaded.assign(looks)[0], book.assign(looks)[0])
    with pytest.raises(ValueError, match="cannot make 9 kinds"):
        LookBook.fit(looks[:5], 9)
    (tmp_path / "bad.npz").write_text("no")
    with pytest.raises(ValueError, match="bad.npz is not a look book"):
        LookBook.load(tmp_path / "bad.npz")


# -- the Minetest HUD on real frames -----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TRUTH))
def test_the_hud_reads_every_slot_the_health_and_the_breath_exactly(reader, name):
    truth = TRUTH[name]
    reading = reader.read(frame(name))
    held = {s["slot"] - 1: s for s in truth["inventory"]}
    for k, (kind, count) in enumerate(reading.slots):
        stack = held.get(k)
        assert count == (stack["count"] if stack else 0), (k, stack)
        assert kind == (f"item-{ITEMS.index(stack['name'])}" if stack else None), (k, stack)
    assert reading.counters["health"] == truth["hp"]
    if truth.get("breath") is not None:
        assert reading.counters.get("breath", 10) == truth["breath"]
        assert ("underwater" in reading.tags) == (truth["breath"] < 10)
    if "pointed" in truth:  # the calibration frames' truth did not keep it
        assert ("pointing" in reading.tags) == (truth["pointed"] is not None)
    assert ("hurt" in reading.tags) == truth.get("hurt", False)
    sums = Counter()
    for kind, count in reading.slots:
        if kind:
            sums[kind] += count
    assert {k: v for k, v in reading.counters.items() if k.startswith("item-")} == dict(sums)


def test_a_damage_flash_is_taken_off_before_reading(reader):
    name = next(n for n, t in TRUTH.items() if not t.get("hurt"))
    clean = frame(name)
    tint = 0.45
    flashed = np.clip(clean * (1 - tint) + tint * reader.assets.flash, 0, 255).round()
    reading = reader.read(flashed.astype(np.uint8))
    assert reading.slots == reader.read(clean).slots
    assert reading.counters == reader.read(clean).counters
    assert "hurt" in reading.tags
    assert np.abs(reading.frame.astype(int) - clean.astype(int)).max() <= 3


def test_frames_of_another_size_are_one_clear_error(reader, tmp_path):
    with pytest.raises(ValueError, match="HUD assets are for 640x360 frames, got 320x180"):
        reader.read(np.zeros((180, 320, 3), np.uint8))
    with pytest.raises(ValueError, match="not 800x600: make assets for this size"):
        load_perceiver((800, 600))
    (tmp_path / "hud.npz").write_bytes(b"nope")
    with pytest.raises(ValueError, match="hud.npz is not a Minetest HUD asset file"):
        HudAssets.load(tmp_path / "hud.npz")


# -- the percept ---------------------------------------------------------------------------------


def test_a_percept_is_the_view_grid_the_crosshair_and_the_hud(perceiver):
    name = next(n for n, t in TRUTH.items() if t.get("pointed"))
    percept = perceiver.parse(frame(name))
    assert percept.tiles.shape == percept.confidence.shape == (9, 16)
    assert percept.player == (4, 8) and percept.facing == (0, 0)
    assert percept.tiles[percept.player] == percept.crosshair != UNKNOWN
    assert percept.classes == tuple(f"look-{i}" for i in range(len(percept.classes)))
    assert (percept.tiles[8, 3:13] == UNKNOWN).all()  # the hotbar hides the bottom row
    assert (percept.tiles[:6] != UNKNOWN).all()
    assert percept.counters["health"] == TRUTH[name]["hp"] and "pointing" in percept.tags
    assert percept.visible() <= set(percept.classes)
    again = load_perceiver((640, 360)).parse(frame(name))  # another perceiver, same names
    assert np.array_equal(again.tiles, percept.tiles) and again.counters == percept.counters


def test_the_crosshair_kind_tells_a_trunk_from_the_ground(perceiver):
    kinds = {TRUTH[name]["scene"]: perceiver.parse(frame(name)).crosshair
             for name in TRUTH if TRUTH[name].get("scene")}
    assert set(kinds) == {"trunk", "ground"} and kinds["trunk"] != kinds["ground"]
    nothing = perceiver.parse(frame("scene-nothing"))
    assert "pointing" not in nothing.tags and nothing.crosshair != UNKNOWN


def test_an_optional_clip_encoder_embeds_the_crosshair_patch(perceiver, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing is downloaded: random weights
    pytest.importorskip("torch")
    pytest.importorskip("open_clip")
    from cairn.perception.clip import ClipEncoder

    encoder = ClipEncoder(f"local-dir:{tiny_clip_folder(tmp_path / 'tiny')}")
    name = next(n for n, t in TRUTH.items() if not t.get("hurt"))
    percept = load_perceiver((640, 360), encoder=encoder).parse(frame(name))
    assert percept.embedding.shape == (32,)
    assert np.linalg.norm(percept.embedding) == pytest.approx(1.0, abs=1e-5)
    patch = encoder.encode_regions(frame(name), [(306, 166, 334, 194)])[0]
    assert np.allclose(percept.embedding, patch, atol=1e-5)
    assert perceiver.parse(frame(name)).embedding is None  # the default needs no weights


# -- one real game -------------------------------------------------------------------------------

HAS_GAME = shutil.which("Xvfb") is not None and shutil.which(
    "minetest", path="/usr/games:" + os.environ.get("PATH", "")) is not None


@pytest.mark.skipif(not HAS_GAME, reason="needs Xvfb and Minetest")
def test_a_real_episode_reads_the_hud_exactly_and_keeps_the_trunk_kind():
    from cairn.envs.game import make_game
    from cairn.runtime.config import load_config

    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "minetest.yaml")
    game = make_game("minetest", dict(config.env.kwargs))
    seen = []

    def look(frame, info):
        percept, truth = perceiver.parse(frame), info["privileged"]
        # The HUD shows an item a frame after the server has it (the dig button stays down
        # between steps): the counts are the step's truth, or the step before's.
        truths = [truth, *(seen[-1][1:] if seen else ())]
        counts = [[{s["slot"] - 1: s["count"] for s in t["inventory"]}.get(k, 0)
                   for k in range(8)] for t in truths]
        assert [c for _, c in percept.slots] in counts, (percept.slots, truth["inventory"])
        assert percept.counters["health"] == truth["hp"]
        seen.append((percept, truth))

    def step(action):
        frame, _, _, _, info = env.step(action)
        look(frame, info)
        return info["privileged"]

    for _ in range(3):  # the game runs in real time: slow steps may dig the trunk in two
        seen.clear()
        env = game.make_env()
        try:
            perceiver = game.perceiver(env)
            start = _walk_up_and_dig(env, step, look, seen)
        finally:
            env.close()
        trunk = [p.crosshair for p, t in seen if t["pointed"] and t["pointed"]["under"] == start
                 and "pointing" in p.tags]
        if len(trunk) >= 5:
            break
    # Like the HUD, the outline may show what the server pointed at a step before.
    pointing = [("pointing" in p.tags) in {t["pointed"] is not None,
                                            seen[max(i - 1, 0)][1]["pointed"] is not None}
                for i, (p, t) in enumerate(seen)]
    assert sum(pointing) >= 0.95 * len(seen)
    ground = [p.crosshair for p, t in seen
              if t["pointed"] and t["pointed"]["name"].endswith("dirt_with_grass")]
    assert len(trunk) >= 5 and ground
    trunk_kind, n = Counter(trunk).most_common(1)[0]
    assert n >= 0.5 * len(trunk)  # mostly one kind while it cracks (about 80% in the bench)
    assert trunk_kind not in ground
    final, truth = seen[-1]
    assert truth["dug_groups"].get("tree")
    kinds = {kind for kind, count in final.slots if kind}
    assert len(kinds) == 2  # the ground's item and the trunk's, each its own kind


def _walk_up_and_dig(env, step, look, seen):
    """Dig two nodes of ground, look up, walk to a trunk and dig it; returns the trunk's
    node."""
    look(*env.reset(seed=2))
    truth = seen[-1][1]
    for _ in range(4):  # down to the ground in front
        if truth["pointed"] and truth["pointed"]["under"][1] < truth["pos"][1]:
            break
        truth = step("look_down")
    for _ in range(2):  # two nodes of ground
        for _ in range(3):
            if truth["pointed"]:
                break
            truth = step("look_down")
        start = truth["pointed"]["under"]
        while truth["pointed"] and truth["pointed"]["under"] == start:
            truth = step("dig")
    for _ in range(8):
        truth = step("look_up")
        if abs(truth["pitch"]) < 0.02:
            break
    for _ in range(12):  # a busy machine walks less per step: allow more steps
        if truth["pointed"] and truth["pointed"]["name"].endswith(":tree"):
            break
        truth = step("forward")
    start = truth["pointed"]["under"]
    for _ in range(12):
        truth = step("dig")
        if truth["dug_groups"].get("tree"):
            break
    step("noop")  # the HUD shows the trunk's item a frame after the server has it
    return start
