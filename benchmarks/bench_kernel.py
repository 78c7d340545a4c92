"""Cycles of the fused epoch's sparse first-layer kernels per (non-zero x 64 columns).

Builds benchmarks/bench_kernel.c (a C driver that includes csrc/epoch.c, so its static
kernels can be called alone) with the flags of setup.py and runs it on one thread: an
MNIST-like batch of 64 (19% non-zero, 784 inputs, 1024 columns), min over --repeats.
TSC cycles tick at the nominal clock, not the core's: compare them on one machine only.

    python benchmarks/bench_kernel.py                       # this tree
    python benchmarks/bench_kernel.py --csrc /tmp/old/csrc  # another tree's kernels
    python benchmarks/bench_kernel.py --callgrind           # instruction counts, stable
    python benchmarks/bench_kernel.py --plain               # as a CPU without AVX2 runs
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import scipy_openblas32

HERE = Path(__file__).resolve().parent


def build(csrc: Path, out_dir: Path, plain: bool = False) -> Path:
    sources = [
        str(path) for path in sorted(csrc.glob("*.c")) if path.name not in ("module.c", "epoch.c")
    ]
    binary = out_dir / "bench_kernel"
    lib_dir = scipy_openblas32.get_lib_dir()
    command = [
        "gcc",
        "-O3",
        "-std=gnu11",
        "-fopenmp",
        "-w",
        "-Wno-psabi",  # as setup.py: no notes on the 32-byte vector ABI of GCC 4.6
        *(["-DFCNN_NO_CLONES"] if plain else []),
        f"-I{csrc}",
        f"-I{scipy_openblas32.get_include_dir()}",
        "-DBLAS_SYMBOL_PREFIX=scipy_",
        str(HERE / "bench_kernel.c"),
        *sources,
        f"-L{lib_dir}",
        f"-l{scipy_openblas32.get_library()}",
        f"-Wl,-rpath,{lib_dir}",
        "-lm",
        "-o",
        str(binary),
    ]
    subprocess.run(command, check=True)
    return binary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.partition("\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--csrc", type=Path, default=HERE.parent / "csrc")
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument(
        "--density",
        type=float,
        default=0.19,
        help="share of non-zero pixels; 1 times the dense kernels",
    )
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument(
        "--misalign",
        type=int,
        default=0,
        help="start every buffer this many bytes past a cache line (default 0, as the "
        "epoch's workspace; 16 is where glibc's malloc puts large blocks)",
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="build without the AVX-512 and AVX2 clones (-DFCNN_NO_CLONES): every kernel as "
        "plain x86-64 code, what a CPU without AVX2 runs",
    )
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="run under valgrind --tool=callgrind (10 repeats) and print the "
        "instructions of each kernel",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        binary = build(args.csrc.resolve(), Path(folder), args.plain)
        env = {"OMP_NUM_THREADS": "1"}
        command = [
            str(binary),
            str(args.hidden),
            str(args.density),
            str(args.repeats),
            str(args.misalign),
        ]
        if not args.callgrind:
            subprocess.run(command, check=True, env=env)
            return
        if shutil.which("valgrind") is None:
            sys.exit("valgrind is not installed")
        out = Path(folder) / "callgrind.out"
        command[3] = "10"
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command],
            check=True,
            env=env,
            capture_output=True,
        )
        report = subprocess.run(
            ["callgrind_annotate", "--inclusive=yes", str(out)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        print("instructions over 10 calls (callgrind, inclusive):")
        for line in report.splitlines():
            if "first_forward" in line or "first_update" in line:
                print("  " + line.strip())


if __name__ == "__main__":
    main()
