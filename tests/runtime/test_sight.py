"""A run with a CLIP encoder (random weights: none can be downloaded here): every attempt
is indexed by its first frame, zero-shot tags become percept tags, a goal in words ends the
episode, and the planner is offered the most similar past situations."""

import os

import numpy as np
import pytest

from cairn.experience.situations import SituationIndex
from cairn.experience.store import ExperienceStore
from cairn.runtime.config import load_config
from cairn.runtime.loop import Agent

from ..conftest import ROOT

os.environ.setdefault("HF_HUB_OFFLINE", "1")
MODEL = "ViT-S-32"  # the smallest open_clip model; randomly initialised


def clip_config(tmp_path, **clip):
    return load_config(ROOT / "configs" / "crafter.yaml", {
        "env.kwargs.area": [32, 32], "max_steps": 40,
        "clip": {"model": MODEL, **clip}})


class Remembering:
    """The agent's own planner, keeping what it was offered as similar situations."""

    def __init__(self, planner):
        self.planner, self.offered = planner, []

    def __getattr__(self, name):
        return getattr(self.planner, name)

    def next_subgoal(self, ctx):
        self.offered.append(ctx.similar(3) if ctx.similar else None)
        return self.planner.next_subgoal(ctx)


@pytest.fixture(scope="module")
def indexed_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sight")
    config = clip_config(tmp, labels=["a bright screen", "a dark screen"], tag_min_score=0.0,
                         tag_top_k=1)
    store = ExperienceStore(tmp / "s.sqlite")
    with Agent(config, store, tmp / "runs", run_id="s") as agent:
        agent.planner = Remembering(agent.planner)
        results = [agent.run_episode(5, 0), agent.run_episode(6, 1)]
        offered = agent.planner.offered
        encoder = agent.sight.encoder
    yield store, results, offered, encoder
    store.close()


def test_every_attempt_is_indexed_and_found_again_by_its_first_frame(indexed_run):
    from cairn.experience.episodes import load_episode

    store, results, _, encoder = indexed_run
    attempts = [t for r in results for t in store.by_episode(r.episode)]
    with SituationIndex.open(store, encoder.name, encoder.dim) as index:
        assert len(index) == len(attempts)
        episode = load_episode(results[1].directory)
        probe = episode.attempts[len(episode.attempts) // 2]
        (best, cosine), *_ = index.similar(encoder.embed(episode.frames[probe.step_start]), 1)
    assert cosine > 0.99
    assert (best.episode, best.step_start) == (probe.episode, probe.step_start)


def test_tags_come_from_the_label_list_and_reach_the_stored_states(indexed_run):
    store, results, _, _ = indexed_run
    tags = {tag for r in results for t in store.by_episode(r.episode) for tag in t.pre.tags
            if tag.startswith("clip:")}
    assert tags and tags <= {"clip:a bright screen", "clip:a dark screen"}


def test_the_planner_is_offered_past_situations_once_there_are_some(indexed_run):
    _, results, offered, _ = indexed_run
    assert offered[0] == []  # nothing stored before the first attempt
    later = offered[-1]
    assert 0 < len(later) <= 3
    cosines = [c for _, c in later]
    assert cosines == sorted(cosines, reverse=True)


def test_a_goal_in_words_that_is_always_seen_ends_the_episode_after_one_attempt(tmp_path):
    config = clip_config(tmp_path, goal_text="anything at all", goal_threshold=-1.0,
                         index=False)
    with ExperienceStore(tmp_path / "s.sqlite") as store, \
            Agent(config, store, None, run_id="g") as agent:
        result = agent.run_episode(5, 0)
    assert (result.end, result.attempts) == ("goal", 1)


def test_a_store_indexed_by_another_encoder_is_refused_in_one_line(indexed_run, tmp_path,
                                                                   copy_store, capsys):
    from cairn.runtime.cli import main

    store, *_ = indexed_run
    copied = copy_store(store.path, tmp_path / "copy.sqlite")
    config = tmp_path / "other.yaml"
    config.write_text((ROOT / "configs" / "crafter.yaml").read_text()
                      + "clip:\n  model: RN50\n")
    assert main(["run", str(config), "--store", str(copied), "--no-record", "--quiet",
                 "--max-steps", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ViT-S-32@random" in err[0] and "RN50" in err[0]


def test_without_a_clip_section_nothing_of_it_is_loaded():
    import subprocess
    import sys

    code = ("import sys; from cairn.runtime.config import load_config; "
            "from cairn.runtime.loop import Agent; "
            f"c = load_config({str(ROOT / 'configs' / 'crafter.yaml')!r}); "
            "assert c.clip is None; print('torch' in sys.modules, 'open_clip' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]
    assert np.__name__  # numpy is all a plain run needs


def test_weights_that_cannot_be_loaded_are_one_line(tmp_path, capsys):
    from cairn.runtime.cli import main

    config = tmp_path / "missing.yaml"
    config.write_text((ROOT / "configs" / "crafter.yaml").read_text()
                      + f"clip:\n  model: {MODEL}\n  checkpoint: no-such-weights.pt\n")
    assert main(["run", str(config), "--store", str(tmp_path / "s.sqlite"), "--no-record",
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-weights.pt" in err[0]


def test_the_llm_prompt_carries_the_most_similar_past_situations(indexed_run):
    from cairn.runtime.llm_planner import build_prompt

    store, results, _, encoder = indexed_run
    from cairn.experience.episodes import load_episode

    episode = load_episode(results[1].directory)
    with SituationIndex.open(store, encoder.name, encoder.dim) as index:
        similar = index.similar(encoder.embed(episode.frames[0]), 2)
    t = episode.attempts[0]

    class Ctx:
        state = t.pre
        by_name, can_sleep, skills, guardrails = [], False, None, None

        @staticmethod
        def stats(key, condition):
            return (0, 0)

        @staticmethod
        def similar(k):
            return similar[:k]

    prompt = build_prompt(Ctx, "a task", None, 10_000)
    assert "In the most similar past situations:" in prompt.user
    assert all(f"{s.subgoal.key} " in prompt.user for s, _ in similar)


def test_clip_with_workers_is_refused_in_one_line():
    from cairn.runtime.config import ConfigError

    with pytest.raises(ConfigError, match="'clip' does not go with workers"):
        load_config(ROOT / "configs" / "crafter.yaml", {"clip": {"model": MODEL}, "workers": 2})
