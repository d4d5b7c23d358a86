"""Offline re-diagnosis and re-distillation: rebuild attempts, diagnoses and knowledge from
recordings into a store, so knowledge can be learned from episodes played earlier, by
another agent, or by a person (map games; see docs/offline.md).

Each recording is served as an env (``lockstep.RecordedEnv``) and the map family's kit is
built against it as a live run builds it, so the world model is rebuilt from the recorded
frames by perception. A recording made by Cairn is rebuilt attempt by attempt with the
recorded subgoals' real controllers (``lockstep``); one without attempts, such as a person's
play imported with ``import_episode``, is cut into attempts by the roles of its actions
(``segment``). Every attempt is stored and distilled as the live loop does it, in the same
order, so the knowledge distilled from a run's recordings is the knowledge that run
distilled.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cairn.envs.game import Game, GameError
from cairn.experience.episodes import Episode, list_episodes, load_episode
from cairn.experience.recording import EpisodeRecorder, RecordingError
from cairn.experience.store import ExperienceStore
from cairn.guardrails.store import KIND as GUARDRAIL
from cairn.runtime.config import ConfigError, RunConfig, build, check
from cairn.runtime.kits import make_kit
from cairn.runtime.learning import Learner
from cairn.runtime.lockstep import EpisodeLine, RecordedEnv, Replay
from cairn.runtime.segment import Roles
from cairn.skills.library import KIND as SKILL

__all__ = ["DistillError", "DistillReport", "EpisodeLine", "distill_episodes", "episodes_at",
           "import_episode", "recorded_config"]


class DistillError(ValueError):
    """A recording that cannot be distilled, or a store it must not go into; the message
    names the recording and what to do."""


@dataclass
class DistillReport:
    """What ``distill_episodes`` did; ``compared`` attempts had a recorded diagnosis, of
    which ``same_diagnosis`` came out the same; ``mismatches`` were judged after the fact;
    skills and guardrails are the store's current entries before and after."""

    episodes: int = 0
    steps: int = 0
    attempts: int = 0
    compared: int = 0
    same_diagnosis: int = 0
    mismatches: int = 0
    skills_before: int = 0
    skills_after: int = 0
    guardrails_before: int = 0
    guardrails_after: int = 0
    lines: list[EpisodeLine] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"{self.episodes} episode(s), {self.steps} steps, {self.attempts} attempts; "
                f"skills {self.skills_before} -> {self.skills_after}, guardrails "
                f"{self.guardrails_before} -> {self.guardrails_after}")
        if self.compared:
            text += f"; {self.same_diagnosis}/{self.compared} diagnosed as recorded"
        return text


def episodes_at(path: Path | str) -> list[Episode]:
    """The recordings at ``path``: one episode folder, or every episode under a run folder in
    the order they were played (``episode-000``, ``episode-001``, ...)."""
    path = Path(path)
    # episode-999 before episode-1000: by folder, then by the name's length, then the name
    folders = sorted(list_episodes(path), key=lambda p: (str(p.parent), len(p.name), p.name))
    if not folders:
        raise DistillError(f"{path}: no recordings there (an episode folder holds meta.json "
                           "and frames.bin; give one, or a run folder holding them)")
    try:
        return [load_episode(folder) for folder in folders]
    except RecordingError as err:
        raise DistillError(f"{err}; distil the other recordings without it") from None


def distill_episodes(
    episodes: Sequence[Episode], store: ExperienceStore, *, learning: str = "learn",
    use_recorded_attempts: bool = True, on_episode: Callable[[EpisodeLine], None] | None = None,
) -> DistillReport:
    """Rebuild the attempts of ``episodes`` (in the order given, one kit and one learner for
    all of them, as one run plays its episodes) into ``store`` and distil them with
    ``learning`` (``learn``, ``frozen``, ``off``). Each rebuilt attempt is named by its
    recording's episode; a store that already holds attempts of one of them is refused, so
    nothing is counted twice. ``use_recorded_attempts=False`` cuts Cairn's own recordings
    into attempts by action roles too, as a person's play is. Everything is checked before
    the first attempt is written."""
    if not episodes:
        raise DistillError("no recordings to distil")
    config, names = _common_setup(episodes)
    for episode in episodes:
        name = episode_name(episode)
        if len(store.by_episode(name)):
            raise DistillError(
                f"{episode.directory}: {store.path} already holds the attempts of episode "
                f"{name} (distilling it again would count them twice); distil into a new "
                "store, or copy the live store instead")
    skills, guards = _known(store)
    report = DistillReport(skills_before=skills, guardrails_before=guards)
    game = config.game_adapter()
    learner = Learner(store, learning)
    kit = make_kit(game, RecordedEnv(episodes[0], names), config, learner,
                   np.random.default_rng(config.seed))
    learner.rules = kit.rules
    roles = Roles(config.actions, config.agent)
    for episode in episodes:
        replay = Replay(RecordedEnv(episode, names), kit, learner, store, roles)
        line = replay.run(episode_name(episode), use_recorded_attempts)
        report.episodes += 1
        report.steps += line.steps
        report.attempts += line.attempts
        report.compared += line.compared
        report.same_diagnosis += line.same_diagnosis
        report.mismatches += line.mismatches
        report.lines.append(line)
        if on_episode is not None:
            on_episode(line)
    report.skills_after, report.guardrails_after = _known(store)
    return report


def episode_name(episode: Episode) -> str:
    """The recording's own episode name (its folder's name if it has none)."""
    name = (episode.metadata.get("metadata") or {}).get("episode")
    return name if isinstance(name, str) and name else episode.directory.name


def _known(store: ExperienceStore) -> tuple[int, int]:
    knowledge = store.knowledge
    return len(knowledge.current(SKILL)), len(knowledge.current(GUARDRAIL))


def recorded_config(episode: Episode) -> tuple[RunConfig, Game]:
    """The config a recording was made with, and its game adapter (map games only)."""
    meta = episode.metadata.get("metadata") or {}
    where = episode.directory
    if meta.get("game") is None:
        raise DistillError(f"{where}: recorded without its game's name (by an older Cairn, "
                           "or not by Cairn): import it with 'cairn import' first")
    try:
        config = build(RunConfig, meta.get("config") or {}, "")
        check(config)
        game = config.game_adapter()
    except (ConfigError, GameError) as err:
        raise DistillError(f"{where}: its recorded config cannot be used: {err}") from None
    if game.family != "map":
        raise DistillError(f"{where}: its game ({game.name}) is not a map game; only map "
                           "games' recordings can be distilled offline")
    return config, game


def _common_setup(episodes: Sequence[Episode]) -> tuple[RunConfig, tuple[str, ...]]:
    """The config and action names all ``episodes`` share; refuse any that differ."""
    config, _ = recorded_config(episodes[0])
    names = _action_names(episodes[0])
    seen: set[str] = set()
    for episode in episodes:
        other, _ = recorded_config(episode)
        where = episode.directory
        if (other.game, other.actions, other.agent) != (config.game, config.actions,
                                                        config.agent):
            raise DistillError(f"{where}: recorded with another game or other action roles "
                               f"than {episodes[0].directory}; distil them one at a time")
        if _action_names(episode) != names:
            raise DistillError(f"{where}: its action set differs from that of "
                               f"{episodes[0].directory}; distil them one at a time")
        if not len(episode.frames):
            raise DistillError(f"{where}: no frames recorded; leave it out")
        if episode.frames.shape[1:] != episodes[0].frames.shape[1:]:
            raise DistillError(f"{where}: frames of {episode.frames.shape[1:]}, not "
                               f"{episodes[0].frames.shape[1:]}; distil them one at a time")
        bad = [int(a) for a in episode.actions if not 0 <= int(a) < len(names)]
        if bad:
            raise DistillError(f"{where}: action index {bad[0]} is not one of its "
                               f"{len(names)} actions")
        name = episode_name(episode)
        if name in seen:
            raise DistillError(f"{where}: episode {name} is given twice")
        seen.add(name)
    return config, names


def _action_names(episode: Episode) -> tuple[str, ...]:
    names = (episode.metadata.get("metadata") or {}).get("action_names")
    if not names or not all(isinstance(n, str) for n in names):
        raise DistillError(f"{episode.directory}: its action names were not recorded, so its "
                           "actions cannot be given their roles")
    return tuple(names)


def import_episode(path: Path | str, config: RunConfig, out_dir: Path | str,
                   seed: int | None = None) -> Path:
    """Turn an episode recorded by a game's own tools (Crafter's ``.npz``) into a Cairn
    recording folder under ``out_dir``, named after the file, that ``distill_episodes``
    takes like any other. ``config`` gives the game and its action roles; ``seed`` is the
    world's seed if known. Returns the folder; nothing is left behind on an error."""
    path, out_dir = Path(path), Path(out_dir)
    if config.game is None:
        raise DistillError("the config names no game")
    game = config.game_adapter()
    try:
        imported = game.import_episode(path)
    except GameError as err:
        raise DistillError(str(err)) from None
    name = path.stem
    final = out_dir / name
    if final.exists():
        raise DistillError(f"{final} already exists: it was imported before; remove it or "
                           "import into another folder")
    metadata = {"episode": name, "seed": seed, "config": asdict(config), "game": game.name,
                "versions": game.versions(), "action_names": list(imported.action_names),
                "reset_options": None, "imported_from": str(path.resolve()),
                "source": imported.source}
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / f".{name}.importing"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with EpisodeRecorder(partial, metadata) as recorder:
            recorder.record_reset(imported.frames[0])
            for t, action in enumerate(imported.actions):
                recorder.record_step(int(action), imported.frames[t + 1],
                                     float(imported.rewards[t]), bool(imported.terminated[t]),
                                     bool(imported.truncated[t]))
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final
