"""One reproducible learning evaluation on Crafter, as ``bench/crafter_learning.py`` runs it
(``train``, then ``play`` with learning off and with the trained knowledge frozen), printed
as JSON (``tests/runtime/test_evaluate.py``). The figures do not depend on the process: the
env pins Crafter's own despawn order (``cairn.envs.crafter``) and nothing iterates a set in
hash order (``tests/bench/test_crafter_learning.py`` runs under two hash seeds).

    python tests/learning_run.py STORE_DIR BUDGET MAX_STEPS FIRST_HELD_OUT N_HELD_OUT
"""

import dataclasses
import json
import sys
from pathlib import Path

from cairn.experience.store import ExperienceStore
from cairn.runtime.config import load_config
from cairn.runtime.evaluate import play, train

ROOT = Path(__file__).resolve().parent.parent


def main(out: Path, budget: int, max_steps: int, first: int, n: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    config = load_config(ROOT / "configs" / "crafter.yaml",
                         {"env.kwargs.area": [32, 32], "max_steps": max_steps})
    seeds = list(range(first, first + n))
    with ExperienceStore(out / "trained.sqlite") as store:
        generations = train(config, store, budget, 5, 0, report=lambda _: None)
    with ExperienceStore(out / "off.sqlite") as store:
        off = play(dataclasses.replace(config, learning="off"), store, seeds, "off")
    with ExperienceStore(out / "trained.sqlite") as store:
        full = play(dataclasses.replace(config, learning="frozen"), store, seeds, "full")
    return {
        "training_steps": sum(g.steps for g in generations),
        "off": {"reached": [sorted(r) for r in off.reached], "score": off.score(),
                "steps": off.steps},
        "full": {"reached": [sorted(r) for r in full.reached], "score": full.score(),
                 "steps": full.steps},
    }


if __name__ == "__main__":
    out, *numbers = sys.argv[1:]
    print(json.dumps(main(Path(out), *(int(v) for v in numbers))))
