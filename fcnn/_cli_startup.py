"""Ctrl-C while the ``fcnn`` command starts up: one line and status 130, not a traceback.

Imported first by ``fcnn/__init__.py``, before NumPy and the C core: importing
them takes a few hundred milliseconds, and a KeyboardInterrupt in that time
printed a traceback, sometimes as ``ImportError: numpy._core.multiarray failed
to import``, which reads like a broken install. When (and only when) this
process is the ``fcnn`` command (its console script or ``python -m fcnn``),
a SIGINT handler that exits at once is installed here; :func:`fcnn.cli.main`
replaces it as its first step by one that raises KeyboardInterrupt, as Python's
usual one does. Importing fcnn in any
other program changes nothing.
"""

import os
import signal
import sys
import threading

# Interpreter options whose value is the next argument.
_OPTIONS_WITH_VALUE = ("-W", "-X", "--check-hash-based-pycs")


def _is_fcnn_command(argv: list[str]) -> bool:
    """True for ``[python, .../fcnn, ...]`` and ``[python, <options>, -m, fcnn, ...]``."""
    if len(argv) >= 2 and os.path.basename(argv[1]) in ("fcnn", "fcnn-script.py"):
        return True
    arguments = iter(argv[1:])
    for arg in arguments:
        if arg == "-m":
            return next(arguments, None) == "fcnn"
        if arg.startswith("-m"):
            return arg == "-mfcnn"
        if arg in _OPTIONS_WITH_VALUE:
            next(arguments, None)
        elif arg == "-c" or not arg.startswith("-"):  # a program or a script
            return False
    return False


#: The exit status of a command stopped by Ctrl-C: 128 + SIGINT, as shells report it.
INTERRUPTED = 130


def exit_interrupted(signum: int, frame: object) -> None:
    """The start-up SIGINT handler: nothing has been written yet, so leave at once."""
    os.write(2, b"fcnn: interrupted\n")
    os._exit(INTERRUPTED)


# A SIGINT the parent made this process ignore (a background job, nohup) stays ignored.
if (
    threading.current_thread() is threading.main_thread()
    and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
    and _is_fcnn_command(getattr(sys, "orig_argv", sys.argv))
):
    signal.signal(signal.SIGINT, exit_interrupted)
