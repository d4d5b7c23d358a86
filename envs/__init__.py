"""Gymnasium environments Cairn plays: Crafter (the embedded default), desktop games, MineDojo."""

import gymnasium as gym

CRAFTER_ID = "Cairn/Crafter-v0"

if CRAFTER_ID not in gym.registry:
    gym.register(id=CRAFTER_ID, entry_point="cairn.envs.crafter:CrafterEnv")

DESKTOP_ID = "Cairn/Desktop-v0"
if DESKTOP_ID not in gym.registry:
    gym.register(id=DESKTOP_ID, entry_point="cairn.envs.desktop:DesktopEnv")
