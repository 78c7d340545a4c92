"""Ctrl-C (SIGINT) to `fcnn train` at random moments, start-up included: always status 130,
one line on stderr, and either a model that loads (where the line says) or none at all."""

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fcnn

MOMENTS = 20

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.name != "posix", reason="sends POSIX signals"),
]


def fcnn_command():
    """The installed console script, else ``python -m fcnn``."""
    script = Path(sys.executable).parent / "fcnn"
    if script.exists():
        return [str(script)]
    found = shutil.which("fcnn")
    return [found] if found else [sys.executable, "-m", "fcnn"]


def train_argv(mnist_dir, out, epochs=100):
    """A run far longer than the test waits: every SIGINT lands before it could finish."""
    return [
        *fcnn_command(),
        "train",
        "--data-dir",
        str(mnist_dir),
        "--no-download",
        "--epochs",
        str(epochs),
        "--hidden",
        "32",
        "--val-size",
        "50000",
        "--no-progress",
        "--out",
        str(out),
    ]


def run(argv, cwd, interrupt_after=None):
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd
    )
    if interrupt_after is not None:
        time.sleep(interrupt_after)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def interpreter_start_up(cwd):
    """Seconds Python itself needs to start (site, .pth files), before any fcnn code runs."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True, cwd=cwd)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def check_interrupted(status, err, out_dir, context):
    """Status 130, one line; the model it names loads, or there is none. Returns which."""
    assert status == 130, context
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted" in lines[0] and "Traceback" not in err, context
    saved = re.search(r"saved (?:the model )?to (\S+)", lines[0])
    model_path = out_dir / "model.npz"
    if out_dir.exists():
        assert not [path.name for path in out_dir.iterdir() if path.suffix == ".tmp"], context
    if not saved:
        assert "nothing saved" in lines[0] or lines[0] == "fcnn: interrupted", context
        assert not model_path.exists(), context
        return "nothing"
    assert Path(saved.group(1)).resolve() == model_path.resolve(), context
    checkpoint = fcnn.load_checkpoint(model_path)
    assert checkpoint.optimizer_state["step_count"] > 0, context
    assert checkpoint.metadata["history"].get("interrupted") is True, context
    return "saved"


def test_sigint_at_random_moments(mnist_dir, tmp_path):
    # Calibration, itself one interruption: how long until the first epoch is done.
    started = time.perf_counter()
    process = subprocess.Popen(
        train_argv(mnist_dir, tmp_path / "first"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    first_line = process.stdout.readline()
    first_epoch = time.perf_counter() - started
    assert first_line.startswith("epoch 1"), first_line
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=300)
    assert check_interrupted(process.returncode, err, tmp_path / "first", err) == "saved"

    # Before Python has started, no program can have its own SIGINT handler: the moments
    # start after twice the bare interpreter's start-up. One random moment in each of
    # MOMENTS equal slices up to 2.5 epochs: start-up, data loading, the first epochs.
    earliest = 2 * interpreter_start_up(tmp_path)
    rng = np.random.default_rng(int(time.time()))
    edges = np.linspace(earliest, 2.5 * first_epoch, MOMENTS + 1)
    moments = rng.uniform(edges[:-1], edges[1:])
    outcomes = []
    for number, moment in enumerate(moments):
        out_dir = tmp_path / f"run{number}"
        status, _, err = run(train_argv(mnist_dir, out_dir), tmp_path, interrupt_after=moment)
        context = (
            f"SIGINT after {moment:.3f}s (first epoch took {first_epoch:.3f}s): "
            f"status {status}, stderr {err!r}"
        )
        outcomes.append(check_interrupted(status, err, out_dir, context))
    print(
        "outcomes:",
        {kind: outcomes.count(kind) for kind in set(outcomes)},
        f"moments {earliest:.2f}..{2.5 * first_epoch:.2f}s",
    )
    assert outcomes.count("saved") >= 1 and outcomes.count("nothing") >= 1


def test_sigint_during_start_up_is_one_line(mnist_dir, tmp_path):
    """SIGINT while NumPy and the core are being imported: no ImportError, no traceback."""
    earliest = 2 * interpreter_start_up(tmp_path)
    for number, moment in enumerate(np.linspace(earliest, earliest + 0.25, 5)):
        argv = train_argv(mnist_dir, tmp_path / f"run{number}")
        if number % 2:
            argv = [sys.executable, "-m", "fcnn", *argv[len(fcnn_command()) :]]
        status, _, err = run(argv, tmp_path, interrupt_after=moment)
        check_interrupted(status, err, tmp_path / f"run{number}", err)
        assert "ImportError" not in err, err


def test_second_ctrl_c_during_training_still_one_line(mnist_dir, tmp_path):
    """Two quick Ctrl-C: the first asks to stop after the batch, the second stops at once."""
    process = subprocess.Popen(
        train_argv(mnist_dir, tmp_path / "run"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    first_line = process.stdout.readline()  # training is under way
    assert first_line.startswith("epoch 1"), first_line
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=300)
    check_interrupted(process.returncode, err, tmp_path / "run", err)
