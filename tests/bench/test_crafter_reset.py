"""Crafter's world noise runs compiled (numba), and compiled it makes the same worlds."""

from __future__ import annotations

from bench.crafter_reset import measure


def test_the_noise_behind_crafter_worlds_is_compiled():
    from numba.core.registry import CPUDispatcher
    from opensimplex import api

    assert isinstance(api._noise3, CPUDispatcher)


def test_compiled_noise_makes_the_very_worlds_plain_python_makes():
    seeds = [3, 100000]
    plain, compiled = measure(seeds, jit=False), measure(seeds, jit=True)
    assert len(set(plain["digests"])) == 2  # two different worlds, not one digest twice
    assert compiled["digests"] == plain["digests"]
