"""Measure the peak memory (resident set) of training with the fcnn command.

Each probe runs as its own Python subprocess, and its peak RSS is read from the
kernel's resource usage, ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` (KB
on Linux), once it has ended:

- ``python``: the interpreter alone (``python -c pass``);
- ``import fcnn + load MNIST``: imports fcnn and loads the data set, nothing more;
- ``fcnn train``: ``python -m fcnn train --data-dir DIR --no-download --epochs 1
  --no-progress --out TMP`` (784-1024-10 by default; with --quick, a hidden layer
  of 64 and 5,000 training images, so it ends in seconds).

Linux carries a process's peak RSS across fork and exec, so a probe started
straight from this script (some 200 MB with NumPy and fcnn loaded) would report
this script's size. Each probe is therefore started by a launcher of its own, a
bare ``python -I -S`` of under 10 MB (less than any probe) that spawns the probe,
waits for it, and prints its one child's RUSAGE_CHILDREN reading; a fresh launcher
per run also keeps that reading, a maximum over every child waited for, from
carrying over between probes. Medians of --repeats runs, probes interleaved within
a repeat; writes benchmarks/results/memory.json.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_memory.py --quick
    python benchmarks/bench_memory.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import common

import fcnn

QUICK_TRAIN_ARGS = ["--hidden", "64", "--val-size", "55000"]
LOAD_MNIST = (
    "import sys, fcnn; from fcnn.datasets import load_mnist; "
    "load_mnist(sys.argv[1] if sys.argv[1] else None, download=False, progress=False)"
)
# argv: log file, then the probe's argv. Prints: exit code, wall seconds, peak RSS in KB.
LAUNCHER = """
import os, resource, sys, time
log = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
started = time.perf_counter()
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ,
                     file_actions=[(os.POSIX_SPAWN_DUP2, log, 1), (os.POSIX_SPAWN_DUP2, log, 2)])
_, status = os.waitpid(pid, 0)
seconds = time.perf_counter() - started
print(os.waitstatus_to_exitcode(status), seconds,
      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def child_env(threads: int | None) -> dict[str, str]:
    """This process's environment, with this checkout of fcnn importable and the threads."""
    env = dict(os.environ)
    package_root = str(Path(fcnn.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = str(threads)
    return env


def probe(argv: list[str], env: dict[str, str], log_path: Path) -> common.Run:
    """Runs ``argv`` through the launcher, output to ``log_path``; its wall seconds and
    peak RSS in KB."""
    launcher = subprocess.run(
        [sys.executable, "-I", "-S", "-c", LAUNCHER, str(log_path), *argv],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    exit_code, seconds, max_rss_kb = launcher.stdout.split()
    if int(exit_code) != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{log_path.read_text()}")
    return common.Run(float(seconds), extra={"max_rss_kb": int(max_rss_kb)})


def main() -> None:
    parser = common.make_parser(__doc__, uses_torch=False)
    args = common.parse_args(parser)
    threads = common.set_threads(args.threads)
    if args.download:  # here, so that the probes never touch the network
        common.load_data(args)
    env = child_env(args.threads)
    data_dir = "" if args.data_dir is None else str(args.data_dir)
    with tempfile.TemporaryDirectory(prefix="fcnn-bench-memory-") as folder:
        folder = Path(folder)
        train_argv = [
            sys.executable,
            "-m",
            "fcnn",
            "train",
            "--no-download",
            "--epochs",
            "1",
            "--no-progress",
            "--out",
            str(folder / "run"),
        ]
        if args.data_dir is not None:
            train_argv += ["--data-dir", data_dir]
        if args.quick:
            train_argv += QUICK_TRAIN_ARGS
        probes = {
            "python": [sys.executable, "-c", "pass"],
            "import fcnn + load MNIST": [sys.executable, "-c", LOAD_MNIST, data_dir],
            "fcnn train": train_argv,
        }
        cases = [
            common.Case(
                label=name,
                run=lambda argv=argv, name=name: probe(
                    argv, env, folder / f"{name.split()[-1]}.log"
                ),
                info={"name": name, "argv": argv[1:]},
            )
            for name, argv in probes.items()
        ]
        common.run_cases(cases, args.repeats)

    rows = []
    for case in cases:
        peaks = [run.extra["max_rss_kb"] for run in case.runs]
        case.info.update(max_rss_kb=peaks, median_max_rss_kb=statistics.median(peaks))
        rows.append(
            [
                case.info["name"],
                f"{case.info['median_max_rss_kb'] / 1024:.1f}",
                f"{case.median:.2f}",
            ]
        )
    quick = " [QUICK: not a result; train is 784-64-10 on 5,000 images]" if args.quick else ""
    common.print_table(
        f"peak resident memory of a subprocess, {threads} thread(s), median of "
        f"{args.repeats}{quick}",
        ["probe", "peak RSS MiB", "wall s"],
        rows,
    )
    train_peak, load_peak = cases[2].info["median_max_rss_kb"], cases[1].info["median_max_rss_kb"]
    print(
        f"training adds {(train_peak - load_peak) / 1024:.1f} MiB to importing fcnn and "
        f"loading MNIST"
    )
    common.write_results(
        args,
        "memory",
        threads,
        {
            "units": {"max_rss_kb": "KiB (ru_maxrss on Linux)", "seconds": "wall seconds"},
            "cases": [case.record() for case in cases],
        },
    )


if __name__ == "__main__":
    main()
