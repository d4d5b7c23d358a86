"""Shared fixtures: real Crafter worlds and real SQLite stores."""

import copy
import hashlib
import json
import signal
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from cairn.envs.crafter import CrafterEnv
from cairn.experience.store import ExperienceStore
from cairn.perception.crafter import CrafterParser
from cairn.runtime.config import load_config

ROOT = Path(__file__).resolve().parent.parent
TINY_CLIP = {"embed_dim": 32,
             "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32,
                            "patch_size": 8},
             "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                          "layers": 2}}
"""A tiny open_clip architecture: random weights, built in a moment, nothing downloaded."""


def tiny_clip_folder(folder: Path, cfg: dict = TINY_CLIP) -> Path:
    """A ``local-dir:`` model folder holding only ``cfg`` (random weights)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    return folder


@pytest.fixture
def crafter_config():
    return load_config(ROOT / "configs" / "crafter.yaml")


@pytest.fixture
def small_world():
    """A real Crafter env with a 32x32 world: the same 64x64 frames, resets 4x faster."""
    env = CrafterEnv(size=64, area=(32, 32))
    yield env
    env.close()


@pytest.fixture(scope="session")
def parse():
    return CrafterParser(64).parse


def _sigint_as_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def ctrl_c():
    """Ctrl-C works here even when the suite was started with SIGINT ignored (in the
    background, or under nohup, as shells do): this process raises KeyboardInterrupt, and
    the fixture's value, given as a child's ``preexec_fn``, gives the child the default."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield _sigint_as_default
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def store(tmp_path):
    """An empty experience store in a real SQLite file."""
    with ExperienceStore(tmp_path / "exp.sqlite") as store:
        yield store


TABLE_SCRIPT = (
    ["use:place_table"] * 2            # nothing to build with: no effect
    + ["interact:tree"] * 4            # gather
    + ["use:place_table", "explore", "use:place_table", "use:place_table"]
)
MANY_TREES_SEED = 28  # 32x32 world: six trees in view at the start


class ScriptedThenPlanned:
    """Test planner: a fixed list of subgoals first, then the agent's own planner decides."""

    def __init__(self, script, planner):
        self.script = list(script)
        self.scripted = len(self.script)
        """How many attempts of the episode were scripted: the rest the planner chose."""
        self.planner = planner
        self._scripted_last = False

    def reset(self):
        self.planner.reset()

    @property
    def last_reason(self):
        return "script" if self._scripted_last else self.planner.last_reason

    def next_subgoal(self, ctx):
        from cairn.experience.records import Subgoal

        self._scripted_last = bool(self.script)
        if self.script:
            return Subgoal.parse(self.script.pop(0))
        return self.planner.next_subgoal(ctx)

    def on_attempt(self, attempt, ctx):
        self.planner.on_attempt(attempt, ctx)

    def memory(self):
        return self.planner.memory()

    def recall(self, memory):
        self.planner.recall(memory)


def _copy_store(src: Path, dst: Path) -> Path:
    """A consistent copy of a store file (its WAL included), through SQLite's backup API."""
    with closing(sqlite3.connect(src)) as source, closing(sqlite3.connect(dst)) as target:
        source.backup(target)
    return dst


@pytest.fixture
def copy_store():
    """``copy_store(src, dst)``: copy a store file consistently; returns ``dst``."""
    return _copy_store


def _fingerprint(agent, store_path: Path) -> tuple:
    """Everything of ``table_run`` a test could change by mistake: the store's content, the
    knowledge in memory, the planner's random state and episode memory."""
    with closing(sqlite3.connect(store_path)) as conn:
        dump = hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()
    planner = agent.planner.planner
    return (
        dump,
        repr(sorted((k, s.version, s.to_dict()) for k, s in agent.learner.skills.skills.items())),
        repr(sorted((k, g.version, g.to_dict())
                    for k, g in agent.learner.guardrails.guardrails.items())),
        repr(agent.rng.bit_generator.state),
        repr(sorted(planner.tried.items())), repr(sorted(planner.seen_facts)),
    )


@pytest.fixture(scope="session")
def table_run(tmp_path_factory):
    """A real learning episode from an empty store: a short script of attempts (so the
    evidence is certain to contain successes and failures), then the agent's own planner.
    Returns (agent, store path, run dir, episode name).

    Shared by every test of the session, so it must stay as it is: tests that write to a
    store use ``table_store`` (a copy), tests that ask the planner use ``planner_copy``.
    Teardown checks that no test changed it (test order must not matter)."""
    from cairn.runtime.loop import Agent

    tmp = tmp_path_factory.mktemp("table-run")
    config = load_config(ROOT / "configs" / "crafter.yaml",
                         {"env.kwargs.area": [32, 32], "max_steps": 250})
    store = ExperienceStore(tmp / "exp.sqlite")
    agent = Agent(config, store, tmp / "runs" / "table")
    agent.planner = ScriptedThenPlanned(TABLE_SCRIPT, agent.planner)
    result = agent.run_episode(MANY_TREES_SEED, 0)
    before = _fingerprint(agent, tmp / "exp.sqlite")
    yield agent, tmp / "exp.sqlite", tmp / "runs", result.episode
    after = _fingerprint(agent, tmp / "exp.sqlite")
    agent.close()
    store.close()
    changed = [name for name, a, b in zip(
        ("store", "skills", "guardrails", "rng", "planner.tried", "planner.seen_facts"),
        before, after, strict=True) if a != b]
    assert not changed, f"a test changed the shared table_run fixture: {changed}"


@pytest.fixture
def table_store(table_run, tmp_path):
    """A private copy of ``table_run``'s store, for tests that write to one."""
    return _copy_store(table_run[1], tmp_path / "exp-copy.sqlite")


@pytest.fixture
def planner_copy():
    """``planner_copy(agent, without=())``: a fresh planner like the agent's, with copies of
    its knowledge held in memory only (minus the guardrails whose ids are in ``without``),
    its episode memory and a fixed random seed. Asking it leaves the agent as it was."""
    from cairn.guardrails.store import GuardrailSet
    from cairn.runtime.symbolic import SymbolicPlanner
    from cairn.skills.library import SkillLibrary

    def make(agent, without=(), seed=0):
        inner = agent.planner.planner if hasattr(agent.planner, "script") else agent.planner
        skills, guards = SkillLibrary(), GuardrailSet()
        skills.skills = copy.deepcopy(inner.skills.skills)
        guards.guardrails = {key: copy.deepcopy(g) for key, g in inner.guardrails.guardrails.items()
                             if key not in without}
        planner = SymbolicPlanner(skills, guards, np.random.default_rng(seed),
                                  inner.world_facts, experiments=inner.experiments)
        planner.explore_share = inner.explore_share
        planner.doubt_share, planner.probation = inner.doubt_share, inner.probation
        planner.rewarded_this_episode = set(inner.rewarded_this_episode)
        planner.tried = dict(inner.tried)
        planner.failed_here = dict(inner.failed_here)
        planner.seen_facts = set(inner.seen_facts)
        planner.harmed, planner.idle_attempts = inner.harmed, inner.idle_attempts
        return planner
    return make


@dataclass
class RecordedRun:
    """A real run of the agent as a user makes it: ``cairn run`` from an empty store."""

    store: Path
    run_dir: Path
    episodes: list[Path]


@pytest.fixture(scope="session")
def recorded_run(tmp_path_factory) -> RecordedRun:
    """Three learning episodes of Crafter (seed 0, at most 400 steps each) played by the CLI
    into a fresh store and recorded. By the end the store holds skills and guardrails, with
    active guardrails among them. Shared by the session: read it, never write to it (copy
    the store with ``copy_store`` first)."""
    from cairn.experience.episodes import list_episodes
    from cairn.runtime.cli import main

    tmp = tmp_path_factory.mktemp("recorded-run")
    code = main(["run", str(ROOT / "configs" / "crafter.yaml"), "--episodes", "3", "--seed", "0",
                 "--max-steps", "400", "--store", str(tmp / "exp.sqlite"),
                 "--out", str(tmp / "runs"), "--quiet"])
    assert code == 0
    (run_dir,) = (tmp / "runs").iterdir()
    return RecordedRun(tmp / "exp.sqlite", run_dir, list_episodes(run_dir))


CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic")


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """Debian's headless Chromium driven through its own chromedriver (selenium never
    downloads a browser here). ``.ci/test`` installs both."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
