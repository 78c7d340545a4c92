"""The tree is as `ruff format` writes it and `ruff check` passes (settings in pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The Python the project owns; tests/fuzz/corpus is excluded in pyproject.toml.
PATHS = ["fcnn", "tests", "benchmarks", "notebooks", "setup.py"]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    try:
        import ruff  # noqa: F401
    except ImportError:
        if shutil.which("ruff") is None:
            pytest.skip("ruff is not installed; pip install 'fcnn[test]'")
        command = ["ruff"]
    else:
        command = [sys.executable, "-m", "ruff"]
    if not (ROOT / "pyproject.toml").is_file():
        pytest.skip("needs the source checkout (pyproject.toml holds ruff's settings)")
    return subprocess.run(
        [*command, *args, *PATHS], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_ruff_check_is_clean():
    result = _ruff("check", "--no-cache", "--output-format", "concise")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_leaves_the_tree_unchanged():
    result = _ruff("format", "--check", "--no-cache")
    assert result.returncode == 0, (
        "run `ruff format fcnn tests benchmarks notebooks setup.py`\n"
        + result.stdout
        + result.stderr
    )
