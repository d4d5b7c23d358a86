"""The experience store's codec: attempts as picklable column batches, and payloads.

Writing is split in two so that the one process that owns a store can take attempts in bulk
from many workers: :func:`encode_attempts` runs in any process, without a store, and
``ExperienceStore.add_encoded`` only interns names, assigns ids and writes.

Payloads are ``ExperienceTuple.to_dict()`` pickled with protocol 5 (about 2.5x faster to
encode than JSON here) and read back with an unpickler that refuses every class, so a store
file can hold plain data only and never runs code when read.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any

from cairn.experience.records import ExperienceTuple

# -- payload codec -------------------------------------------------------------------------

class _PlainUnpickler(pickle.Unpickler):
    """Loads dicts, lists, strings and numbers only: a payload naming any class is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"store payload refers to {module}.{name}")


def decode(attempt_id: int, payload: bytes) -> ExperienceTuple:
    """The tuple a stored payload holds, with its row's id."""
    t = ExperienceTuple.from_dict(_PlainUnpickler(io.BytesIO(payload)).load())
    t.id = attempt_id
    return t


# -- encoding (any process) ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """Attempts ready for :meth:`ExperienceStore.add_encoded`, as columns of plain values.

    Made by :func:`encode_attempts`; it pickles, so workers encode and the one process that
    owns the store writes. ``attempts``: the columns of table ``attempts`` but the id
    (episode, step_start, step_end, subgoal, success, cause, condition, spatial, payload),
    with episode and subgoal as positions in ``episodes`` and ``subgoals``, the batch's
    distinct names. ``tagged``: its (tag, attempt) pairs, grouped by tag, as two columns of
    positions in ``tags`` and in the batch. ``groups``: tier 2's increments per (subgoal,
    condition, cause), sorted, in the columns of table ``summaries`` (subgoal, condition,
    cause, attempts, successes, progress_sum, steps_sum, last_attempt, last_episode), with
    positions for the subgoal, the group's last attempt and that attempt's episode.
    """

    episodes: tuple[str, ...]
    subgoals: tuple[str, ...]
    tags: tuple[str, ...]
    attempts: tuple[tuple, ...]
    tagged: tuple[tuple[int, ...], tuple[int, ...]]
    groups: tuple[tuple, ...]

    def __len__(self) -> int:
        return len(self.attempts[-1])

    def check(self) -> None:
        """Raise ValueError unless the columns agree in length and every position is in
        range (a negative one would silently name another row or name)."""
        shapes = ((self.attempts, 9), (self.tagged, 2), (self.groups, 9))
        if any(len(cols) != k or len({len(c) for c in cols}) != 1 for cols, k in shapes):
            raise ValueError("malformed EncodedBatch: columns missing or of different "
                             "lengths; make batches with encode_attempts")
        n = len(self)
        ranges = ((self.attempts[0], len(self.episodes)), (self.attempts[3], len(self.subgoals)),
                  (self.tagged[0], len(self.tags)), (self.tagged[1], n),
                  (self.groups[0], len(self.subgoals)), (self.groups[7], n),
                  (self.groups[8], len(self.episodes)))
        if any(column and (min(column) < 0 or max(column) >= size) for column, size in ranges):
            raise ValueError("malformed EncodedBatch: a position out of range; make batches "
                             "with encode_attempts")


def encode_attempts(ts: Iterable[ExperienceTuple]) -> EncodedBatch:
    """Everything the store's write needs from ``ts``, computed without a store.

    A payload is ``t.to_dict()`` without its id (the row's id is the tuple's id), pickled
    with protocol 5.
    """
    episodes: dict[str, int] = {}
    subgoals: dict[str, int] = {}
    tagged: dict[str, list[int]] = {}
    groups: dict[tuple[int, int, str], tuple] = {}
    rows = []
    dumps = pickle.dumps
    for i, t in enumerate(ts):
        d = t.to_dict()
        del d["id"]
        diagnosis = d["diagnosis"]
        episode = episodes.setdefault(d["episode"], len(episodes))
        subgoal = subgoals.setdefault(d["subgoal"], len(subgoals))
        success = int(diagnosis["success"])
        condition = t.condition
        for tag in t.tags:
            tagged.setdefault(tag, []).append(i)
        key = (subgoal, condition, diagnosis["cause"])
        n, ok, progress, steps, _, _ = groups.get(key, _NO_GROUP)
        groups[key] = (n + 1, ok + success, progress + float(diagnosis["progress"]),
                       steps + diagnosis["steps"], i, episode)
        rows.append((episode, d["step_start"], d["step_end"], subgoal, success, key[2],
                     condition, t.spatial, dumps(d, 5)))
    return EncodedBatch(
        tuple(episodes), tuple(subgoals), tuple(tagged),
        tuple(zip(*rows, strict=True)) or ((),) * 9,
        (tuple(chain.from_iterable(repeat(k, len(at)) for k, at in enumerate(tagged.values()))),
         tuple(chain.from_iterable(tagged.values()))),
        tuple(zip(*(key + groups[key] for key in sorted(groups)), strict=True)) or ((),) * 9)


_NO_GROUP = (0, 0, 0.0, 0, 0, 0)
