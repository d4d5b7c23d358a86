"""Learning evaluation on real Crafter worlds (32x32): training in generations, and whether
what the agent learns makes it better on worlds it never saw."""

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cairn.experience.store import ExperienceStore
from cairn.runtime.config import load_config
from cairn.runtime.evaluate import Progress, train

ROOT = Path(__file__).resolve().parents[2]
HELD_OUT = list(range(100000, 100008))  # far from the training seeds (0, 1, ...)


def small_config(max_steps):
    return load_config(ROOT / "configs" / "crafter.yaml",
                       {"env.kwargs.area": [32, 32], "max_steps": max_steps})


def test_training_runs_generations_until_the_budget_and_reports_each(tmp_path):
    lines = []
    with ExperienceStore(tmp_path / "trained.sqlite") as store:
        generations = train(small_config(40), store, budget=150, generation=2, first_seed=7,
                            report=lines.append)
        episodes = {store.get(i).episode for i in range(1, store.count() + 1)}
    steps = sum(g.steps for g in generations)
    assert 150 <= steps < 150 + 40  # stops in the episode that reaches the budget
    assert [len(g.reached) for g in generations[:-1]] == [2] * (len(generations) - 1)
    assert 1 <= len(generations[-1].reached) <= 2
    assert len(episodes) == sum(len(g.reached) for g in generations)
    assert len(lines) == len(generations)
    assert all("/150 steps" in line for line in lines)


def played(path):
    """Every stored attempt, as what was tried and what came of it, and the knowledge."""
    with ExperienceStore(path, writable=False) as store:
        every = (store.get(i) for i in range(1, store.count() + 1))
        attempts = [(t.subgoal.key, t.pre.counters, t.diagnosis.steps, t.diagnosis.success,
                     t.diagnosis.cause) for t in every]
        knowledge = {(kind, e.key): (e.status, e.body)
                     for kind in ("skill", "guardrail", "memory")
                     for e in store.knowledge.current(kind)}
    return attempts, knowledge


def test_training_stopped_after_a_generation_goes_on_as_if_never_stopped(tmp_path):
    """A new process has none of the first one's memory but the store: what the kit and
    planner learned across episodes, the distillation windows and the random stream must
    all come back from it (or not depend on it)."""
    config = small_config(40)
    with ExperienceStore(tmp_path / "straight.sqlite") as store:
        train(config, store, budget=400, generation=2, first_seed=3, report=lambda _: None)
    saved: list[Progress] = []

    def keep_second(progress, block, agent):
        if progress.generations == 2:
            saved.append(progress)
            with sqlite3.connect(tmp_path / "kept.sqlite") as kept:
                sqlite3.connect(tmp_path / "first.sqlite").backup(kept)

    with ExperienceStore(tmp_path / "first.sqlite") as store:
        train(config, store, budget=400, generation=2, first_seed=3, report=lambda _: None,
              on_generation=keep_second)
    assert saved and 0 < saved[0].steps < 400 and saved[0].episodes == 4
    with ExperienceStore(tmp_path / "kept.sqlite") as store:
        blocks = train(config, store, budget=400, generation=2, first_seed=3,
                       report=lambda _: None, start=saved[0])
    assert blocks[0].name == "generation 3"
    straight, resumed = played(tmp_path / "straight.sqlite"), played(tmp_path / "kept.sqlite")
    assert len(straight[0]) > 50 and straight[1]  # a real run, which learned something
    assert resumed == straight


def evaluate(out, budget, max_steps, held_out):
    """``tests/learning_run.py`` in a process of its own."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "learning_run.py"), str(out), str(budget),
         str(max_steps), str(held_out[0]), str(len(held_out))],
        capture_output=True, text=True,
        timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def count(agent, achievement=None):
    return sum(len(r) if achievement is None else achievement in r for r in agent["reached"])


@pytest.mark.slow
def test_after_a_short_training_the_agent_beats_learning_off_on_held_out_worlds(tmp_path):
    """6,000 training steps (about 35 short episodes), then 8 held-out worlds of 200 steps.
    Measured: learning off reached 33 achievements in all (score 3.57, 1 table placed); the
    trained agent 84 (score 14.17, a table in 7 of 8 worlds, 7 wood swords, 7 wood
    pickaxes; 71 and 12.24 before a subgoal's confirmed harm guardrails were capped).
    Before harm guardrails named what went with harm (rather than what was merely rare) and
    a creature struck down counted as an effect, the same run learned no table (score 3.87):
    whether the table comes this early is partly chance, and the bench measures it on full
    worlds over seeds. About 25 s on 2 cores."""
    result = evaluate(tmp_path, 6000, 200, HELD_OUT)
    off, full = result["off"], result["full"]
    assert result["training_steps"] >= 6000
    assert len(off["reached"]) == len(full["reached"]) == len(HELD_OUT)
    assert count(full) >= count(off) + 20
    assert full["score"] >= off["score"] + 4
    # What learning brings this early: the first crafting, learned from its own failures.
    assert count(full, "place_table") >= count(off, "place_table") + 4
