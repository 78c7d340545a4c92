"""notebooks/main.ipynb matches its source notebooks/main.py, and runs in fast mode without error.

The notebook's source is ``main.py`` (jupytext's percent format), paired with the committed
``main.ipynb``: the first test fails when the two disagree. The second runs the notebook top
to bottom in fast mode (FCNN_NOTEBOOK_FAST=1) in a Jupyter kernel of this very interpreter,
on the real MNIST (``mnist_dir``) and on the fcnn this test imports: about half a minute.
"""

import os
import re
import sys
from pathlib import Path

import pytest

import fcnn

try:
    import ipykernel.kernelspec
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from nbclient import NotebookClient
except ImportError as error:  # pragma: no cover - depends on the environment
    pytestmark = pytest.mark.skip(
        reason=f"running the notebook needs nbclient, nbformat and ipykernel ({error}); "
        f"pip install 'fcnn[test]'"
    )

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "main.ipynb"
SCRIPT = NOTEBOOK.with_suffix(".py")
#: Seconds any one cell may take in fast mode (the whole notebook takes about 30).
CELL_TIMEOUT = 300
#: A net trained for 2 epochs on 6,000 images gets about 92 %: far below means it is broken.
MIN_FAST_ACCURACY = 0.85


def _runs_this_python(argv: list[str]) -> bool:
    """Whether a kernelspec's command starts this interpreter.

    jupyter_client swaps a bare ``python``/``python3``/``python3.X`` for sys.executable;
    an absolute path must be this one (not merely the same binary: a venv's python is a
    link to its base interpreter, with other packages).
    """
    names = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info)}
    return bool(argv) and (
        argv[0] in names or os.path.abspath(argv[0]) == os.path.abspath(sys.executable)
    )


@pytest.fixture
def kernel_name(tmp_path, monkeypatch) -> str:
    """``python3`` if it runs this interpreter, else a kernelspec for it installed in tmp_path."""
    try:
        argv = KernelSpecManager().get_kernel_spec("python3").argv
    except NoSuchKernel:
        argv = []
    if _runs_this_python(argv):
        return "python3"
    name = "fcnn-test-python"
    ipykernel.kernelspec.install(kernel_name=name, prefix=str(tmp_path))
    search_path = [str(tmp_path / "share" / "jupyter"), os.environ.get("JUPYTER_PATH", "")]
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join(filter(None, search_path)))
    return name


def _cells(notebook) -> list[tuple[str, str, list[str]]]:
    return [(cell.cell_type, cell.source, cell.metadata.get("tags", [])) for cell in notebook.cells]


def test_notebook_matches_its_script():
    jupytext = pytest.importorskip(
        "jupytext", reason="comparing the pair needs jupytext; pip install 'fcnn[test]'"
    )
    script = jupytext.read(SCRIPT)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert notebook.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"
    script_cells, notebook_cells = _cells(script), _cells(notebook)
    for index, (in_script, in_notebook) in enumerate(
        zip(script_cells, notebook_cells, strict=False)
    ):
        assert in_script == in_notebook, (
            f"cell {index} of {SCRIPT.name} and {NOTEBOOK.name} differ; run "
            f"`jupytext --sync notebooks/main.ipynb` (or rerun notebooks/run_notebook.py)"
        )
    assert len(script_cells) == len(notebook_cells), (
        f"{SCRIPT.name} has {len(script_cells)} cells, {NOTEBOOK.name} {len(notebook_cells)}"
    )
    # A committed notebook carries the outputs of a run.
    assert any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")


@pytest.mark.slow
def test_notebook_runs_in_fast_mode(mnist_dir, kernel_name, monkeypatch):
    monkeypatch.setenv("FCNN_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("FCNN_DATA", str(mnist_dir))
    # The kernel imports the fcnn under test, installed or a checkout built in place.
    package_parent = str(Path(fcnn.__file__).resolve().parent.parent)
    monkeypatch.setenv(
        "PYTHONPATH",
        os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH", "")])),
    )

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # Raises CellExecutionError, naming the cell, on the first cell that fails.
    NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()

    outputs = [
        output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    ]
    printed = "".join(output.text for output in outputs if output.output_type == "stream")
    figures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert "fast mode" in printed
    # The digits, one per search stage (3 original, then at least 1 further and 1 last),
    # loss, accuracy, 2 weight figures, confusion matrix, misclassified digits.
    assert len(figures) >= 12
    assert "identical to the trained net's" in printed
    accuracy = re.search(r"test accuracy after 2 epochs: fcnn ([\d.]+)%", printed)
    assert accuracy is not None, printed[-2000:]
    assert float(accuracy.group(1)) / 100 > MIN_FAST_ACCURACY
