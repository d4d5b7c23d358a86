"""Generic first-person perception: the view as a coarse grid of look kinds, the crosshair's
kind, and the HUD's counters, from the frame's pixels alone.

Nothing here knows a game. A *look* is how a patch of the view appears, reduced to a few
numbers that shading and daylight move little (:func:`look_features`: mean and spread of
the chromaticity, of the log brightness, and which way the texture's gradients run). A
:class:`LookBook` holds look kinds the agent learned by itself, by clustering the looks of
unlabelled frames (:meth:`LookBook.fit`, a seeded k-means), and names them ``look-0``,
``look-1``, ...; it is saved to a file and loaded as is, so a kind means the same thing in
every frame, episode and process. A game's HUD reader (e.g. ``minetest_hud.HudReader``)
supplies what the HUD says and where it covers the view.

The :class:`FirstPersonPercept` contract, which the first-person kit consumes:

- ``tiles``: the view as ``rows x cols`` cells (9 x 16 cells of 40 x 40 px at 640 x 360),
  each the index into ``classes`` (the book's ``look-<k>`` names) of its nearest look kind;
  ``UNKNOWN`` where the HUD hides most of a cell. ``confidence``: 1 at a kind's centre,
  falling to 0 at twice its radius.
- ``player``: the cell under the crosshair (the screen centre), ``(rows // 2, cols // 2)``;
  ``tiles[player]`` is the kind of the crosshair patch itself (a ``patch`` px square centred
  on the screen, the crosshair's own lines left out), not of the cell's pixels.
- ``facing``: ``(0, 0)``: the view turns with the player.
- ``counters``: the HUD reader's: ``item-<k>`` (the count held of each item look kind,
  slots of one kind summed), ``health``, ``breath`` (while the HUD shows it).
- ``tags``: the HUD reader's: ``pointing`` (the crosshair is on something within reach),
  ``underwater`` (breath shown), ``hurt`` (the screen flashes with damage).
- ``crosshair``: the crosshair's kind index (as ``tiles[player]``); ``slots``: per hotbar
  slot, ``(item kind name or None, count)``.
- ``embedding``: the crosshair patch embedded by an optional region encoder (e.g. CLIP with
  weights the user supplies); None by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from cairn.perception.percept import UNKNOWN, Percept

HUE_BINS = 12
FEATURES = ("chroma_r", "chroma_g", "chroma_r_spread", "chroma_g_spread", "log_brightness",
            "log_brightness_spread", "gradient_direction", "saturation", "saturation_spread",
            "dark_share", "bright_share", *(f"hue_{i}" for i in range(HUE_BINS)))
_GRADIENT_EPS = 0.02
_DARK, _BRIGHT = np.log(0.6), np.log(1.6)


@dataclass(frozen=True)
class ViewConfig:
    """How the view is cut into cells and how the crosshair patch is taken."""

    rows: int = 9
    cols: int = 16
    patch: int = 28
    """Side of the crosshair patch in pixels (at 640 x 360 a node within reach spans 60+)."""
    crosshair: int = 2
    """Half-width of the band along the centre row and column left out (the crosshair)."""
    min_share: float = 0.3
    """A cell the HUD covers beyond 1 - this share is UNKNOWN."""


def _planes(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel look planes (h, w, 7): chroma r and g, log brightness, the absolute
    horizontal and vertical steps of the log brightness, saturation, and the hue bin."""
    rgb = frame.astype(np.float32) + 1.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    total = r + g + b
    light = np.log(total / 3.0)
    gx = np.zeros_like(light)
    gy = np.zeros_like(light)
    gx[:, 1:] = np.abs(np.diff(light, axis=1))
    gy[1:, :] = np.abs(np.diff(light, axis=0))
    top = np.maximum(np.maximum(r, g), b)
    sat = (top - np.minimum(np.minimum(r, g), b)) / top
    hue = np.arctan2(np.sqrt(3.0) * (g - b), 2 * r - g - b) % (2 * np.pi)  # 0 = red
    bins = (hue * (HUE_BINS / (2 * np.pi))).astype(np.int64) % HUE_BINS
    return np.stack([r / total, g / total, light, gx, gy, sat], axis=-1), bins


def _features(planes: np.ndarray, bins: np.ndarray, weights: np.ndarray, groups: np.ndarray,
              count: int) -> np.ndarray:
    """Weighted look features of each of ``count`` pixel groups (``groups``: per-pixel group
    index), as (count, len(FEATURES))."""
    planes = planes.reshape(-1, planes.shape[-1])
    w, gid = weights.reshape(-1).astype(np.float32), groups.reshape(-1)
    n = np.maximum(np.bincount(gid, w, count), 1e-6)

    def mean(values):
        return np.bincount(gid, values * w, count) / n

    sums = [mean(planes[:, i]) for i in range(6)]
    spread = [np.sqrt(np.maximum(mean(planes[:, i] ** 2) - sums[i] ** 2, 0.0))
              for i in (0, 1, 2, 5)]
    direction = np.log((sums[3] + _GRADIENT_EPS) / (sums[4] + _GRADIENT_EPS))
    rel = planes[:, 2] - sums[2][gid]
    dark, bright = mean((rel < _DARK).astype(np.float32)), mean((rel > _BRIGHT).astype(np.float32))
    hues = np.bincount(gid * HUE_BINS + bins.reshape(-1), planes[:, 5] * w,
                       count * HUE_BINS).reshape(count, HUE_BINS)
    hues /= np.maximum(hues.sum(axis=1, keepdims=True), 1e-6)
    core = np.stack([sums[0], sums[1], spread[0], spread[1], sums[2], spread[2], direction,
                     sums[5], spread[3], dark, bright], axis=1)
    return np.concatenate([core, hues], axis=1).astype(np.float32)


def look_features(pixels: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The look of one patch (h, w, 3) RGB as a vector of :data:`FEATURES`; ``weights``
    (h, w) leave pixels out (0) or in (1)."""
    planes, bins = _planes(pixels)
    weights = np.ones(pixels.shape[:2], np.float32) if weights is None else weights
    return _features(planes, bins, weights, np.zeros(pixels.shape[:2], np.int64), 1)[0]


def grid_features(frame: np.ndarray, weights: np.ndarray, rows: int, cols: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Look features of every cell of a ``rows x cols`` grid, (rows, cols, features), and the
    share of each cell's weight, (rows, cols). Edge pixels beyond whole cells are dropped."""
    h, w = frame.shape[:2]
    ch, cw = h // rows, w // cols
    planes, bins = _planes(frame[:ch * rows, :cw * cols])
    planes[:, ::cw, 3] = 0  # no steps across a cell's edge: a cell reads as a patch alone
    planes[::ch, :, 4] = 0
    cells = (np.arange(ch * rows)[:, None] // ch) * cols + np.arange(cw * cols)[None, :] // cw
    wts = weights[:ch * rows, :cw * cols].astype(np.float32)
    feats = _features(planes, bins, wts, cells, rows * cols)
    share = np.bincount(cells.reshape(-1), wts.reshape(-1), rows * cols) / (ch * cw)
    return feats.reshape(rows, cols, -1), share.reshape(rows, cols)


def crosshair_patch(frame: np.ndarray, config: ViewConfig | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The square patch centred on the screen and its weights: the crosshair's lines and
    pure black pixels (outlines drawn over the view) are left out, unless nearly all of the
    patch is black (then it is the view itself, e.g. the eye inside a solid block)."""
    config = config or ViewConfig()
    h, w = frame.shape[:2]
    half, band = config.patch // 2, config.crosshair
    cy, cx = h // 2, w // 2
    patch = frame[cy - half:cy + half, cx - half:cx + half]
    weights = np.ones(patch.shape[:2], np.float32)
    weights[half - band:half + band, :] = 0
    weights[:, half - band:half + band] = 0
    black = patch.max(axis=2) == 0
    if (weights * ~black).sum() >= 0.2 * weights.sum():
        weights[black] = 0
    return patch, weights


@dataclass
class LookBook:
    """Look kinds: centroids in scaled feature space, named ``<prefix>-<index>``.

    ``scale`` divides each feature before distances are taken (the fit's spread, times the
    feature's weight); ``radius`` is each kind's 90th-percentile member distance.
    """

    centroids: np.ndarray
    scale: np.ndarray
    radius: np.ndarray
    prefix: str = "look"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"{self.prefix}-{i}" for i in range(len(self.centroids)))

    def assign(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest kind and confidence for each row of ``features`` (..., F)."""
        flat = features.reshape(-1, features.shape[-1]) / self.scale
        d = np.sqrt(((flat[:, None, :] - self.centroids[None]) ** 2).sum(axis=2))
        ids = d.argmin(axis=1)
        near = d[np.arange(len(ids)), ids]
        conf = np.clip(1.0 - near / (2.0 * np.maximum(self.radius[ids], 1e-6)), 0.0, 1.0)
        shape = features.shape[:-1]
        return ids.reshape(shape), conf.astype(np.float32).reshape(shape)

    @classmethod
    def fit(cls, features: np.ndarray, kinds: int, scale: np.ndarray | None = None,
            seed: int = 0, iterations: int = 50, prefix: str = "look") -> LookBook:
        """k-means (k-means++ start, fixed seed) over unlabelled looks (N, F), a feature
        divided by ``scale`` (default: its spread) first. Kinds are numbered by brightness,
        then chroma, so the same data gives the same names."""
        features = np.asarray(features, np.float32)
        if len(features) < kinds:
            raise ValueError(f"{len(features)} looks cannot make {kinds} kinds: "
                             "collect more frames")
        scale = features.std(axis=0) + 1e-6 if scale is None else np.asarray(scale, np.float32)
        x = features / scale
        rng = np.random.default_rng(seed)
        centres = [x[rng.integers(len(x))]]
        for _ in range(1, kinds):
            d = ((x[:, None, :] - np.asarray(centres)[None]) ** 2).sum(axis=2).min(axis=1)
            centres.append(x[rng.choice(len(x), p=d / d.sum())])
        centres = np.asarray(centres)
        for _ in range(iterations):
            labels = ((x[:, None, :] - centres[None]) ** 2).sum(axis=2).argmin(axis=1)
            moved = np.array([x[labels == k].mean(axis=0) if (labels == k).any() else centres[k]
                              for k in range(kinds)])
            if np.allclose(moved, centres):
                break
            centres = moved
        order = np.lexsort((centres[:, 1], centres[:, 0], centres[:, 4]))
        centres = centres[order]
        labels = ((x[:, None, :] - centres[None]) ** 2).sum(axis=2).argmin(axis=1)
        dist = np.sqrt(((x - centres[labels]) ** 2).sum(axis=1))
        radius = np.array([np.percentile(dist[labels == k], 90) if (labels == k).any() else 1.0
                           for k in range(kinds)], np.float32)
        return cls(centres.astype(np.float32), scale.astype(np.float32), radius, prefix)

    def save(self, path: str | Path) -> None:
        np.savez(path, centroids=self.centroids, scale=self.scale, radius=self.radius,
                 prefix=np.array(self.prefix))

    @classmethod
    def load(cls, path: str | Path) -> LookBook:
        try:
            with np.load(path) as data:
                return cls(data["centroids"], data["scale"], data["radius"],
                           str(data["prefix"]))
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"{path} is not a look book ({err}); make it again with the "
                             "asset script that wrote it") from None


@dataclass
class HudReading:
    """What a game's HUD says: counters, tags, the slots, and where it covers the view
    (``mask``, True on HUD pixels); ``frame`` is the frame with any full-screen tint the
    reader knows how to undo (e.g. a damage flash) taken off."""

    counters: dict[str, int]
    tags: frozenset[str]
    slots: tuple[tuple[str | None, int], ...]
    mask: np.ndarray
    frame: np.ndarray


class HudReader(Protocol):
    def read(self, frame: np.ndarray) -> HudReading: ...


@dataclass
class FirstPersonPercept(Percept):
    """A Percept of a first-person view; see the module docstring for every field."""

    crosshair: int = UNKNOWN
    slots: tuple[tuple[str | None, int], ...] = field(default=(), repr=False)


class RegionEncoder(Protocol):
    def encode_regions(self, frame: np.ndarray,
                       boxes: list[tuple[int, int, int, int]]) -> np.ndarray: ...


class FirstPersonPerceiver:
    """Frames to :class:`FirstPersonPercept` with a look book and a game's HUD reader.

    ``encoder`` (optional, e.g. ``cairn.perception.clip.ClipEncoder`` with the user's weights)
    embeds the crosshair patch into ``Percept.embedding``; without one nothing is embedded and
    nothing needs weights."""

    def __init__(self, looks: LookBook, hud: HudReader, config: ViewConfig | None = None,
                 encoder: RegionEncoder | None = None):
        self.looks, self.hud, self.config = looks, hud, config or ViewConfig()
        self.encoder = encoder
        self.classes = looks.names

    @property
    def counter_names(self) -> tuple[str, ...]:
        return tuple(getattr(self.hud, "counter_names", ()))

    def crosshair_kind(self, frame: np.ndarray) -> tuple[int, float]:
        patch, weights = crosshair_patch(frame, self.config)
        ids, conf = self.looks.assign(look_features(patch, weights)[None])
        return int(ids[0]), float(conf[0])

    def parse(self, frame: np.ndarray) -> FirstPersonPercept:
        reading = self.hud.read(frame)
        view = reading.frame
        rows, cols = self.config.rows, self.config.cols
        weights = (~reading.mask).astype(np.float32)
        weights[view.max(axis=2) == 0] = 0  # outlines drawn over the view
        feats, share = grid_features(view, weights, rows, cols)
        tiles, conf = self.looks.assign(feats)
        hidden = share < self.config.min_share
        tiles[hidden], conf[hidden] = UNKNOWN, 0.0
        kind, kind_conf = self.crosshair_kind(view)
        player = (rows // 2, cols // 2)
        tiles[player], conf[player] = kind, kind_conf
        embedding = None
        if self.encoder is not None:
            h, w = view.shape[:2]
            half = self.config.patch // 2
            box = (w // 2 - half, h // 2 - half, w // 2 + half, h // 2 + half)
            embedding = self.encoder.encode_regions(view, [box])[0]
        return FirstPersonPercept(
            tiles=tiles.astype(np.int64), confidence=conf, classes=self.classes,
            player=player, facing=(0, 0), counters=dict(reading.counters), tags=reading.tags,
            embedding=embedding, crosshair=kind, slots=reading.slots)
