"""Minetest loop latency: capture -> action on the real game, and frame rates side by side.

    python -m bench.minetest_latency --iterations 100

(Run it as a module: ``python bench/minetest_latency.py`` would put ``bench/`` first on the
path.) Starts Minetest 5.6.1 on its own Xvfb with software OpenGL (``MinetestEnv``, 640x360
by default). Each iteration grabs the window (``MinetestEnv.observe``), picks an action (turn
left or right, look up or down, alternately: the view changes and the player stays put) and
steps: ``capture->input`` is the time from the start of the grab to the action's first input
reaching the X server (``env.last_input_at``), what an agent's reaction costs on top of its
own thinking. ``step`` is the whole env step: the action held ``hold_ms``, the wait for a
truth record written after it, the capture. A second run of as many iterations parses each
frame with the default first-person perceiver before acting (``perceive``,
``capture->perceive->input``): the reaction with the agent's eyes included.

Frame rates, in the same run: ``env.observe`` (grab + BGRA->RGB) against raw grabs of the
window by mss and by python-xlib's GetImage, and the distinct frames the game draws per
second while the player walks (every drawn frame differs).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cairn.envs.minetest import MinetestEnv
from cairn.perception.minetest_hud import load_perceiver

ACTIONS = ("turn_left", "look_up", "turn_right", "look_down")


def percentiles(samples: list[float]) -> str:
    ms = np.asarray(samples) * 1e3
    return f"p50 {np.percentile(ms, 50):7.2f} ms  p99 {np.percentile(ms, 99):7.2f} ms"


def rate(grab, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        grab()
        n += 1
    return n / (time.perf_counter() - start)


def capture_rates(env: MinetestEnv, seconds: float) -> dict[str, float]:
    """Frames/s of env.observe, a raw mss grab and a raw Xlib GetImage of the window."""
    from Xlib import X

    game = env._game
    left, top, w, h = game.window.rect()
    region = {"left": left, "top": top, "width": w, "height": h}
    window = game.window.win
    return {
        "env.observe": rate(env.observe, seconds),
        "raw mss grab": rate(lambda: game.mss.grab(region), seconds),
        "raw Xlib GetImage": rate(lambda: window.get_image(0, 0, w, h, X.ZPixmap, 0xFFFFFFFF),
                                  seconds),
    }


def distinct_frames(env: MinetestEnv, seconds: float) -> float:
    """Distinct frames/s the game draws while the player walks forward (key held), sampled
    at about 200 Hz."""
    game, seen, last = env._game, 0, b""
    game.key("w", True)
    game.display.sync()
    try:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            raw = game.capture().tobytes()
            seen += raw != last
            last = raw
            time.sleep(0.004)  # sample at ~200 Hz without taking a core from the game
        return seen / (time.perf_counter() - start)
    finally:
        game.release_all()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--size", default="640x360", help="window size WxH")
    parser.add_argument("--seconds", type=float, default=2.0, help="per frame-rate run")
    parser.add_argument("--seed", type=int, default=2)
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.split("x"))
    env = MinetestEnv(size, max_steps=None)
    try:
        started = time.perf_counter()
        env.reset(seed=args.seed)
        reset_s = time.perf_counter() - started
        parts: dict[str, list[float]] = {"capture": [], "capture->input": [], "step": [],
                                         "perceive": [], "capture->perceive->input": []}
        parse = load_perceiver(size).parse
        for i in range(2 * args.iterations):
            seeing = i >= args.iterations  # the second half parses each frame first
            t0 = time.perf_counter()
            frame = env.observe()
            t1 = time.perf_counter()
            if seeing:
                parse(frame)
                parts["perceive"].append(time.perf_counter() - t1)
            t2 = time.perf_counter()
            env.step(ACTIONS[i % len(ACTIONS)])
            t3 = time.perf_counter()
            if seeing:
                parts["capture->perceive->input"].append(env.last_input_at - t0)
                continue
            parts["capture"].append(t1 - t0)
            parts["capture->input"].append(env.last_input_at - t0)
            parts["step"].append(t3 - t2)
        rates = capture_rates(env, args.seconds)
        drawn = distinct_frames(env, args.seconds)
    finally:
        env.close()
    print(f"minetest loop on a {size[0]}x{size[1]} window (software GL), {args.iterations} "
          f"iterations, hold {env.hold_ms:g} ms, truth delay {env.truth_delay:g} s; "
          f"reset {reset_s:.1f} s")
    for name, samples in parts.items():
        print(f"  {name:25s} {percentiles(samples)}")
    for name in ("capture->input", "capture->perceive->input"):
        p99 = np.percentile(parts[name], 99) * 1e3
        print(f"  target {name} p99 < 30 ms: {'met' if p99 < 30 else 'MISSED'} "
              f"({p99:.2f} ms)")
    print(f"  env steps/s {1 / np.mean(parts['step']):.2f}")
    print("capture: " + ", ".join(f"{name} {fps:6.0f} frames/s" for name, fps in rates.items()))
    print(f"game: {drawn:.1f} distinct frames/s while walking")


if __name__ == "__main__":
    main()
