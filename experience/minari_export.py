"""Recordings exported as a Minari dataset, the format offline-RL libraries read.

One recording becomes one Minari episode: observations are the recorded frames (frame 0 is
the reset frame, so there is one more observation than actions, as Minari expects), actions
the recorded action indices, and rewards, terminations and truncations as
:func:`~cairn.experience.episodes.load_episode` reads them (a recording that stopped without
a terminal step has its last step truncated). Frames are stored losslessly: Minari
0.5.4 JPEG-encodes image observations unless told not to.

Each episode keeps, as Minari episode metadata: ``seed``, ``options`` (the reset options)
and, under ``cairn``, ``episode``, ``game``, ``end_reason`` (finished recordings only),
``finished``, ``total_reward`` and ``recording`` (the source folder); reset options or a
seed that HDF5 attributes cannot hold go to ``cairn``'s ``reset_options`` or ``seed`` as
JSON text instead. The dataset's metadata has a description and, under ``cairn``, the action names,
the games and the episode names. There is no env spec: Cairn's envs are not registered with
Gymnasium.

The dataset is built in a hidden folder under the datasets root (Minari lists no hidden
folder) and renamed into place once complete, so an export that fails or is interrupted
leaves no dataset behind, and ``overwrite`` replaces an old dataset only with a whole new one.
Episodes are read and written one at a time: memory holds one episode, however long the run
(recordings without action names are read twice: their highest action sets the action space).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import re
import secrets
import shutil
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from gymnasium import spaces

from cairn.experience.episodes import Episode, _read_meta, load_episode
from cairn.experience.recording import FORMAT, FORMAT_VERSION

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'cairn[minari]'"
#: The environment variable Minari reads its datasets root from (default ~/.minari/datasets).
ROOT_VARIABLE = "MINARI_DATASETS_PATH"
_SEGMENT = r"[A-Za-z0-9_-]+"
_DATASET_ID = re.compile(
    rf"(?:(?P<namespace>{_SEGMENT}(?:/{_SEGMENT})*)/)?(?P<name>{_SEGMENT}?)-v(?P<version>\d+)")
_ATTR_TYPES = (str, bool, int, float)
_INT64 = range(-(2**63), 2**63)


class MinariMissingError(ImportError):
    """Minari (an optional extra) is not installed; the message says how to install it."""


def check_dataset_id(dataset_id: str) -> str:
    """Return ``dataset_id`` if Minari accepts it (``name-vN`` or ``namespace/name-vN``),
    else raise ValueError saying what an id looks like. Needs no Minari."""
    match = _DATASET_ID.fullmatch(dataset_id) if isinstance(dataset_id, str) else None
    # Minari's own pattern wants a namespace of at least two characters.
    if match is None or len(match["namespace"] or "ab") < 2:
        raise ValueError(f"bad Minari dataset id {dataset_id!r}: use NAME-vN or "
                         "NAMESPACE/NAME-vN (letters, digits, '_' and '-'), e.g. cairn/run-v0")
    return dataset_id


def _import_minari() -> ModuleType:
    try:
        import h5py  # noqa: F401 - Minari's HDF5 storage, part of the extra
        import minari
        import minari.namespace  # noqa: F401 - used as minari.namespace below
    except ImportError as e:
        raise MinariMissingError(f"exporting a Minari dataset needs Minari ({e}): "
                                 f"{INSTALL_HINT}") from None
    return minari


@contextlib.contextmanager
def _datasets_root(path: Path) -> Iterator[None]:
    """Minari takes its root from the environment only: set it, and put it back after."""
    before = os.environ.get(ROOT_VARIABLE)
    os.environ[ROOT_VARIABLE] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ROOT_VARIABLE, None)
        else:
            os.environ[ROOT_VARIABLE] = before


@dataclass
class _Source:
    """One recording to export, known by its meta.json until it is loaded."""

    item: Path | Episode
    meta: dict[str, Any]

    @property
    def where(self) -> Path:
        return self.item.directory if isinstance(self.item, Episode) else self.item

    @property
    def inner(self) -> dict[str, Any]:
        inner = self.meta.get("metadata")
        return inner if isinstance(inner, dict) else {}

    @property
    def action_names(self) -> list[str] | None:
        names = self.inner.get("action_names")
        return list(names) if isinstance(names, list) and names else None

    @property
    def frame_shape(self) -> tuple[int, ...] | None:
        shape = self.meta.get("frame_shape")
        return tuple(shape) if isinstance(shape, list) else None

    def load(self) -> Episode:
        return self.item if isinstance(self.item, Episode) else load_episode(self.item)


def _sources(episodes: Sequence[Path | str | Episode]) -> list[_Source]:
    sources = []
    for item in episodes:
        if isinstance(item, Episode):
            sources.append(_Source(item, item.metadata))
        else:
            sources.append(_Source(Path(item), _read_meta(Path(item))))
    if not sources:
        raise ValueError("no recordings to export")
    return sources


def _first_differing(sources: list[_Source], key: Callable[[_Source], Any]
                     ) -> tuple[_Source, _Source] | None:
    """(the first source with a known value, the first whose known value differs)."""
    known = [s for s in sources if key(s) is not None]
    return next(((known[0], s) for s in known[1:] if key(s) != key(known[0])), None)


def _check_alike(sources: list[_Source]) -> tuple[int, list[str] | None]:
    """Check from meta.json that the recordings share a frame shape and an action set;
    return the action count (read from the actions when no recording names them)."""
    pair = _first_differing(sources, lambda s: s.frame_shape)
    if pair:
        first, other = pair
        raise ValueError(f"{other.where}: frame shape {other.frame_shape} differs from "
                         f"{first.frame_shape} in {first.where}: one dataset holds one shape")
    pair = _first_differing(sources, lambda s: s.action_names)
    if pair:
        first, other = pair
        a, b = len(first.action_names or ()), len(other.action_names or ())
        what = f"action count {b} differs from {a}" if a != b else "action names differ"
        raise ValueError(f"{other.where}: {what} in {first.where}: one dataset holds one "
                         "action set")
    names = next((s.action_names for s in sources if s.action_names), None)
    if names is not None:
        return len(names), names
    # No names (a board game records clicked regions): the highest index decides.
    top = max((int(a.max()) for s in sources if len(a := s.load().actions)), default=0)
    return top + 1, None


def _resolve_root(root: Path | str | None) -> Path:
    if root is None:
        from minari.storage.datasets_root_dir import get_dataset_path

        return Path(get_dataset_path()).absolute()
    root = Path(root).expanduser().absolute()
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root}: not a folder; give a folder for the Minari datasets")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _is_dataset(path: Path) -> bool:
    return (path / "data" / "metadata.json").is_file()


def _check_target(target: Path, dataset_id: str, overwrite: bool) -> None:
    if not (target.exists() or target.is_symlink()):
        return
    if not overwrite:
        raise ValueError(f"{target}: a Minari dataset {dataset_id} already exists; use another "
                         "name or version, or overwrite it (--overwrite, or overwrite=True)")
    if not _is_dataset(target):
        raise ValueError(f"{target}: exists and is not a Minari dataset; not replacing it")


def _attr_safe(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and "/" not in k and _attr_safe(v)
                   for k, v in value.items())
    return isinstance(value, _ATTR_TYPES)


def _int64(value: Any) -> int | None:
    """``value`` as an int if it is a whole number an HDF5 attribute can hold, else None."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value) if int(value) in _INT64 else None
    return None


def _options(episode: Episode) -> tuple[Any, bool]:
    """(the reset options, whether Minari's ``options`` attributes can hold them)."""
    options = (episode.metadata.get("metadata") or {}).get("reset_options")
    return options, isinstance(options, dict) and bool(options) and _attr_safe(options)


def _buffer(minari: ModuleType, episode: Episode) -> Any:
    options, fits = _options(episode)
    return minari.data_collector.EpisodeBuffer(
        seed=_int64(episode.seed), options=options if fits else None,
        observations=episode.frames, actions=episode.actions, rewards=episode.rewards,
        terminations=episode.terminated, truncations=episode.truncated,
        infos={})  # Minari's EpisodeData assumes a dict


def _episode_attrs(episode: Episode) -> dict[str, Any]:
    """What Minari keeps of the recording as episode attributes (``cairn/...``: Minari
    reads the slash back as a nested dict). HDF5 attributes cannot hold None."""
    inner = episode.metadata.get("metadata") or {}
    attrs: dict[str, Any] = {
        "episode": inner.get("episode"), "game": inner.get("game"),
        "end_reason": episode.end_reason, "finished": episode.finished,
        "total_reward": float(episode.rewards.sum()),
        "recording": str(Path(episode.directory).absolute()),
    }
    if episode.seed is not None and _int64(episode.seed) is None:
        attrs["seed"] = json.dumps(episode.seed, default=str)
    options, fits = _options(episode)
    if options is not None and not fits:
        attrs["reset_options"] = json.dumps(options, default=str)
    return {f"cairn/{k}": v for k, v in attrs.items() if isinstance(v, _ATTR_TYPES)}


def _check_episode(episode: Episode, shape: tuple[int, ...], n_actions: int) -> None:
    if episode.frames.shape[1:] != shape:
        raise ValueError(f"{episode.directory}: frames are {episode.frames.shape[1:]}, the "
                         f"episodes before it {shape}: one dataset holds one frame shape")
    bad = np.flatnonzero((episode.actions < 0) | (episode.actions >= n_actions))
    if len(bad):
        raise ValueError(f"{episode.directory}: step {bad[0]} has action "
                         f"{episode.actions[bad[0]]}, outside the dataset's {n_actions} actions")


def _lossless(minari: ModuleType) -> dict[str, Any]:
    """This Minari stores image observations as JPEG unless told not to; older ones can't."""
    params = inspect.signature(minari.create_dataset_from_buffers).parameters
    return {"jpeg_encoding": False} if "jpeg_encoding" in params else {}


def _describe(games: list[str], episodes: int, steps: int, shape: tuple[int, ...],
              n_actions: int, names: list[str] | None) -> str:
    size = "x".join(map(str, shape))
    actions = f" ({', '.join(names)})" if names else ""
    return (f"Episodes recorded by Cairn ({', '.join(games) or 'unknown game'}): {episodes} "
            f"episodes, {steps} steps. Observations are the screen frames as recorded "
            f"({size} uint8; the first is the reset frame), actions the recorded action "
            f"indices, Discrete({n_actions}){actions}. A recording that stopped without a "
            "terminal step ends truncated. Episode metadata: seed, options (reset options) "
            "and cairn/{episode, game, end_reason, finished, total_reward, recording}.")


def _build(minari: ModuleType, sources: list[_Source], dataset_id: str, n_actions: int,
           names: list[str] | None, author: str | None) -> int:
    """Write the dataset under the current datasets root, one episode at a time; return
    how many episodes it holds."""
    dataset, shape, kept, steps, games = None, None, [], 0, set()
    for source in sources:
        episode = source.load()
        if episode.num_steps == 0:
            log.warning("%s: no steps recorded; left out of the Minari dataset",
                        episode.directory)
            continue
        shape = shape or episode.frames.shape[1:]
        _check_episode(episode, shape, n_actions)
        buffer = _buffer(minari, episode)
        if dataset is None:
            with warnings.catch_warnings():  # about the optional fields left empty
                warnings.filterwarnings("ignore", category=UserWarning, module=r"minari\b")
                dataset = minari.create_dataset_from_buffers(
                    dataset_id, [buffer], algorithm_name="cairn", author=author,
                    observation_space=spaces.Box(0, 255, shape, np.uint8),
                    action_space=spaces.Discrete(n_actions), data_format="hdf5",
                    **_lossless(minari))
        else:
            dataset.update_dataset_from_buffer([buffer])
        dataset.storage.update_episode_metadata([_episode_attrs(episode)], [len(kept)])
        inner = episode.metadata.get("metadata") or {}
        kept.append(inner.get("episode") or str(episode.directory))
        games.add(str(inner.get("game") or "unknown"))
        steps += episode.num_steps
    if dataset is None:
        raise ValueError(f"nothing to export: none of the {len(sources)} recordings given "
                         "has a step")
    dataset.storage.update_metadata({
        "description": _describe(sorted(games), len(kept), steps, shape, n_actions, names),
        "cairn": {"format": FORMAT, "format_version": FORMAT_VERSION, "action_names": names,
                  "games": sorted(games), "episodes": kept},
    })
    return len(kept)


def _ensure_namespace(minari: ModuleType, dataset_id: str) -> None:
    namespace = _DATASET_ID.fullmatch(dataset_id)["namespace"]
    if namespace and namespace not in minari.namespace.list_local_namespaces():
        minari.namespace.create_namespace(namespace)


def _move_into_place(built: Path, target: Path, dataset_id: str, overwrite: bool) -> None:
    """Rename the complete dataset into place. An old one it replaces is first set aside
    beside it (hidden), so that an interrupt between the two renames loses neither."""
    old = None
    if overwrite and _is_dataset(target):
        old = target.with_name(f".{target.name}.replaced-{secrets.token_hex(6)}")
        os.rename(target, old)
    try:
        os.rename(built, target)
    except OSError as e:
        if old is not None:
            os.rename(old, target)
        raise ValueError(f"{target}: cannot put the dataset {dataset_id} there "
                         f"({e.strerror}); was it created meanwhile?") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_minari(episodes: Sequence[Path | str | Episode], dataset_id: str,
                  root: Path | str | None = None, *, author: str | None = None,
                  overwrite: bool = False) -> Path:
    """Write the recordings (folders or loaded episodes, in order) as the Minari dataset
    ``dataset_id`` under ``root`` (default: Minari's own, ``$MINARI_DATASETS_PATH`` or
    ``~/.minari/datasets``) and return its folder; ``minari.load_dataset(dataset_id)`` reads
    it back when Minari's root is ``root``. Minari reads its root from the environment
    only, so ``MINARI_DATASETS_PATH`` is set while Minari writes and put back afterwards
    (do not export from two threads at once).

    Raises ValueError (one line naming the recording) for a bad id, an id that exists (unless
    ``overwrite``: the old dataset is replaced once the new one is complete), recordings that
    differ in frame shape or action count, or when no recording has a step; recordings
    without steps are left out with a warning. A damaged recording raises RecordingError: to
    export its good prefix, pass ``load_episode(dir, salvage=True)`` instead of the folder.
    Without Minari, raises :class:`MinariMissingError`.
    """
    check_dataset_id(dataset_id)
    minari = _import_minari()
    sources = _sources(episodes)
    n_actions, names = _check_alike(sources)
    root = _resolve_root(root)
    target = root / dataset_id
    _check_target(target, dataset_id, overwrite)
    scratch = root / f".cairn-export-{secrets.token_hex(6)}"
    try:
        with _datasets_root(scratch):
            kept = _build(minari, sources, dataset_id, n_actions, names, author)
        with _datasets_root(root):
            _ensure_namespace(minari, dataset_id)
        _check_target(target, dataset_id, overwrite)
        _move_into_place(scratch / dataset_id, target, dataset_id, overwrite)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("exported %d episodes as Minari dataset %s at %s", kept, dataset_id, target)
    return target
