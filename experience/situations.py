"""The situation index: which stored attempts began in a situation that looked like this one.

Each attempt's situation is an embedding of its first frame (``perception/clip.py``). The
index lives in two places:

- the store file, the record: table ``situation_index`` (one row: the encoder's name and
  embedding size, and what the sidecar last saved held) and table ``situations`` (vector id,
  attempt id, the embedding as float16; 1 KB per 512-d vector). Vector ids run 0, 1, 2, ...
  in the order vectors were added, under the store's write lock, so several processes may add
  to one store;
- ``<store>.situations.faiss``, the sidecar: a faiss index over the same vectors, where a
  vector's position is its id. It is derived data: saved atomically (a temporary file,
  fsync, rename, under the store's write lock together with its size and CRC-32 in
  ``situation_index``), and rebuilt from the table, with a warning, whenever it is missing,
  truncated, corrupt or from another store. A sidecar older than the table (a run killed
  before ``save()``, or another process's vectors) is caught up by adding the missing rows,
  as is the open index before each add and search.

The index is exact (``IndexFlatIP``) up to ``approx_from`` vectors, then approximate: HNSW
over float16 vectors (``IndexHNSWSQ``), built once from every vector when the count passes
the threshold, and grown one vector at a time after that. Vectors are unit length, so inner
product is cosine similarity. The vectors are rounded to float16 before they enter the index
too, so an index rebuilt from the table is the index that was lost. Query time, recall and
memory at a million vectors: ``python -m bench.retrieval``.
"""

from __future__ import annotations

import importlib
import logging
import os
import sqlite3
import time
import zlib
from array import array
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from cairn.experience.records import ExperienceTuple
from cairn.experience.store import ExperienceStore
from cairn.experience.store_schema import StoreError, write_error

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".situations.faiss"
APPROX_FROM = 20_000
"""Vectors from which the index is approximate: an exact scan of 20,000 512-d vectors takes
about 2 ms, and it grows linearly."""
HNSW_M = 32
"""Graph neighbours per vector (faiss's usual value; memory: 2 * M * 4 bytes per vector)."""
EF_CONSTRUCTION = 80
"""Candidates a new vector's neighbours are chosen from. At a million vectors
(bench/retrieval) faiss's default of 40 found 0.86 of the true 10 nearest at efSearch 128;
80 finds 0.99, for adds about 1.5x slower."""
EF_SEARCH = 128
"""Candidates an HNSW query visits (recall against time: bench/retrieval)."""
_CHUNK = 50_000  # rows read from the table at once when catching up or rebuilding

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS situation_index (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        encoder TEXT NOT NULL,
        dim INTEGER NOT NULL,
        created_at REAL NOT NULL,
        saved_vectors INTEGER NOT NULL DEFAULT 0,
        saved_bytes INTEGER NOT NULL DEFAULT 0,
        saved_crc INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS situations (
        vector INTEGER PRIMARY KEY,
        attempt INTEGER NOT NULL,
        embedding BLOB NOT NULL
    )""",
)
_META = "SELECT encoder, dim, saved_vectors, saved_bytes, saved_crc FROM situation_index"
_NEXT = "SELECT coalesce(max(vector), -1) + 1 FROM situations"


class SituationIndexError(StoreError):
    """The situation index cannot be used as asked; the message says why and what to do."""


def sidecar_path(store_path: Path) -> Path:
    return store_path.with_name(store_path.name + SIDECAR_SUFFIX)


def _faiss() -> Any:
    try:
        return importlib.import_module("faiss")
    except ImportError as exc:
        raise SituationIndexError(f"the situation index needs faiss, which is not installed "
                                  f"({exc}); install the extra: pip install 'cairn[clip]'"
                                  ) from exc


class SituationIndex:
    """Nearest stored situations by embedding; see the module's docstring.

    Open it with :meth:`open`; ``add`` takes attempt ids and their embeddings, ``search``
    gives ``(attempt id, cosine similarity)`` pairs, the most similar first. ``close()``
    (or leaving a ``with`` block) saves the sidecar if vectors were added.
    """

    def __init__(self, store: ExperienceStore, encoder: str, dim: int, approx_from: int,
                 ef_search: int) -> None:
        self._faiss = _faiss()
        self.store = store
        self.encoder = encoder
        self.dim = dim
        self.approx_from = approx_from
        self._ef_search = ef_search
        self.path = sidecar_path(store.path)
        self._conn: sqlite3.Connection = store._conn
        self._attempts = array("q")
        self._index: Any = None
        self._dirty = False

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, store: ExperienceStore, encoder_name: str, dim: int,
             approx_from: int = APPROX_FROM, ef_search: int = EF_SEARCH) -> SituationIndex:
        """The situation index of ``store`` for vectors of ``encoder_name`` (``dim`` values
        each); a store indexed by another encoder is refused. A writable store gets the
        tables if it has none."""
        if dim < 1 or approx_from < 1 or ef_search < 1:
            raise ValueError("dim, approx_from and ef_search must be positive")
        index = cls(store, encoder_name, dim, approx_from, ef_search)
        index._claim()
        index._load()
        return index

    def _claim(self) -> None:
        """Create the tables if needed and check (or record) the encoder."""
        if not self.store.writable:
            has = self._conn.execute(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'situation_index'").fetchone()[0]
            row = self._conn.execute(_META).fetchone() if has else None
            if row is None:
                raise SituationIndexError(
                    f"{self.store.path} has no situation index yet; run with clip.index "
                    "enabled first, or open the store for writing")
            self._check_encoder(row)
            return
        with self._writing():
            for statement in _SCHEMA:
                self._conn.execute(statement)
            row = self._conn.execute(_META).fetchone()
            if row is None:
                self._conn.execute(
                    "INSERT INTO situation_index (id, encoder, dim, created_at) "
                    "VALUES (1, ?, ?, ?)", (self.encoder, self.dim, time.time()))
            else:
                self._check_encoder(row)

    def _check_encoder(self, row: tuple) -> None:
        name, dim = row[0], row[1]
        if (name, dim) != (self.encoder, self.dim):
            raise SituationIndexError(
                f"{self.store.path} indexes situations with encoder '{name}' ({dim}-d), not "
                f"'{self.encoder}' ({self.dim}-d); use the same CLIP model and weights, or "
                "another --store")

    def _load(self) -> None:
        """Read the sidecar if it is the one the table describes, else rebuild; catch up."""
        reason = self._read_sidecar()
        if reason is not None:
            self._index = self._faiss.IndexFlatIP(self.dim)
            if self._stored() > 0:
                log.warning("situation index %s: %s; rebuilding it from the %d vectors in %s",
                            self.path, reason, self._stored(), self.store.path.name)
                self._dirty = True
        self._attempts = array("q", (row[0] for row in self._conn.execute(
            "SELECT attempt FROM situations WHERE vector < ? ORDER BY vector",
            (self._index.ntotal,))))
        self._catch_up()

    def _read_sidecar(self) -> str | None:
        """Load the sidecar into ``self._index``; or why it cannot be used."""
        for _ in range(2):  # a save by another process may land between meta and file
            _, _, vectors, size, crc = self._conn.execute(_META).fetchone()
            if not self.path.exists():
                return "the sidecar file is missing"
            if vectors > self._stored():
                return "the sidecar holds more vectors than the store (another store's?)"
            try:
                if self.path.stat().st_size == size and _crc(self.path) == crc:
                    break
            except OSError as exc:
                return f"the sidecar cannot be read ({exc.strerror})"
        else:
            return "the sidecar is not the one last saved (truncated, corrupt or foreign)"
        try:
            index = self._faiss.read_index(str(self.path))
        except RuntimeError as exc:
            return f"faiss cannot read the sidecar ({str(exc).splitlines()[0][:200]})"
        if index.d != self.dim or index.ntotal != vectors:
            return f"the sidecar holds {index.ntotal} {index.d}-d vectors, not {vectors}"
        self._index = self._tuned(index)
        return None

    # -- adding ----------------------------------------------------------------------------

    def add(self, attempt_ids: Sequence[int] | np.ndarray, vectors: np.ndarray) -> list[int]:
        """Index ``vectors`` (``(N, dim)``, or one ``(dim,)``) as the situations of
        ``attempt_ids``; they are normalised to unit length. Returns their vector ids.
        The rows are written in one transaction: all of them or, on any error, none."""
        ids = np.asarray(attempt_ids, dtype=np.int64).reshape(-1)
        half = _unit(vectors, self.dim, "vectors").astype(np.float16)
        if len(half) != len(ids):
            raise ValueError(f"{len(ids)} attempt ids for {len(half)} vectors")
        if not len(ids):
            return []
        if not self.store.writable:
            raise SituationIndexError(f"{self.store.path} was opened read-only; open it with "
                                      "writable=True to add situations")
        with self._writing():
            self._catch_up()
            first = len(self._attempts)
            self._conn.executemany(
                "INSERT INTO situations VALUES (?, ?, ?)",
                zip(range(first, first + len(ids)), ids.tolist(), map(bytes, half),
                    strict=True))
        self._grow(half.astype(np.float32))  # a failure here is caught up at the next call
        self._attempts.extend(ids.tolist())
        self._dirty = True
        return list(range(first, first + len(ids)))

    def _catch_up(self) -> None:
        """Add the rows stored since this index was read (by this or another process)."""
        start = self._index.ntotal
        while True:
            rows = self._conn.execute(
                "SELECT attempt, embedding FROM situations WHERE vector >= ? ORDER BY vector "
                "LIMIT ?", (start, _CHUNK)).fetchall()
            if not rows:
                return
            attempts, blobs = zip(*rows, strict=True)
            vectors = np.frombuffer(b"".join(blobs), np.float16).reshape(len(rows), self.dim)
            self._grow(vectors.astype(np.float32))
            self._attempts.extend(attempts)
            self._dirty = True
            start += len(rows)

    def _grow(self, vectors: np.ndarray) -> None:
        index = self._index
        if not self.approximate and index.ntotal + len(vectors) >= self.approx_from:
            old = index.reconstruct_n(0, index.ntotal) if index.ntotal else vectors[:0]
            index = self._index = self._hnsw()
            for part in (old, vectors):
                for start in range(0, len(part), _CHUNK):
                    index.add(part[start:start + _CHUNK])
            return
        index.add(vectors)

    # -- searching -------------------------------------------------------------------------

    def search(self, vector: np.ndarray, k: int = 10) -> list[tuple[int, float]]:
        """The ``k`` stored situations most like ``vector``: ``(attempt id, cosine)`` pairs,
        the most similar first (fewer when fewer are stored)."""
        vector = np.asarray(vector)
        if vector.ndim != 1:
            raise ValueError(f"search takes one vector of {self.dim} values, got shape "
                             f"{vector.shape}; use search_many for several")
        return self.search_many(vector[None], k)[0]

    def search_many(self, vectors: np.ndarray, k: int = 10) -> list[list[tuple[int, float]]]:
        """:meth:`search` for each row of ``vectors`` (``(N, dim)``), in one call."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        queries = _unit(vectors, self.dim, "query")
        if self._conn.execute(_NEXT).fetchone()[0] > self._index.ntotal:
            self._catch_up()
        scores, found = self._index.search(queries, k)
        attempts = self._attempts
        return [[(attempts[i], float(s)) for s, i in zip(row_s, row_i, strict=True) if i >= 0]
                for row_s, row_i in zip(scores, found, strict=True)]

    def similar(self, vector: np.ndarray, k: int = 10) -> list[tuple[ExperienceTuple, float]]:
        """:meth:`search`, with the attempts read from the store."""
        found = []
        for attempt_id, score in self.search(vector, k):
            attempt = self.store.get(attempt_id)
            if attempt is not None:
                found.append((attempt, score))
        return found

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def ef_search(self) -> int:
        """Candidates an HNSW query visits: slower, and more of the true nearest found."""
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"ef_search must be positive, got {value}")
        self._ef_search = value
        self._tuned(self._index)

    @property
    def approximate(self) -> bool:
        return not isinstance(self._index, self._faiss.IndexFlat)

    # -- saving ----------------------------------------------------------------------------

    def save(self) -> None:
        """Write the sidecar atomically (temporary file, fsync, rename) and record its size
        and CRC in the store, both under the store's write lock."""
        if not self.store.writable:
            raise SituationIndexError(f"{self.store.path} was opened read-only; the situation "
                                      "index cannot be saved")
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            self._faiss.write_index(self._index, str(tmp))
            with tmp.open("rb") as f:
                os.fsync(f.fileno())
            size, crc = tmp.stat().st_size, _crc(tmp)
            with self._writing():
                os.replace(tmp, self.path)
                _fsync_folder(self.path.parent)
                self._conn.execute(
                    "UPDATE situation_index SET saved_vectors = ?, saved_bytes = ?, "
                    "saved_crc = ?", (self._index.ntotal, size, crc))
        except (OSError, RuntimeError) as exc:
            why = getattr(exc, "strerror", None) or str(exc).splitlines()[0][:200]
            raise SituationIndexError(f"cannot write the situation index {self.path} ({why}); "
                                      "free some space or make the folder writable") from exc
        finally:
            tmp.unlink(missing_ok=True)
        self._dirty = False

    def close(self) -> None:
        """Save the sidecar if anything was added since it was read."""
        if self._dirty and self.store.writable:
            self.save()

    def __enter__(self) -> SituationIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ---------------------------------------------------------------------------

    def _stored(self) -> int:
        return self._conn.execute(_NEXT).fetchone()[0]

    def _hnsw(self) -> Any:
        faiss = self._faiss
        index = faiss.IndexHNSWSQ(self.dim, faiss.ScalarQuantizer.QT_fp16, HNSW_M,
                                  faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = EF_CONSTRUCTION
        if not index.is_trained:
            index.train(np.zeros((1, self.dim), np.float32))  # fp16 learns nothing
        return self._tuned(index)

    def _tuned(self, index: Any) -> Any:
        if hasattr(index, "hnsw"):
            index.hnsw.efSearch = self._ef_search
        return index

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One write transaction on the store; SQLite's errors become one clear line."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            error = write_error(exc, self.store.path, self.store.timeout)
            if error is None:
                raise
            raise error from exc


def _unit(vectors: Any, dim: int, what: str) -> np.ndarray:
    """``vectors`` as unit-length float32 rows, ``(N, dim)``."""
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{what} must be (N, {dim}), got shape {np.shape(vectors)}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise ValueError(f"{what} must be finite and non-zero")
    return np.ascontiguousarray(x / norms)


def _crc(path: Path) -> int:
    crc = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    return crc


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
