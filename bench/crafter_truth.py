"""How true are Cairn's diagnoses on Crafter? Every attempt's labels are judged against
Crafter's privileged state (to measure only: the agent never sees it).

    python -m bench.crafter_truth --budget 3000 --seed 0 [--json out.json]

A success's claims: ``wood+1``, the true inventory changed by exactly that; ``changed:dr,dc:a>b``,
the true cell (the player's true end position plus the claim's offset from where the agent
believes it ended) held ``a`` at the start and ``b`` at the end; ``reward``, the env's reward
reached the threshold; and the subgoal's own: ``interact``/``use`` did something, ``approach``
faces its target kind, ``explore`` brought never-seen cells into the true view, ``sleep``
slept and woke. A claim that happened is ``uncaused`` unless it happened on an *acting* step
(an achievement shown by its item or the faced cell, or asleep; a natural tick on such a step
passes unseen), or, for ``reward``, an achievement was unlocked. A success is right when all
its checkable claims are.

A failure's cause is right when the subgoal really failed (its own claim is false; ``died``
skips this) and what the truth can say of the cause agrees: the target kind was not in the
true view (``target_not_visible``), the player faced the target kind (``no_effect``,
``missing_requirement`` of ``interact``), Crafter's rules say a requirement was missing or
the item full (``missing_requirement``), health fell or reached 0 (``damage_taken``,
``died``), the true position stood still or looped (``stagnation``, ``loop``). The truth says
nothing more of ``path_blocked``, ``timeout``, ``deadlock`` or ``guardrail_blocked``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from crafter import constants

from cairn.experience.records import ExperienceTuple, parse_change, split_counter_effect
from cairn.experience.store import ExperienceStore
from cairn.perception.crafter import SEMANTIC_NAMES
from cairn.runtime.config import ConfigError, RunConfig, load_config
from cairn.runtime.executor import EpisodeState
from cairn.runtime.loop import Agent

ROOT = Path(__file__).resolve().parent.parent
VERDICTS = ("right", "uncaused", "wrong", "unchecked")
SHOWN_BY = {"eat_cow": "food", "eat_plant": "food"}
"""The item an achievement raises, where it is not the name's second part (collect_wood)."""
REMOVED_BY = {"zombie": "defeat_zombie", "skeleton": "defeat_skeleton", "cow": "eat_cow"}
"""Creatures a blow removes, and the achievement Crafter counts each time it does."""


@dataclass
class Step:
    """Crafter's privileged info after one step (the reset's for step 0)."""

    info: dict[str, Any]
    reward: float
    seen: int
    """Cells ever in the true view this episode, this step's included."""


class TruthEnv(gym.Wrapper):
    """Keeps the privileged info of every step since the last judged attempt, the last true
    positions, and which cells have been in view."""

    def __init__(self, env: gym.Env, window: int = 12):
        super().__init__(env)
        self.log: list[Step] = []
        self.first = 0
        self.positions: deque[tuple[int, int]] = deque(maxlen=3 * window)
        """The last true positions, as many as the agent's motion monitor keeps."""
        self._seen = np.zeros((0, 0), bool)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        frame, info = self.env.reset(**kwargs)
        self._seen = np.zeros(info["privileged"]["semantic"].shape, bool)
        self.log, self.first = [], 0
        self.positions.clear()
        self._record(info["privileged"], 0.0)
        return frame, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        result = self.env.step(action)
        self.positions.append(_pos(result[4]["privileged"]))
        self._record(result[4]["privileged"], result[1])
        return result

    def _record(self, info: dict[str, Any], reward: float) -> None:
        self._seen[_view(info)] = True
        self.log.append(Step(info, reward, int(self._seen.sum())))

    def span(self, start: int, end: int) -> list[Step]:
        """Steps ``start`` to ``end`` of the episode, both included."""
        return self.log[start - self.first: end - self.first + 1]

    def trim(self, step: int) -> None:
        """Forget the steps before ``step``."""
        if step > self.first:
            del self.log[:step - self.first]
            self.first = step


@dataclass
class Verdict:
    name: str
    """A claim's kind (``counter``, ``changed``, ``reward``, the controller) or a cause."""
    claimed: str
    verdict: str
    truth: str = ""


@dataclass
class Tally:
    right: int = 0
    uncaused: int = 0
    wrong: int = 0
    unchecked: int = 0

    @property
    def checked(self) -> int:
        return self.right + self.uncaused + self.wrong

    @property
    def share(self) -> float | None:
        return self.right / self.checked if self.checked else None

    def add(self, verdict: str) -> None:
        setattr(self, verdict, getattr(self, verdict) + 1)


@dataclass
class TruthSummary:
    """Success labels judged per attempt (wrong if any claim is), claims per kind, failure
    causes per cause; ``wrong`` counts the wrong or uncaused ``subgoal | claim | truth``."""

    attempts: int = 0
    successes: Tally = field(default_factory=Tally)
    claims: dict[str, Tally] = field(default_factory=dict)
    causes: dict[str, Tally] = field(default_factory=dict)
    wrong: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    """The first attempt (``episode@step``) of each key in ``wrong``."""

    @property
    def cause_accuracy(self) -> float | None:
        right, checked = (sum(getattr(t, a) for t in self.causes.values())
                          for a in ("right", "checked"))
        return right / checked if checked else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(wrong=dict(self.wrong.most_common()), success_precision=self.successes.share,
                 cause_accuracy=self.cause_accuracy)
        return d

    def table(self, top: int = 12) -> str:
        head = f"{'':<24}{'checked':>8}" + "".join(f"{v:>10}" for v in VERDICTS) + "     share"
        lines = [f"{self.attempts} attempts judged", head]
        rows = [("success labels", self.successes), *((f"  claim {k}", t) for k, t in
                sorted(self.claims.items())), ("failure causes", None),
                *((f"  {k}", t) for k, t in sorted(self.causes.items()))]
        for name, t in rows:
            if t is None:
                lines.append(f"{name}  (all: {_pct(self.cause_accuracy)} right)")
                continue
            lines.append(f"{name:<24}{t.checked:>8}" + "".join(f"{getattr(t, v):>10}"
                         for v in VERDICTS) + f"{_pct(t.share):>10}")
        lines.append("most common wrong (subgoal | claimed | truth), one example each:")
        for key, n in self.wrong.most_common(top):
            lines.append(f"  {n:>5}  {key}   e.g. {self.examples[key]}")
        return "\n".join(lines)


class TruthAudit:
    """Judges each attempt as it is made: ``env = audit.wrap(env)`` before the agent plays
    on it, then ``agent.run_episode(seed, i, on_attempt=audit.on_attempt)``."""

    def __init__(self, config: RunConfig):
        self.window = config.agent.stagnation_window
        self.reward_threshold = config.agent.reward_threshold
        self.env: TruthEnv | None = None
        self.summary = TruthSummary()

    def wrap(self, env: gym.Env) -> TruthEnv:
        self.env = TruthEnv(env, self.window)
        return self.env

    def on_attempt(self, attempt: ExperienceTuple, ep: EpisodeState | None = None) -> None:
        verdicts = self.judge(attempt)
        s = self.summary
        s.attempts += 1
        if attempt.diagnosis.success:
            marks = {v.verdict for v in verdicts}
            s.successes.add(next((m for m in ("wrong", "uncaused", "right") if m in marks),
                                 "unchecked"))
        group = s.claims if attempt.diagnosis.success else s.causes
        for v in verdicts:
            group.setdefault(v.name, Tally()).add(v.verdict)
            if v.verdict in ("wrong", "uncaused"):
                key = f"{attempt.subgoal.key} | {v.claimed} | {v.verdict}: {v.truth}"
                s.wrong[key] += 1
                s.examples.setdefault(key, f"{attempt.episode}@{attempt.step_start}")
        self.env.trim(attempt.step_end)

    def judge(self, attempt: ExperienceTuple) -> list[Verdict]:
        """The verdicts on one attempt just made on the wrapped env."""
        steps = self.env.span(attempt.step_start, attempt.step_end)
        worked, truth = _worked(attempt, steps)
        controller = attempt.subgoal.controller
        if not attempt.diagnosis.success:
            return [self._cause(attempt, steps, worked, truth)]
        mark = "unchecked" if worked is None else "right" if worked else "wrong"
        return [Verdict(controller, "worked", mark, truth),
                *(self._claim(effect, attempt, steps) for effect in attempt.diagnosis.effects)]

    def _claim(self, effect: str, attempt: ExperienceTuple, steps: list[Step]) -> Verdict:
        name, sign, amount = split_counter_effect(effect)
        if name is not None:
            return _counter(effect, name, amount if sign == "+" else -amount, steps)
        change = parse_change(effect)
        if change is not None:
            return _changed(effect, change, attempt, steps)
        if effect == "reward":
            got = sum(s.reward for s in steps[1:])
            new = [k for k, n in steps[-1].info["achievements"].items()
                   if n and not steps[0].info["achievements"][k]]
            verdict = "wrong" if got < self.reward_threshold else "right" if new else "uncaused"
            return Verdict("reward", effect, verdict, f"{got:+.1f}, unlocked {new}")
        return Verdict("other", effect, "unchecked")

    def _cause(self, attempt: ExperienceTuple, steps: list[Step], worked: bool | None,
               truth: str) -> Verdict:
        cause = str(attempt.diagnosis.cause)
        if worked and cause != "died":  # death outranks success
            return Verdict(cause, cause, "wrong", f"it worked: {truth}")
        ok, why = self._cause_check(cause, attempt, steps)
        if ok is None:
            return Verdict(cause, cause, "unchecked" if worked is None else "right", truth)
        return Verdict(cause, cause, "right" if ok else "wrong", why)

    def _cause_check(self, cause: str, attempt: ExperienceTuple,
                     steps: list[Step]) -> tuple[bool | None, str]:
        """Whether the truth agrees with what ``cause`` says beyond the failure (None: it
        says nothing more that the truth can check), and what the truth is."""
        first, last = steps[0].info, steps[-1].info
        kind, controller = attempt.subgoal.target, attempt.subgoal.controller
        health = last["inventory"]["health"] - first["inventory"]["health"]
        if cause == "target_not_visible" and controller in ("interact", "approach"):
            seen = {SEMANTIC_NAMES[int(i)] for i in np.unique(first["semantic"][_view(first)])}
            return kind not in seen, f"{kind} in view at the start"
        if cause in ("no_effect", "missing_requirement") and controller == "interact":
            faced = _kind(last, _faced(last))
            if faced != kind:
                return False, f"faced {faced}"
        if cause == "missing_requirement":
            unmet = _unmet(attempt, steps[-2].info if len(steps) > 1 else first)
            return unmet, "every requirement met" if unmet is False else "requirement unmet"
        if cause == "damage_taken":
            return health < 0, f"health{health:+d}"
        if cause == "died":
            return last["inventory"]["health"] <= 0, f"health {last['inventory']['health']}"
        positions = list(self.env.positions)
        if cause == "stagnation":
            return len(set(positions[-self.window:])) == 1, f"moved: {positions[-3:]}"
        if cause == "loop":
            moves = sum(a != b for a, b in zip(positions, positions[1:], strict=False))
            loop = moves >= self.window and len(set(positions)) <= 4
            return loop, f"{moves} moves over {len(set(positions))} cells"
        return None, ""


def _worked(attempt: ExperienceTuple, steps: list[Step]) -> tuple[bool | None, str]:
    """Did the subgoal really do what its controller is for, and what the truth shows."""
    controller, kind = attempt.subgoal.controller, attempt.subgoal.target
    last = steps[-1].info
    if controller in ("interact", "use"):
        done = sorted({k for a, b in _pairs(steps) for k in _did(a, b)})
        return bool(done), f"did {', '.join(done)}" if done else "nothing happened"
    if controller == "approach":
        faced = _kind(last, _faced(last))
        return faced == kind, f"faces {faced}"
    if controller == "explore":
        new = steps[-1].seen - steps[0].seen
        return new > 0, f"{new} new cells in view"
    if controller == "sleep":
        slept = any(s.info["sleeping"] for s in steps[1:])
        return slept and not last["sleeping"], f"slept {slept}, asleep {last['sleeping']}"
    return None, "no truth for this controller"


def _counter(effect: str, name: str, delta: int, steps: list[Step]) -> Verdict:
    if name not in steps[0].info["inventory"]:
        return Verdict("counter", effect, "unchecked", "no such item")
    true = steps[-1].info["inventory"][name] - steps[0].info["inventory"][name]
    if true != delta:
        return Verdict("counter", effect, "wrong", f"{name}{true:+d}")
    caused = any(_acting(a, b) and np.sign(b.info["inventory"][name] - a.info["inventory"][name])
                 == np.sign(delta) for a, b in _pairs(steps))
    return Verdict("counter", effect, "right" if caused else "uncaused",
                   "" if caused else "changed on no acting step")


def _changed(effect: str, change: tuple, attempt: ExperienceTuple, steps: list[Step]) -> Verdict:
    dr, dc, before, after = change
    target, post = attempt.diagnosis.target, attempt.post.position
    if target is None:
        return Verdict("changed", effect, "unchecked", "no target")
    if before in REMOVED_BY and (dr, dc) == (0, 0):
        return _removed(effect, REMOVED_BY[before], steps)
    x, y = _pos(steps[-1].info)
    cell = (x + target[1] - post[1] + dc, y + target[0] - post[0] + dr)
    first, last = _kind(steps[0].info, cell), _kind(steps[-1].info, cell)
    happened = (first, last) == (before, after) if before or after else first != last
    if not happened:
        return Verdict("changed", effect, "wrong", f"{first}>{last}")
    caused = any(_acting(a, b) and _kind(a.info, cell) != _kind(b.info, cell)
                 for a, b in _pairs(steps))
    return Verdict("changed", effect, "right" if caused else "uncaused", f"{first}>{last}")


def _removed(effect: str, achievement: str, steps: list[Step]) -> Verdict:
    """A creature struck down: it wandered into the target cell during the attempt, so the
    cell's kind at the start says nothing; Crafter counts every one removed."""
    first, last = (step.info["achievements"][achievement] for step in (steps[0], steps[-1]))
    if last == first:
        return Verdict("changed", effect, "wrong", f"no {achievement}")
    return Verdict("changed", effect, "right", achievement)


def _did(a: Step, b: Step) -> list[str]:
    """The achievements the step earned that one can see: unlocked (a reward), or shown by
    their item rising or the cell faced changing (drinking at a full drink shows nothing)."""
    before, after = a.info, b.info
    cell = _faced(before)
    changed = _kind(before, cell) != _kind(after, cell)
    shown = []
    for name, n in after["achievements"].items():
        if n > before["achievements"][name]:
            item = SHOWN_BY.get(name, name.partition("_")[2])
            rose = after["inventory"].get(item, 0) > before["inventory"].get(item, 0)
            if rose or changed or not before["achievements"][name]:
                shown.append(name)
    return shown


def _acting(a: Step, b: Step) -> bool:
    return b.info["sleeping"] or bool(_did(a, b))


def _unmet(attempt: ExperienceTuple, info: dict[str, Any]) -> bool | None:
    """Whether Crafter's own rules say the subgoal lacked a requirement (None: no rule)."""
    inventory, name = info["inventory"], attempt.subgoal.target or ""
    lacking = lambda needs: any(inventory[k] < n for k, n in needs.items())  # noqa: E731
    if attempt.subgoal.controller == "interact" and name in constants.collect:
        rule = constants.collect[name]  # nothing to see when what it gives is full
        full = all(inventory[k] >= constants.items[k]["max"] for k in rule["receive"])
        return lacking(rule["require"]) or full
    verb, _, thing = name.partition("_")
    rule = {"make": constants.make, "place": constants.place}.get(verb, {}).get(thing)
    if attempt.subgoal.controller != "use" or rule is None:
        return None
    if lacking(rule["uses"]):
        return True
    if verb == "make":
        x, y = _pos(info)
        near = {_kind(info, (x + i, y + j)) for i in (-1, 0, 1) for j in (-1, 0, 1)}
        return not set(rule["nearby"]) <= near
    return _kind(info, _faced(info)) not in rule["where"]


def _pairs(steps: list[Step]) -> zip[tuple[Step, Step]]:
    return zip(steps, steps[1:], strict=False)


def _pos(info: dict[str, Any]) -> tuple[int, int]:
    return int(info["player_pos"][0]), int(info["player_pos"][1])


def _faced(info: dict[str, Any]) -> tuple[int, int]:
    (x, y), (fx, fy) = _pos(info), info["facing"]
    return x + fx, y + fy


def _kind(info: dict[str, Any], cell: tuple[int, int]) -> str | None:
    """The semantic map's name at (x, y); None off the map."""
    semantic = info["semantic"]
    if not (0 <= cell[0] < semantic.shape[0] and 0 <= cell[1] < semantic.shape[1]):
        return None
    return SEMANTIC_NAMES[int(semantic[cell])]


def _view(info: dict[str, Any]) -> tuple[slice, slice]:
    """The cells in the player's view, as an index into the semantic map."""
    (x, y), (w, h) = _pos(info), info["view"]
    return slice(max(x - w // 2, 0), x + w // 2 + 1), slice(max(y - h // 2, 0), y + h // 2 + 1)


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f}%"


def audit_training(config: RunConfig, budget: int, first_seed: int,
                   store: Path | None = None) -> TruthSummary:
    """Learn from an empty store for ``budget`` env steps (one world seed per episode, from
    ``first_seed``, as ``runtime.evaluate.train`` does), judging every attempt."""
    config = replace(config, learning="learn", seed=first_seed)
    game, audit = config.game_adapter(), TruthAudit(config)
    with tempfile.TemporaryDirectory(prefix="cairn-truth-") as tmp, \
            ExperienceStore(store or Path(tmp) / "trained.sqlite") as experience, \
            game.open() as env, \
            Agent(config, experience, None, env=audit.wrap(env), game=game) as agent:
        steps, seed = 0, first_seed
        while steps < budget:
            result = agent.run_episode(seed, seed - first_seed, on_attempt=audit.on_attempt)
            steps, seed = steps + result.steps, seed + 1
            print(f"  episode {seed - first_seed}: {result.steps} steps, {result.attempts} "
                  f"attempts ({steps}/{budget})", file=sys.stderr)
    return audit.summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "crafter.yaml"))
    parser.add_argument("--budget", type=int, default=3000, help="training env steps")
    parser.add_argument("--seed", type=int, default=0, help="first world seed (and the agent's)")
    parser.add_argument("--max-steps", type=int, default=None, help="cap on episode length")
    parser.add_argument("--json", help="also write the summary here")
    args = parser.parse_args(argv)
    try:
        if args.budget < 1:
            raise ConfigError(f"--budget must be at least 1, got {args.budget}")
        config = load_config(args.config, {"max_steps": args.max_steps})
        if config.game != "crafter":
            raise ConfigError(f"{args.config} plays {config.game}; this judge knows Crafter")
    except (ConfigError, OSError) as err:
        print(f"cairn: error: {err}", file=sys.stderr)
        return 2
    summary = audit_training(config, args.budget, args.seed)
    print(summary.table())
    if args.json:
        Path(args.json).write_text(json.dumps(summary.to_dict(), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
