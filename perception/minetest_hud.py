"""Minetest's HUD read from the frame: the hotbar's items and counts, the hearts, the breath
bubbles, the damage flash, and the selection box that shows the crosshair is on a node
within reach.

Everything the reader compares against was learned from calibration frames by
``perception/make_minetest_assets.py`` (the truth labelled those frames; nothing here reads
the truth or the game's textures) and sits in ``assets/minetest_hud.npz`` for one window size:

- The HUD is drawn unlit and unfiltered, so an item's icon, a heart or a bubble is the same
  pixels wherever it shows. Each is a *template*: the pixels that stayed the same over many
  frames with different scenes behind them, and their colours. A template is present where
  at least ``PRESENT`` of its pixels match within ``TOLERANCE``.
- Hotbar slots are matched against every item template; the best above ``PRESENT`` names
  the slot's item kind ``item-<k>`` (k: the template's index). A slot that matches none but
  shows a count holds an item the assets do not know: ``item-unknown``.
- A count is drawn at a slot's lower right, right-aligned, in white digits of one width, only
  when it is above 1: the two digit cells are read on their own against the digits' coverage
  (a glyph pixel is at least as white as the digit covers it; a pure white pixel off every
  glyph counts against a digit).
- Health is the number of half-heart templates present (20 HP = 10 hearts), breath the
  number of bubbles (shown only while the player lacks air; Minetest 5.6 draws the bar with
  10 bubbles when it first appears, until the breath next changes, so a breath of 9 can show
  as 10: the screen is read, not the game's state). No bubbles read as no ``breath``
  counter: a breath of 0 looks the same as a full one whose bar is gone.
- Damage tints the whole screen red for a moment, HUD included. The hotbar's grey frame says
  how much (its green drops), and the tint is taken off before anything is read.
- The pointed node's selection box is drawn pure black (0, 0, 0), a colour the lit world
  never has: ``OUTLINE_PIXELS`` of it outside the HUD mean the crosshair is on a node; so
  does a view filled by one node's magnified texels (``CLOSE_EQUAL``: the box is off screen).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cairn.perception.first_person import HudReading

ASSETS = Path(__file__).with_name("assets")
HUD_FILE = ASSETS / "minetest_hud.npz"
TOLERANCE = 8
"""Largest channel difference (0-255) at which a pixel matches a template's."""
PRESENT = 0.9
"""Share of a template's pixels that must match for it to be present."""
OUTLINE_PIXELS = 20
"""Pure black pixels outside the HUD that make a selection box."""
CLOSE_EQUAL, CLOSE_CONTRAST, CLOSE_SIDE = 0.9, 10.0, 96
"""A node a hand's breadth away fills the view and its outline is off screen; its texels,
magnified past 30 px without filtering, make at least ``CLOSE_EQUAL`` of the neighbouring
pixels of the central ``CLOSE_SIDE`` square equal, with some texture (brightness spread of
``CLOSE_CONTRAST``) unlike a clear sky."""
WHITE = 0.9
"""Whiteness (the smallest channel / 255) above which a pixel off every glyph is suspect."""


@dataclass
class Templates:
    """Templates as padded arrays: ``ys``/``xs`` (n, p) pixel positions, ``values``
    (n, p, 3) colours, ``counts`` (n,) how many of the p are real."""

    ys: np.ndarray
    xs: np.ndarray
    values: np.ndarray
    counts: np.ndarray

    def match(self, image: np.ndarray, dy: int = 0, dx: int = 0) -> np.ndarray:
        """Share of each template's pixels that ``image`` (float RGB) shows, shifted by
        (dy, dx)."""
        seen = image[self.ys + dy, self.xs + dx]
        ok = np.abs(seen - self.values).max(axis=2) <= TOLERANCE
        real = np.arange(self.ys.shape[1])[None, :] < self.counts[:, None]
        return (ok & real).sum(axis=1) / np.maximum(self.counts, 1)

    @classmethod
    def pack(cls, pixels: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Templates:
        """From a list of (ys, xs, values) per template."""
        width = max((len(ys) for ys, _, _ in pixels), default=0)
        n = len(pixels)
        ys = np.zeros((n, width), np.int32)
        xs = np.zeros((n, width), np.int32)
        values = np.zeros((n, width, 3), np.float32)
        for i, (y, x, v) in enumerate(pixels):
            ys[i, :len(y)], xs[i, :len(x)], values[i, :len(v)] = y, x, v
        return cls(ys, xs, values, np.array([len(y) for y, _, _ in pixels], np.int32))


@dataclass
class HudAssets:
    """What the reader compares against, for one window ``size`` (w, h)."""

    size: tuple[int, int]
    slots: np.ndarray
    """(8, 2): the (y, x) of each hotbar slot's inner top-left corner."""
    slot_size: int
    hotbar: tuple[int, int, int, int]
    """(x0, y0, x1, y1) around the hotbar and its selection frame."""
    statbars: tuple[int, int, int, int]
    """(x0, y0, x1, y1) around the hearts and bubbles."""
    glyph_cells: np.ndarray
    """(2, 2): slot-relative (y, x) of the left and right digit cells."""
    glyphs: np.ndarray
    """(10, gh, gw): how much digit d covers each pixel of its cell (0-1)."""
    items: Templates
    """Slot-relative item icon templates."""
    hearts: Templates
    """Frame positions of the 20 half hearts, in order."""
    bubbles: Templates
    """Frame positions of the 10 bubbles, in order."""
    frame_pixels: np.ndarray
    """(n, 2): (y, x) of pixels of the hotbar's frame, all of grey ``frame_grey``."""
    frame_grey: float
    flash: np.ndarray
    """The damage flash's colour (RGB)."""

    def save(self, path: str | Path) -> None:
        out = {"size": np.array(self.size), "slots": self.slots,
               "slot_size": np.array(self.slot_size), "hotbar": np.array(self.hotbar),
               "statbars": np.array(self.statbars), "glyph_cells": self.glyph_cells,
               "glyphs": self.glyphs.astype(np.float32), "frame_pixels": self.frame_pixels,
               "frame_grey": np.array(self.frame_grey), "flash": self.flash}
        for name in ("items", "hearts", "bubbles"):
            t = getattr(self, name)
            out.update({f"{name}_ys": t.ys.astype(np.int16), f"{name}_xs": t.xs.astype(np.int16),
                        f"{name}_values": t.values.astype(np.uint8), f"{name}_counts": t.counts})
        np.savez_compressed(path, **out)

    @classmethod
    def load(cls, path: str | Path = HUD_FILE) -> HudAssets:
        try:
            with np.load(path) as d:
                t = {name: Templates(d[f"{name}_ys"].astype(np.int32),
                                     d[f"{name}_xs"].astype(np.int32),
                                     d[f"{name}_values"].astype(np.float32),
                                     d[f"{name}_counts"].astype(np.int32))
                     for name in ("items", "hearts", "bubbles")}
                return cls(tuple(int(v) for v in d["size"]), d["slots"].astype(np.int32),
                           int(d["slot_size"]), tuple(int(v) for v in d["hotbar"]),
                           tuple(int(v) for v in d["statbars"]),
                           d["glyph_cells"].astype(np.int32), d["glyphs"].astype(np.float32),
                           t["items"], t["hearts"], t["bubbles"],
                           d["frame_pixels"].astype(np.int32), float(d["frame_grey"]),
                           d["flash"].astype(np.float32))
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"{path} is not a Minetest HUD asset file ({err}); make it with "
                             "python -m bench.minetest_perception make-assets") from None


class HudReader:
    """Reads Minetest's HUD from frames of the assets' window size."""

    def __init__(self, assets: HudAssets | None = None):
        self.assets = assets or HudAssets.load()
        w, h = self.assets.size
        self.kinds = tuple(f"item-{k}" for k in range(len(self.assets.items.counts)))
        self.counter_names = (*self.kinds, "item-unknown", "health", "breath")
        mask = np.zeros((h, w), bool)
        for x0, y0, x1, y1 in (self.assets.hotbar, self.assets.statbars):
            mask[y0:y1, x0:x1] = True
        self.mask = mask

    def read(self, frame: np.ndarray) -> HudReading:
        a = self.assets
        if frame.shape[:2] != (a.size[1], a.size[0]):
            raise ValueError(f"the HUD assets are for {a.size[0]}x{a.size[1]} frames, got "
                             f"{frame.shape[1]}x{frame.shape[0]}: make assets for this size "
                             "(python -m bench.minetest_perception make-assets --size W H)")
        image, tint = self.untint(frame)
        slots = tuple(self.read_slot(image, k) for k in range(len(a.slots)))
        counters: dict[str, int] = {}
        for kind, count in slots:
            if kind is not None:
                counters[kind] = counters.get(kind, 0) + count
        counters["health"] = int((a.hearts.match(image) >= PRESENT).sum())
        tags = set()
        bubbles = int((a.bubbles.match(image) >= PRESENT).sum())
        if bubbles:
            counters["breath"] = bubbles
            tags.add("underwater")
        if tint > 0:
            tags.add("hurt")
        view = frame if tint == 0 else np.clip(image.round(), 0, 255).astype(np.uint8)
        if self.pointing(view):
            tags.add("pointing")
        return HudReading(counters, frozenset(tags), slots, self.mask, view)

    def untint(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        """The frame (float) with the damage flash taken off, and the flash's strength."""
        a = self.assets
        ys, xs = a.frame_pixels[:, 0], a.frame_pixels[:, 1]
        green = float(np.median(frame[ys, xs, 1]))
        tint = 1.0 - green / a.frame_grey
        image = frame.astype(np.float32)
        if tint <= 0.02:
            return image, 0.0
        return (image - tint * a.flash) / (1.0 - tint), tint

    def read_slot(self, image: np.ndarray, k: int) -> tuple[str | None, int]:
        a = self.assets
        y, x = a.slots[k]
        s = a.slot_size
        cell = image[y:y + s, x:x + s]
        share = a.items.match(cell)
        best = int(share.argmax()) if len(share) else -1
        count = self.read_count(cell)
        if best >= 0 and share[best] >= PRESENT:
            return self.kinds[best], max(count, 1)
        if count >= 2:
            return "item-unknown", count
        return None, 0

    def read_count(self, cell: np.ndarray) -> int:
        """The count drawn in a slot (float RGB), 1 where none is drawn."""
        a = self.assets
        white = cell.min(axis=2) / 255.0
        gh, gw = a.glyphs.shape[1:]
        digits = []
        for y, x in a.glyph_cells:
            digits.append(self.read_digit(white[y:y + gh, x:x + gw]))
        left, right = digits
        if right is None:
            return 1
        return right if left is None else 10 * left + right

    def read_digit(self, white: np.ndarray) -> int | None:
        """The digit in one cell of whiteness, or None for no digit."""
        glyphs = self.assets.glyphs
        missing = np.clip(glyphs - white[None] - 0.1, 0, None).sum(axis=(1, 2))
        stray = ((white[None] > WHITE) & (glyphs < 0.1)).sum(axis=(1, 2))
        scores = missing + stray
        blank = float((white > WHITE).sum())
        best = int(scores.argmin())
        return None if blank <= scores[best] else best

    def pointing(self, view: np.ndarray) -> bool:
        """Whether the crosshair is on a node within reach: its selection box shows (pure
        black pixels outside the HUD), or the node is so near that it fills the view."""
        black = (view[..., 0] == 0) & (view[..., 1] == 0) & (view[..., 2] == 0)
        if int((black & ~self.mask).sum()) >= OUTLINE_PIXELS:
            return True
        h, w = view.shape[:2]
        half = CLOSE_SIDE // 2
        centre = view[h // 2 - half:h // 2 + half, w // 2 - half:w // 2 + half].astype(np.int16)
        across = (np.abs(np.diff(centre, axis=1)).max(axis=2) == 0).mean()
        down = (np.abs(np.diff(centre, axis=0)).max(axis=2) == 0).mean()
        return min(across, down) >= CLOSE_EQUAL and centre.mean(axis=2).std() >= CLOSE_CONTRAST


def load_perceiver(size: tuple[int, int] = (640, 360), hud: str | Path = HUD_FILE,
                   looks: str | Path | None = None, encoder=None):
    """The default first-person perceiver for Minetest frames of ``size`` (w, h); ``encoder``
    (optional, e.g. a ``ClipEncoder``) embeds the crosshair patch."""
    from cairn.perception.first_person import FirstPersonPerceiver, LookBook

    assets = HudAssets.load(hud)
    if tuple(size) != assets.size:
        raise ValueError(f"the HUD assets in {hud} are for {assets.size[0]}x{assets.size[1]} "
                         f"windows, not {size[0]}x{size[1]}: make assets for this size "
                         "(python -m bench.minetest_perception make-assets --size W H)")
    book = LookBook.load(looks or ASSETS / "minetest_looks.npz")
    return FirstPersonPerceiver(book, HudReader(assets), encoder=encoder)
