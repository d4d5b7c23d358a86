"""Desktop loop latency: capture -> percept -> action on a real game window, and capture rate.

    python -m bench.desktop_latency --iterations 150

(Run it as a module: ``python bench/desktop_latency.py`` would put ``bench/`` first on the path.)
Starts its own Xvfb and ``sgt-flip`` in an 800x600 window. Each iteration grabs the window
(``DesktopEnv.observe``), parses it with ``GridPerceiver`` against the previous frame, and
clicks a random cell through ``DesktopEnv.step`` with ``settle_after_step`` off (the step still
checks the window, clamps and sends the click, and releases inputs); then, untimed,
``DesktopEnv.settle`` waits for the game's animation to end, as an agent's loop would.
Capture rate compares ``observe`` (window lookup, grab,
BGRA->RGB) with mss's raw ``grab`` of the same region, side by side in the same run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cairn.envs.desktop import DesktopEnv, click, virtual_display
from cairn.perception.grid import GridPerceiver


def percentiles(samples: list[float]) -> str:
    ms = np.asarray(samples) * 1e3
    return f"p50 {np.percentile(ms, 50):6.2f} ms  p99 {np.percentile(ms, 99):6.2f} ms"


def capture_rates(env: DesktopEnv, seconds: float) -> tuple[float, float]:
    """(env observe frames/s, raw mss grabs/s) over the same window region."""
    left, top, w, h = env._window.rect()
    region = {"left": left, "top": top, "width": w, "height": h}
    rates = []
    for grab in (env.observe, lambda: env._mss.grab(region)):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            grab()
            n += 1
        rates.append(n / (time.perf_counter() - start))
    return rates[0], rates[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--size", default="800x600", help="window size WxH")
    parser.add_argument("--seconds", type=float, default=2.0, help="per capture-rate run")
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.split("x"))
    rng = np.random.default_rng(0)
    with virtual_display((1024, 768)):
        env = DesktopEnv(["/usr/games/sgt-flip", "3x3#{seed}"], size=size)
        try:
            env.reset(seed=0)
            env.settle_after_step = False  # time the loop; the game's redraw is waited for below
            perceiver = GridPerceiver()
            previous = None
            parts: dict[str, list[float]] = {"capture": [], "percept": [], "action": [],
                                             "total": []}
            for _ in range(args.iterations):
                t0 = time.perf_counter()
                frame = env.observe()
                t1 = time.perf_counter()
                percept = perceiver.parse(frame, previous)
                t2 = time.perf_counter()
                row, col = (int(rng.integers(0, n)) for n in percept.tiles.shape)
                env.step(click(*percept.centers[row, col]))
                t3 = time.perf_counter()
                for name, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
                    parts[name].append(dt)
                previous = frame
                env.settle()  # untimed: the next grab sees the game at rest, as an agent would
            env_fps, raw_fps = capture_rates(env, args.seconds)
        finally:
            env.close()
    print(f"desktop loop on a {size[0]}x{size[1]} sgt-flip window, {args.iterations} iterations")
    for name, samples in parts.items():
        print(f"  {name:8s} {percentiles(samples)}")
    p99 = np.percentile(parts["total"], 99) * 1e3
    print(f"  target p99 < 30 ms: {'met' if p99 < 30 else 'MISSED'} ({p99:.2f} ms)")
    print(f"capture: env.observe {env_fps:7.0f} frames/s, raw mss grab {raw_fps:7.0f} frames/s "
          f"(ratio {env_fps / raw_fps:.2f})")


if __name__ == "__main__":
    main()
