"""Controller families ("kits"): what the one loop needs to act in a kind of game.

A game adapter names its family; the kit supplies the belief the agent keeps (a map of
remembered tiles, or a board of cell looks), the generic controllers that turn a subgoal
into primitive actions (walk to a remembered thing and act on it; click a cell), how an
attempt is diagnosed, the default planner, and the distillation rules that fit the
attempts it produces. None of them knows a game.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Protocol

import gymnasium as gym
import numpy as np

from cairn.envs.game import Game
from cairn.experience.records import Diagnosis, State, Subgoal
from cairn.runtime.controllers import Outcome
from cairn.runtime.diagnosis import Trace
from cairn.runtime.planner import PlanContext, Planner

if TYPE_CHECKING:
    from cairn.runtime.config import RunConfig
    from cairn.runtime.executor import EpisodeState
    from cairn.runtime.learning import Learner, Rules


class Kit(Protocol):
    rules: Rules
    max_attempts: int | None
    """Attempts after which an episode gives up (None: only the env ends it)."""

    def planner(self) -> Planner:
        """The default planner for this family."""

    def begin(self, frame: np.ndarray, ep: EpisodeState) -> None:
        """A new episode starts with ``frame``."""

    def context(self, ep: EpisodeState) -> PlanContext: ...

    def may_lack_requirement(self, subgoal: Subgoal, ctx: PlanContext) -> bool:
        """Could failing at ``subgoal`` now be for a missing requirement (it worked under
        another condition, and not everything its skill needs holds)?"""

    def start_attempt(self, subgoal: Subgoal, ep: EpisodeState) -> State:
        """The pre-state of an attempt at ``subgoal``."""

    def budget(self, subgoal: Subgoal) -> int:
        """Steps after which the attempt times out."""

    def controller(self, subgoal: Subgoal) -> Generator[Any, None, Outcome]: ...

    def guard(self, action: Any, ep: EpisodeState) -> str | None:
        """The id of a guardrail that forbids ``action`` now, if any."""

    def encode(self, action: Any) -> tuple[Any, int]:
        """The env's action for a controller's action, and its index in the recording."""

    def settled(self, frame: np.ndarray, truncated: bool) -> np.ndarray:
        """The frame to perceive after a step (a desktop game may still be animating)."""

    def observe(self, frame: np.ndarray, action: Any, ep: EpisodeState, trace: Trace,
                info: dict[str, Any]) -> None:
        """Perceive the frame after ``action`` and update the belief."""

    def finish_attempt(self, subgoal: Subgoal, pre: State, ep: EpisodeState, trace: Trace,
                       outcome: Outcome, may_lack_requirement: bool) -> tuple[State, Diagnosis]: ...

    def memory(self) -> dict[str, Any]:
        """What the belief learned across episodes (walkability, counter ranges...), as
        JSON: the store keeps it so that a run going on from the store starts with it."""

    def recall(self, memory: dict[str, Any]) -> None:
        """Take back what ``memory`` returned."""

    def learning_facts(self) -> dict[str, Any]:
        """What the family's distillation rules read of the belief besides the attempt
        itself, as it stands now; picklable, since a worker sends it to the run's owner."""


def make_kit(game: Game, env: gym.Env, config: RunConfig, learner: Learner,
             rng: np.random.Generator) -> Kit:
    if game.family == "map":
        from cairn.runtime.map_kit import MapKit

        return MapKit(game, env, config, learner, rng)
    if game.family == "board":
        from cairn.runtime.board_kit import BoardKit

        return BoardKit(game, env, config, learner, rng)
    if game.family == "first_person":
        from cairn.runtime.first_person_kit import FirstPersonKit

        return FirstPersonKit(game, env, config, learner, rng)
    raise ValueError(f"game '{game.name}' has unknown family '{game.family}'")


def make_rules(game: Game, config: RunConfig, learner: Learner) -> Rules:
    """The family's distillation rules without an env: what the knowledge owner of a run
    with workers distils with (each worker's kit makes its own the same way)."""
    if game.family in ("map", "first_person"):
        from cairn.runtime.learning import SubgoalRules

        return SubgoalRules()
    if game.family == "board":
        from cairn.runtime.board_kit import board_rules

        return board_rules(config, learner)
    raise ValueError(f"game '{game.name}' has unknown family '{game.family}'")
