"""Gymnasium environments Cairn plays: Crafter (the embedded default), desktop games, MineDojo."""

import gymnasium as gym

CRAFTER_ID = "Cairn/Crafter-v0"

if CRAFTER_ID not in gym.registry:
    gym.register(id=CRAFTER_ID, entry_point="envs.crafter:CrafterEnv")
