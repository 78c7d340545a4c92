"""Runs notebooks/main.py (the notebook's source) and writes notebooks/main.ipynb with its outputs.

The notebook's source is ``main.py`` in jupytext's percent format, paired with ``main.ipynb``
(the ``jupytext.formats`` metadata says so): edit either, in an editor or in Jupyter with
jupytext installed, and ``jupytext --sync notebooks/main.ipynb`` brings the other up to date.
``tests/test_notebook.py`` fails when the two disagree.

    FCNN_DATA=DIR python notebooks/run_notebook.py            # full mode, about 6 minutes
    FCNN_NOTEBOOK_FAST=1 FCNN_DATA=DIR python notebooks/run_notebook.py --out /tmp/fast.ipynb

The notebook runs with nbclient in the kernel ``python3`` from the ``notebooks/`` folder.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

SCRIPT = Path(__file__).resolve().parent / "main.py"
NOTEBOOK = SCRIPT.with_suffix(".ipynb")
#: Seconds one cell may run (the full search is one cell of a few minutes).
CELL_TIMEOUT = 3600


def read_script() -> nbformat.NotebookNode:
    """The notebook of ``main.py``, without outputs; cell ids fixed so reruns diff cleanly."""
    notebook = jupytext.read(SCRIPT)
    for index, cell in enumerate(notebook.cells):
        cell.id = f"cell-{index:02d}"
    return notebook


def execute(notebook: nbformat.NotebookNode) -> None:
    """Runs ``notebook`` in place from the notebooks folder; raises on the first cell error."""
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
        record_timing=False,
        coalesce_streams=True,
    )
    client.execute()
    # What a progress bar leaves behind once it has cleared itself: blank lines.
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [
                output
                for output in cell.outputs
                if output.output_type != "stream" or output.text.strip()
            ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=NOTEBOOK, help="default: %(default)s")
    args = parser.parse_args(argv)
    notebook = read_script()
    started = time.perf_counter()
    execute(notebook)
    print(f"executed in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    jupytext.write(notebook, args.out, fmt="ipynb")
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.2f} MB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
