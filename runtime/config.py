"""The one place that loads and validates run configuration.

A config is YAML filled into typed dataclasses; unknown keys, wrong types and missing
files raise ``ConfigError`` with a one-line message that names the key or the path.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cairn.envs.game import GAMES, Game, GameError, game_family, make_game
from cairn.perception.clip import ClipConfig


class ConfigError(ValueError):
    """A config file or value that Cairn cannot use; the message says which and why."""


@dataclass
class EnvConfig:
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the game's env (e.g. ``size``, ``length``; a desktop game's
    ``command``)."""


@dataclass
class ActionsConfig:
    """Which of the env's actions play the generic roles; every other action is tried by name.
    A map game must name ``noop``, ``interact`` and ``moves``: there are no defaults."""

    noop: str | None = None
    """The action that does nothing."""
    interact: str | None = None
    """The action that acts on the faced tile."""
    sleep: str | None = None
    """The action that rests, if the game has one."""
    sleep_tag: str | None = None
    """The percept tag perception shows while the agent rests (a rest ends when it is gone)."""
    moves: dict[str, list[int]] = field(default_factory=dict)
    """Movement action name -> [drow, dcol] on the screen grid (first-person games: relative
    to where the agent looks, ``[1, 0]`` is forward)."""
    turns: dict[str, list[int]] = field(default_factory=dict)
    """First-person games: view-turning action name -> [drow, dcol] the view moves
    (``[0, -1]`` turns left, ``[-1, 0]`` looks up)."""


@dataclass
class AgentConfig:
    max_attempt_steps: int = 60
    """Steps after which an attempt ends with a timeout."""
    interact_tries: int = 6
    """How often the interact action is pressed on a reached target before giving up."""
    explore_steps: int = 10
    """Steps one exploration attempt walks."""
    sleep_steps: int = 120
    """Longest a sleep attempt lasts."""
    health_counter: str | None = "health"
    """The on-screen counter that is the agent's health (for damage and death diagnosis)."""
    stagnation_window: int = 12
    """Steps without movement or frame change that count as stagnation."""
    reward_threshold: float = 0.5
    """Reward at or above this within one attempt counts as reaching the task's goal."""


GOAL_KINDS = ("uniform", "image")


@dataclass
class GoalConfig:
    """A goal the agent can see: what the board looks like once it is reached."""

    kind: str = "uniform"
    """``uniform`` (every cell looks the same) or ``image`` (the board looks like ``image``)."""
    colour: list[int] | None = None
    """For ``uniform``: the RGB colour the cells should be nearest to (None: any one look)."""
    image: str | None = None
    """For ``image``: a screenshot of the game window showing the board as wanted."""

    def __post_init__(self) -> None:
        if self.kind not in GOAL_KINDS:
            raise ConfigError(f"'board.goal.kind' must be one of {', '.join(GOAL_KINDS)}, "
                              f"got {self.kind!r}")
        if self.kind == "image" and not self.image:
            raise ConfigError("'board.goal.image' is needed when 'board.goal.kind' is image")
        if self.colour is not None and len(self.colour) != 3:
            raise ConfigError(f"'board.goal.colour' must be [r, g, b], got {self.colour!r}")


@dataclass
class BoardConfig:
    """A board game played with the mouse on a desktop window (``game: board``)."""

    ids: list[str] = field(default_factory=list)
    """Board ids, episode i plays ``ids[i % len(ids)]``; empty: ``<params>#<seed>``."""
    params: str = "3x3"
    """Board parameters for seeded boards (``{board}`` in the command is ``params#seed``)."""
    rows: int | None = None
    """Known number of cell rows (None: found on the screen)."""
    cols: int | None = None
    """Known number of cell columns (None: found on the screen)."""
    outside_margin: float = 0.15
    """Points off the board are this share of a cell beyond its edge."""
    explore_outside: bool = True
    """Explore points just off the board (False: a game that snaps such clicks onto cells)."""
    actions: list[str] = field(default_factory=lambda: ["click"])
    """Mouse actions the agent may try on a cell (``click``, ``right_click``,
    ``middle_click``); the first one also explores points off the board."""
    min_evidence: int = 2
    """Attempts that must agree before a skill or guardrail is enforced."""
    max_clicks: int = 60
    """Clicks after which an episode gives up."""
    xvfb: bool = False
    """Run the game on a private Xvfb display (headless machines)."""
    goal: GoalConfig = field(default_factory=GoalConfig)
    """What the solved board looks like."""

    def __post_init__(self) -> None:
        kinds = ("click", "right_click", "middle_click")
        bad = [a for a in self.actions if a not in kinds]
        if not self.actions or bad:
            raise ConfigError(f"'board.actions' must be a non-empty list of {', '.join(kinds)}, "
                              f"got {self.actions!r}")


PLANNER_KINDS = ("symbolic", "llm")


@dataclass
class PlannerConfig:
    """Who chooses the next subgoal: the kit's own planner (``symbolic``), or a chat model
    behind an OpenAI-compatible endpoint (``llm``) that falls back to it (docs/llm.md).
    There is no key for the API key: it is read from the environment only."""

    kind: str = "symbolic"
    """``symbolic`` (the kit's default planner) or ``llm``."""
    base_url: str | None = None
    """The endpoint's base URL, up to ``/v1`` (``/chat/completions`` is appended)."""
    model: str | None = None
    """The model name the endpoint knows."""
    api_key_env: str = "OPENAI_API_KEY"
    """The environment variable that holds the API key (unset: no key is sent)."""
    timeout_s: float = 30.0
    """Longest wait for one reply; a slower one falls back to the kit's planner."""
    max_calls: int | None = 1000
    """Calls per run (per worker with workers); then the kit's planner decides alone."""
    max_tokens: int | None = None
    """Prompt plus completion tokens per run, as the endpoint counts them."""
    max_cost: float | None = None
    """Cost per run, in the unit of the endpoint's ``usage.cost`` or of the prices below."""
    price_prompt_1k: float | None = None
    """Price of 1000 prompt tokens, for endpoints that do not report a cost."""
    price_completion_1k: float | None = None
    """Price of 1000 completion tokens, for endpoints that do not report a cost."""
    prompt_tokens: int = 1500
    """Budget the prompt is packed into (estimated at 4 characters a token)."""
    reply_tokens: int = 200
    """Longest reply asked for (the request's ``max_tokens``)."""
    temperature: float = 0.0
    vision: bool = False
    """Send the current frame with the prompt (for models that take images)."""
    pause_key: str | None = None
    """A key that pauses and resumes a real-time desktop game while the model thinks."""
    task: str | None = None
    """One sentence saying what to achieve (None: a generic one)."""
    experiments: bool | None = None
    """Whether the kit's planner makes attempts only to learn from them: exploring while a
    goal could be pursued, doubting a precondition, letting a harm guardrail's subgoal
    through to test it. None: when the attempts are learned from (``learning: learn``, its
    workers included); a frozen run plays what it knows."""


@dataclass
class RunConfig:
    game: str | None = None
    """The game adapter that plays (its env, perception and controller family); see
    ``cairn.envs.game.GAMES``."""
    name: str = "run"
    """Run name; names the output folder under ``out``."""
    env: EnvConfig = field(default_factory=EnvConfig)
    actions: ActionsConfig = field(default_factory=ActionsConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    episodes: int = 1
    """Episodes to run."""
    seed: int = 0
    """World seed of the first episode; episode i uses seed + i. ``cairn run`` on a store that
    has played this run name's episodes starts after the last seed it played instead, unless
    the seed is given on the command line."""
    store: str = "runs/experience.sqlite"
    """Experience store file, shared across runs so knowledge carries over."""
    out: str = "runs"
    """Directory for recordings and reports."""
    learning: str = "learn"
    """``learn`` (distil skills and guardrails as it goes), ``frozen`` (use the stored
    knowledge, add none) or ``off`` (no knowledge: the learning-disabled baseline)."""
    max_steps: int | None = None
    """Stop each episode after this many env steps (None: the env's own limit)."""
    board: BoardConfig = field(default_factory=BoardConfig)
    """Board games on the desktop (used when the game's family is ``board``)."""
    workers: int = 1
    """Episodes played at once, each by its own Ray worker process; 1 plays in this process
    with no Ray (see docs/workers.md)."""
    ray_address: str | None = None
    """An existing Ray cluster to run the workers on (``auto``, or ``HOST:PORT`` of its head
    node); None starts a local one for the run."""
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    """Who chooses subgoals (see docs/llm.md)."""
    clip: ClipConfig | None = None
    """A CLIP encoder: every attempt's first frame indexed by situation, zero-shot tags, a
    goal in words (see docs/clip.md); None (the default) needs no torch."""

    @property
    def family(self) -> str:
        return game_family(self.game)

    @property
    def experiments(self) -> bool:
        """``planner.experiments``, with None resolved by the learning mode."""
        if self.planner.experiments is not None:
            return self.planner.experiments
        return self.learning == "learn"

    def game_adapter(self) -> Game:
        """The game adapter this config names; the board section is what it may read
        beyond its env's kwargs."""
        return make_game(self.game, self.env.kwargs,
                         {**dataclasses.asdict(self.board), "seed": self.seed})


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML run config, apply ``overrides`` (dotted keys allowed), and validate."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a directory: give a YAML config file, e.g. one in configs/")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML{_where(err)} ({_first_line(err)})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot be read ({err.__class__.__name__}: "
                          f"{getattr(err, 'strerror', None) or err})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
    try:
        config = build(RunConfig, raw, "")
        check(config)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    if config.clip is not None and config.clip.checkpoint:  # relative to the config file
        config.clip.checkpoint = str(path.parent / Path(config.clip.checkpoint).expanduser())
    return config


def settings(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings (``--set`` options) as dotted-key overrides, each value read
    as YAML."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set takes KEY=VALUE (e.g. env.kwargs.task=dirt), got {pair!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: the value {value!r} is not valid YAML") from None
    return out


TURNS_MEANING = "view-turning action name -> [drow, dcol]"
ROLE_KEYS = {
    "noop": "the action that does nothing",
    "interact": "the action that acts on the faced tile",
    "moves": "movement action name -> [drow, dcol]",
}


MINIMUMS = {
    "episodes": 1, "max_steps": 1, "workers": 1,
    "agent.max_attempt_steps": 1, "agent.interact_tries": 1, "agent.explore_steps": 1,
    "agent.sleep_steps": 1, "agent.stagnation_window": 2,
    "board.min_evidence": 1, "board.max_clicks": 1, "board.outside_margin": 0,
    "board.rows": 1, "board.cols": 1,
    "planner.timeout_s": 0.01, "planner.max_calls": 0, "planner.max_tokens": 0,
    "planner.max_cost": 0, "planner.price_prompt_1k": 0, "planner.price_completion_1k": 0,
    "planner.prompt_tokens": 100, "planner.reply_tokens": 16, "planner.temperature": 0,
}
"""The smallest value each numeric key may take (None, where allowed, is not checked)."""
LEARNING_MODES = ("learn", "frozen", "off")


def check(config: RunConfig) -> None:
    """What field types cannot say: values in range, the game exists, and a map game names
    the roles of its actions."""
    for key, least in MINIMUMS.items():
        value = config
        for part in key.split("."):
            value = getattr(value, part)
        if value is not None and value < least:
            raise ConfigError(f"'{key}' must be at least {least}, got {value}")
    if config.learning not in LEARNING_MODES:
        raise ConfigError(f"'learning' must be one of {', '.join(LEARNING_MODES)}, "
                          f"got {config.learning!r}")
    if config.clip is not None and (config.workers > 1 or config.ray_address):
        raise ConfigError("'clip' does not go with workers yet (only the run's owner holds the "
                          "situation index): play with one worker, or drop the clip section")
    if config.game is None:
        raise ConfigError(f"missing key 'game' (one of: {', '.join(sorted(GAMES))})")
    try:
        family = game_family(config.game)
    except GameError as err:
        raise ConfigError(f"'game': {err}") from None
    if family in ("map", "first_person"):
        roles = ROLE_KEYS if family == "map" else {**ROLE_KEYS, "turns": TURNS_MEANING}
        for key, meaning in roles.items():
            if not getattr(config.actions, key):
                raise ConfigError(f"missing key 'actions.{key}' ({meaning}): a "
                                  f"{family.replace('_', '-')} game must say which of its "
                                  "actions play the generic roles")
    if family == "first_person":
        turns = {tuple(d) for d in config.actions.turns.values()}
        if turns != {(0, -1), (0, 1), (-1, 0), (1, 0)} or \
                (1, 0) not in {tuple(d) for d in config.actions.moves.values()}:
            raise ConfigError("'actions.turns' must name the four ways the view turns ([0, -1] "
                              "left, [0, 1] right, [-1, 0] up, [1, 0] down) and "
                              "'actions.moves' the forward move ([1, 0])")
    if family == "map" and config.actions.sleep and not config.actions.sleep_tag:
        raise ConfigError("missing key 'actions.sleep_tag': the percept tag that shows "
                          "the agent is resting, needed with 'actions.sleep'")
    check_planner(config.planner, family)
    if family == "board" and config.workers > 1 and not config.board.xvfb:
        raise ConfigError("'workers' above 1 needs 'board.xvfb: true': each worker plays on "
                          "its own private display, never on one they would share")


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_planner(planner: PlannerConfig, family: str) -> None:
    """The planner section; an error never repeats ``api_key_env``'s value, which may be a
    key pasted in by mistake."""
    if planner.kind not in PLANNER_KINDS:
        raise ConfigError(f"'planner.kind' must be one of {', '.join(PLANNER_KINDS)}, "
                          f"got {planner.kind!r}")
    if not ENV_NAME.fullmatch(planner.api_key_env):
        raise ConfigError("'planner.api_key_env' must be the name of an environment variable "
                          "(letters, digits, _): the key itself goes in the environment, "
                          "never in a config")
    if planner.temperature > 2:
        raise ConfigError(f"'planner.temperature' must be at most 2, got {planner.temperature}")
    if planner.kind != "llm":
        return
    if family != "map":
        raise ConfigError("'planner.kind: llm' plays map games only (a board's subgoals are "
                          "cells, which it does not offer yet); use 'symbolic'")
    for key in ("base_url", "model"):
        if not getattr(planner, key):
            raise ConfigError(f"missing key 'planner.{key}': needed with 'planner.kind: llm'")
    if not planner.base_url.startswith(("http://", "https://")):
        raise ConfigError(f"'planner.base_url' must start with http:// or https://, "
                          f"got {planner.base_url!r}")


def build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    """Fill dataclass ``cls`` from ``raw``, checking every key and type."""
    if not isinstance(raw, dict):
        raise ConfigError(f"'{prefix.rstrip('.') or 'config'}' must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"unknown key '{prefix}{key}' (known: {known})")
    values = {}
    for name, value in raw.items():
        hint = _section(hints[name], value)
        if dataclasses.is_dataclass(hint):
            values[name] = build(hint, value, f"{prefix}{name}.")
        else:
            values[name] = _check_type(value, hint, f"{prefix}{name}")
    try:
        return cls(**values)
    except ValueError as err:  # a section's own checks (__post_init__)
        raise ConfigError(str(err)) from None


def _section(hint: Any, value: Any) -> Any:
    """An optional section (``ClipConfig | None``) given as a mapping is that section."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and isinstance(value, dict):
        sections = [arg for arg in typing.get_args(hint) if dataclasses.is_dataclass(arg)]
        if len(sections) == 1:
            return sections[0]
    return hint


def _check_type(value: Any, hint: Any, key: str) -> Any:
    if _matches(value, hint):
        return value
    raise ConfigError(f"'{key}' must be {_describe(hint)}, got {type(value).__name__} {value!r}")


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is dict:
        key_t, val_t = typing.get_args(hint)
        return isinstance(value, dict) and all(
            _matches(k, key_t) and _matches(v, val_t) for k, v in value.items())
    if origin is list:
        (item_t,) = typing.get_args(hint)
        return isinstance(value, list) and all(_matches(v, item_t) for v in value)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return "null"
    origin = typing.get_origin(hint)
    if origin is dict:
        return "a mapping"
    if origin is list:
        return "a list"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return names.get(hint, f"a {getattr(hint, '__name__', hint)}")


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def _where(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0]
