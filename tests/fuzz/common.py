"""What every fcnn fuzz target shares: the rule for acceptable rejections, and a scratch file.

A reader may refuse any input, but only with an OSError or a ValueError (subclasses
included) that carries a message; any other exception escaping is a bug, and is
re-raised so that libFuzzer records the input as a crash.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ALLOWED = (OSError, ValueError)


def scratch_file(suffix: str) -> Path:
    """A file to write each input to: in memory (/dev/shm) when there is one."""
    folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
    descriptor, name = tempfile.mkstemp(prefix="fcnn-fuzz-", suffix=suffix, dir=folder)
    os.close(descriptor)
    return Path(name)


def check_rejection(error: BaseException) -> None:
    """Re-raise ``error`` unless it is an allowed rejection with a message."""
    if not isinstance(error, ALLOWED):
        raise error
    if not str(error).strip():
        raise AssertionError(f"{type(error).__name__} without a message") from error
