"""``python -m fcnn``: the same as the ``fcnn`` command."""

import sys

from ._cli_startup import INTERRUPTED


def _exit_interrupted() -> None:
    """Leaves with status 130, the status fcnn reports for Ctrl-C.

    ``sys.exit(130)`` is not enough under ``python -m``: CPython (3.11) ends such a run
    by killing itself with SIGINT (status -2) when a KeyboardInterrupt has passed through
    ``exec`` of a string anywhere, as when a dataclass is being created, even though the
    interrupt was caught. So: the exit handlers, flushed streams, then ``os._exit``.
    """
    import atexit
    import os

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(INTERRUPTED)


try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while starting up: no traceback, the usual status
    sys.stderr.write("fcnn: interrupted\n")
    _exit_interrupted()

status = main()
if status == INTERRUPTED:
    _exit_interrupted()
sys.exit(status)
