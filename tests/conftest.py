"""Shared fixtures: real Crafter worlds and real SQLite stores."""

from pathlib import Path

import numpy as np
import pytest

from envs.crafter import CrafterEnv
from perception.crafter import CrafterParser
from runtime.config import load_config

ROOT = Path(__file__).resolve().parent.parent


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


@pytest.fixture
def rng():
    return np.random.default_rng(0)
