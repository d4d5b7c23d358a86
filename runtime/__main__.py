"""The ``cairn`` command (also ``python -m cairn.runtime``).

It takes the kill-switch signal (SIGUSR1) before anything heavy is imported, so the signal
stops a run cleanly at any moment, even while Python is still loading it; the desktop env
later takes the signal over for its own kill switch, and hands it back when it closes.
"""

import os
import signal
import sys


class Stopped(RuntimeError):
    """The run was stopped on purpose by the kill-switch signal."""

    end_reason = "killed"


def _stop(signum: int, frame: object) -> None:
    raise Stopped(f"run stopped by the kill switch: signal SIGUSR1 sent to process "
                  f"{os.getpid()}")


def main() -> int:
    signal.signal(signal.SIGUSR1, _stop)
    try:
        from cairn.runtime.cli import main as cli
    except Stopped as err:
        print(f"cairn: {err}, before it started", file=sys.stderr)
        return 3
    return cli()


if __name__ == "__main__":
    sys.exit(main())
