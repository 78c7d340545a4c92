"""Shared fixtures: where the real MNIST files are, and the kernel backends."""

import os
import signal
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# The tests send SIGINT as a user's Ctrl-C, to this process and to the fcnn commands they
# start. Run in a background job (a CI runner's `cmd &`), pytest inherits an ignored SIGINT,
# which fcnn rightly leaves ignored: give the suite the terminal's usual handler instead
# (the commands it starts then inherit SIGINT's default action).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _mnist_dir() -> Path | None:
    """$FCNN_DATA if set, else ../shared/datasets/mnist beside the checkout."""
    env = os.environ.get("FCNN_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "datasets" / "mnist")
    for folder in candidates:
        if (folder / "train-images-idx3-ubyte.gz").exists() or (
            folder / "train-images-idx3-ubyte"
        ).exists():
            return folder
    return None


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Folder holding the four MNIST IDX files; skips the test when there is none."""
    folder = _mnist_dir()
    if folder is None:
        pytest.skip(
            "MNIST not found: set FCNN_DATA to a folder holding the four IDX files "
            "or place them in ../shared/datasets/mnist"
        )
    return folder
