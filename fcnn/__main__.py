"""``python -m fcnn``: the same as the ``fcnn`` command."""

import sys

from .cli import main

sys.exit(main())
