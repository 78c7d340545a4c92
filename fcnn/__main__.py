"""``python -m fcnn``: the same as the ``fcnn`` command."""

import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while starting up: no traceback, the usual status
    sys.stderr.write("fcnn: interrupted\n")
    sys.exit(130)

sys.exit(main())
