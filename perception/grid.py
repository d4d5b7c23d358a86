"""Generic board perception: find a regular grid on screen, name cell looks, see what changed.

Nothing here knows a game. :func:`find_grid` finds the board's lines from edge projections
(a grid line crosses the whole board, so its column or row holds many edge pixels; the lines
are the longest evenly spaced run of such peaks). :class:`CellClusters` names cell looks
online: each cell becomes a small downsampled patch, the nearest centroid within
``threshold`` takes it, and a cell farther than that from every centroid opens a new class
("a0", "a1", ... in order of first sight). :class:`GridPerceiver` ties them together and
returns a :class:`GridPercept`: a :class:`~perception.percept.Percept` plus the cell centres
(to click) and the cells that changed since the previous frame.

Pixel boxes are ``(x0, y0, x1, y1)`` with ``x1``/``y1`` exclusive; centres are ``(x, y)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from cairn.perception.percept import Percept


class GridNotFound(ValueError):
    """No regular grid could be found in the frame (give ``rows``/``cols``/``region``)."""


@dataclass(frozen=True)
class GridConfig:
    """How to find and read a board; every field is optional."""

    rows: int | None = None
    """Known number of cell rows (the line search then wants exactly rows + 1 lines)."""
    cols: int | None = None
    """Known number of cell columns."""
    region: tuple[int, int, int, int] | None = None
    """Board box (x0, y0, x1, y1); with rows and cols it is split evenly, no search."""
    edge_threshold: int = 24
    """Grey-level step between neighbouring pixels that counts as an edge."""
    line_fraction: float = 0.35
    """A line candidate holds at least this share of the strongest projection peak."""
    min_cell: int = 8
    """Smallest cell side in pixels."""
    patch: int = 4
    """Cells are compared as patch x patch RGB means of their inner area."""
    margin: float = 0.15
    """Share of each cell side ignored at its border (grid lines, anti-aliasing)."""
    threshold: float = 40.0
    """RMS grey-level distance beyond which a cell look opens a new class."""
    max_classes: int = 64
    """Past this many classes, cells join their nearest class with low confidence."""
    change_threshold: int = 24
    """Per-pixel channel difference that counts as changed between frames."""
    changed_fraction: float = 0.05
    """A cell changed when at least this share of its inner pixels did."""


@dataclass(frozen=True)
class Grid:
    """Line positions of a board: ``xs`` has cols + 1 entries, ``ys`` rows + 1."""

    xs: np.ndarray
    ys: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.ys) - 1, len(self.xs) - 1

    @property
    def box(self) -> tuple[int, int, int, int]:
        return int(self.xs[0]), int(self.ys[0]), int(self.xs[-1]), int(self.ys[-1])

    def centers(self) -> np.ndarray:
        """(rows, cols, 2) array of the (x, y) pixel centre of each cell."""
        cx = (self.xs[:-1] + self.xs[1:]) // 2
        cy = (self.ys[:-1] + self.ys[1:]) // 2
        return np.stack(np.meshgrid(cx, cy), axis=-1).astype(np.int64)

    def cell_box(self, row: int, col: int, margin: float = 0.0) -> tuple[int, int, int, int]:
        x0, x1, y0, y1 = self.xs[col], self.xs[col + 1], self.ys[row], self.ys[row + 1]
        mx, my = int((x1 - x0) * margin), int((y1 - y0) * margin)
        return int(x0 + mx), int(y0 + my), int(x1 - mx), int(y1 - my)

    def cell_at(self, x: float, y: float) -> tuple[int, int] | None:
        """The (row, col) under pixel (x, y), or None outside the board."""
        col = int(np.searchsorted(self.xs, x, side="right")) - 1
        row = int(np.searchsorted(self.ys, y, side="right")) - 1
        rows, cols = self.shape
        return (row, col) if 0 <= row < rows and 0 <= col < cols else None


def find_grid(frame: np.ndarray, config: GridConfig = GridConfig()) -> Grid:
    """Find the board's grid in an RGB frame; raise :class:`GridNotFound` if there is none."""
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = config.region or (0, 0, w, h)
    if config.region is not None and config.rows and config.cols:
        return Grid(np.linspace(x0, x1, config.cols + 1).round().astype(np.int64),
                    np.linspace(y0, y1, config.rows + 1).round().astype(np.int64))
    grey = cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    grey = grey.astype(np.int16)
    vertical = np.abs(np.diff(grey, axis=1)) > config.edge_threshold  # edges between columns
    horizontal = np.abs(np.diff(grey, axis=0)) > config.edge_threshold
    xs = _lines(vertical.sum(axis=0), config.cols, config)
    if xs is None:
        raise GridNotFound("no evenly spaced vertical lines found; set GridConfig cols/region")
    # Rows are searched only between the vertical lines found, and then columns again only
    # between the rows, so that menus and status text beside the board do not count.
    ys = _lines(horizontal[:, xs[0]:xs[-1]].sum(axis=1), config.rows, config)
    if ys is None:
        raise GridNotFound("no evenly spaced horizontal lines found; set GridConfig rows/region")
    xs = _lines(vertical[ys[0]:ys[-1]].sum(axis=0), config.cols, config)
    if xs is None:
        raise GridNotFound("vertical lines vanish between the horizontal ones; set region")
    return Grid(xs + x0, ys + y0)


def _lines(profile: np.ndarray, count: int | None, config: GridConfig) -> np.ndarray | None:
    """Positions of the longest evenly spaced run of peaks in an edge projection."""
    if profile.size == 0 or profile.max() == 0:
        return None
    strong = np.flatnonzero(profile >= config.line_fraction * profile.max())
    # A line makes two edge columns (into it and out of it; a thick frame or block separator
    # a few pixels apart): merge those closer than half the smallest cell, and the diff above
    # sits between pixels i and i + 1, hence the + 1.
    groups = np.split(strong, np.flatnonzero(np.diff(strong) > max(2, config.min_cell // 2)) + 1)
    peaks = np.array([round(float(g.mean())) + 1 for g in groups])
    best: list[int] = []
    for i in range(len(peaks)):
        for j in range(i + 1, len(peaks)):
            step = peaks[j] - peaks[i]
            if step < config.min_cell:
                continue
            run, tol = [peaks[i], peaks[j]], max(2, step // 10)
            while True:
                near = peaks[np.abs(peaks - (run[-1] + step)) <= tol]
                if near.size == 0:
                    break
                run.append(int(near[0]))
            if count is not None:
                if len(run) < count + 1:
                    continue
                run = run[: count + 1]
            wider = len(run) == len(best) and run[-1] - run[0] > best[-1] - best[0]
            if len(run) > len(best) or wider:
                best = run
    return np.array(best, np.int64) if len(best) >= 3 or (count == 1 and len(best) == 2) else None


@dataclass
class CellClusters:
    """Online nearest-centroid classes of cell looks; ids are stable once opened."""

    threshold: float = 40.0
    max_classes: int = 64
    centroids: list[np.ndarray] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"a{i}" for i in range(len(self.centroids)))

    def assign(self, features: np.ndarray, learn: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Class id and confidence (1 at a centroid, 0 at ``threshold``) per feature row."""
        ids = np.empty(len(features), np.int64)
        conf = np.empty(len(features), np.float32)
        for n, f in enumerate(features):
            if self.centroids:
                d = np.sqrt(((np.asarray(self.centroids) - f) ** 2).mean(axis=1))
                k = int(d.argmin())
                dist = float(d[k])
            else:
                k, dist = -1, np.inf
            if dist > self.threshold and len(self.centroids) < self.max_classes:
                self.centroids.append(f.astype(np.float32).copy())
                self.counts.append(1)
                k, dist = len(self.centroids) - 1, 0.0
            elif learn:
                # A running mean, capped so a class keeps tracking slow drift (e.g. shading).
                self.counts[k] = min(self.counts[k] + 1, 50)
                self.centroids[k] += (f - self.centroids[k]) / self.counts[k]
            ids[n], conf[n] = k, max(0.0, 1.0 - dist / self.threshold)
        return ids, conf


@dataclass
class GridPercept(Percept):
    """A Percept of a board: ``centers[row, col]`` is the (x, y) pixel to click a cell and
    ``changed_cells`` marks the cells that changed since the previous frame
    (``changed_region`` is the pixel box of every changed pixel, ``(x0, y0, x1, y1)``)."""

    centers: np.ndarray | None = field(default=None, repr=False)
    changed_cells: np.ndarray | None = field(default=None, repr=False)
    grid: Grid | None = field(default=None, repr=False)


class GridPerceiver:
    """Frames of one board to GridPercepts; finds the grid once and keeps its classes.

    The grid is found on the first frame and again whenever the frame size changes (or on
    ``parse(..., refind=True)``). Pass the previous frame to get what changed.
    """

    def __init__(self, config: GridConfig = GridConfig()):
        self.config = config
        self.clusters = CellClusters(config.threshold, config.max_classes)
        self.grid: Grid | None = None
        self._shape: tuple[int, ...] | None = None

    def parse(self, frame: np.ndarray, previous: np.ndarray | None = None,
              refind: bool = False) -> GridPercept:
        if refind or self.grid is None or frame.shape != self._shape:
            self.grid, self._shape = find_grid(frame, self.config), frame.shape
        grid = self.grid
        ids, conf = self.clusters.assign(cell_features(frame, grid, self.config))
        changed, region = None, None
        if previous is not None:
            changed, region = changes(previous, frame, grid, self.config)
        return GridPercept(
            tiles=ids.reshape(grid.shape), confidence=conf.reshape(grid.shape),
            classes=self.clusters.names, player=(0, 0), facing=(0, 0), counters={},
            changed_region=region, centers=grid.centers(), changed_cells=changed, grid=grid,
        )


def cell_features(frame: np.ndarray, grid: Grid, config: GridConfig = GridConfig()) -> np.ndarray:
    """One row per cell (raster order): the inner area shrunk to patch x patch RGB means."""
    rows, cols = grid.shape
    out = np.empty((rows * cols, config.patch * config.patch * 3), np.float32)
    for r in range(rows):
        for c in range(cols):
            x0, y0, x1, y1 = grid.cell_box(r, c, config.margin)
            inner = np.ascontiguousarray(frame[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)])
            small = cv2.resize(inner, (config.patch, config.patch), interpolation=cv2.INTER_AREA)
            out[r * cols + c] = small.reshape(-1)
    return out


def changes(before: np.ndarray, after: np.ndarray, grid: Grid | None = None,
            config: GridConfig = GridConfig()):
    """(changed cell mask or None without a grid, pixel box of all changes or None)."""
    d = cv2.absdiff(before, after)
    # Channel maximum as two elementwise maxima: ndarray.max(axis=2) is ~20x slower here.
    diff = np.maximum(np.maximum(d[..., 0], d[..., 1]), d[..., 2]) > config.change_threshold
    rows_hit, cols_hit = diff.any(axis=1), diff.any(axis=0)
    region = None
    if rows_hit.any():
        ys, xs = np.flatnonzero(rows_hit), np.flatnonzero(cols_hit)
        region = (int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1)
    if grid is None:
        return None, region
    rows, cols = grid.shape
    mask = np.zeros((rows, cols), bool)
    if region is not None:
        for r in range(rows):
            for c in range(cols):
                x0, y0, x1, y1 = grid.cell_box(r, c, config.margin)
                cell = diff[y0:y1, x0:x1]
                mask[r, c] = cell.size > 0 and cell.mean() >= config.changed_fraction
    return mask, region
