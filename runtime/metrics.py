"""Scores computed from privileged env info: for measuring a run, never for acting."""

from __future__ import annotations

import math
from collections.abc import Sequence


def success_rates(unlocked: Sequence[set[str]], achievements: Sequence[str]) -> dict[str, float]:
    """Percent of episodes in which each achievement was unlocked at least once."""
    n = max(len(unlocked), 1)
    return {name: 100.0 * sum(name in ep for ep in unlocked) / n for name in achievements}


def crafter_score(rates: dict[str, float]) -> float:
    """The Crafter benchmark's score: exp(mean(ln(1 + rate%))) - 1 over all achievements."""
    if not rates:
        return 0.0
    return math.exp(sum(math.log(1 + r) for r in rates.values()) / len(rates)) - 1
