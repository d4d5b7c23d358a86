"""The ``cairn`` command (also ``python -m cairn.runtime``).

It takes the kill-switch signal (SIGUSR1) before anything heavy is imported, so the signal
stops a run cleanly at any moment once ``main`` has set its handler, even while Python is
still loading the rest (before that, during the interpreter's own start-up, the signal's
default action still ends the process without a word); the desktop env
later takes the signal over for its own kill switch, and hands it back when it closes.

The stop is a ``BaseException`` (like Ctrl-C), so no ``except Exception`` on the way swallows
it; where Python drops it all the same (a signal landing in a ``__del__`` or a weakref
callback), the handler has also written it down: the import below checks, and the desktop
envs' kill switch takes it over (``_stop.fired``) when one listens.
"""

import os
import signal
import sys


class Stopped(BaseException):
    """The run was stopped on purpose by the kill-switch signal."""

    end_reason = "killed"


def _stop(signum: int, frame: object) -> None:
    reason = f"signal SIGUSR1 sent to process {os.getpid()}"
    _stop.fired = reason
    raise Stopped(f"run stopped by the kill switch: {reason}")


_stop.fired = None


def main() -> int:
    signal.signal(signal.SIGUSR1, _stop)
    try:
        from cairn.runtime.cli import main as cli
        if _stop.fired:
            raise Stopped(f"run stopped by the kill switch: {_stop.fired}")
    except Stopped as err:
        print(f"cairn: {err}, before it started", file=sys.stderr)
        return 3
    try:
        return cli()
    except Stopped as err:
        print(f"cairn: {err}; recordings and the store keep every completed step",
              file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
