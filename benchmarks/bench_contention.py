"""The fused epoch on 1 and 2 threads, alone and beside a process that keeps one core busy.

Each configuration runs in its own Python process (libgomp reads its wait policy when it
loads): fcnn's default (GOMP_SPINCOUNT=1000, set by fcnn/__init__.py), spin counts of 10000
and 30000, libgomp's own default (GOMP_SPINCOUNT=300000) and OMP_WAIT_POLICY=passive; each on
1 and 2 threads, with and without a competing busy-loop process. Prints the fastest of
--repeats epochs of plain SGD on the first --samples MNIST images, scaled to 60,000, and the
2-thread speed-up.

    python benchmarks/bench_contention.py
    python benchmarks/bench_contention.py --samples 60000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys

WORKER = r"""
import sys, time, numpy as np, fcnn
from fcnn import _core
from fcnn.datasets import load_mnist
samples, repeats, threads = (int(value) for value in sys.argv[1:4])
fcnn.set_num_threads(threads)
(x, y), _ = load_mnist(download=False, progress=False)
x = np.ascontiguousarray(x.reshape(len(x), -1)[:samples]); y = y[:samples].astype(np.int64)
rng = np.random.default_rng(0)
w = [(rng.standard_normal((784, 1024)) * 0.05).astype(np.float32),
     (rng.standard_normal((1024, 10)) * 0.1).astype(np.float32)]
b = [np.zeros(1024, np.float32), np.zeros(10, np.float32)]
lrs = np.full(-(-samples // 64), 0.05)
_core.train_epoch(x[:640], y[:640], np.arange(640), w, b, lrs[:10], 64)  # warm-up, calibration
best = float("inf")
for _ in range(repeats):
    started = time.perf_counter()
    _core.train_epoch(x, y, rng.permutation(samples), w, b, lrs, 64)
    best = min(best, time.perf_counter() - started)
print(best * 60000 / samples)
"""


def busy() -> None:
    while True:
        pass


def epoch_seconds(env: dict[str, str], samples: int, repeats: int, threads: int) -> float:
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(samples), str(repeats), str(threads)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.partition("\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--samples", type=int, default=12800)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    base = {
        key: value
        for key, value in os.environ.items()
        if key not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "OMP_NUM_THREADS")
    }
    policies = {
        "fcnn default (GOMP_SPINCOUNT=1000)": {},
        "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
        "GOMP_SPINCOUNT=30000": {"GOMP_SPINCOUNT": "30000"},
        "libgomp default (GOMP_SPINCOUNT=300000)": {"GOMP_SPINCOUNT": "300000"},
        "OMP_WAIT_POLICY=passive": {"OMP_WAIT_POLICY": "passive"},
    }
    results = {}
    print(
        f"fused plain-SGD epoch, 784-1024-10, batch 64, best of {args.repeats} on "
        f"{args.samples} samples, scaled to 60,000 (s/epoch)"
    )
    print(f"{'wait policy':42} {'load':>10} {'1 thread':>9} {'2 threads':>9} {'speed-up':>9}")
    for name, extra in policies.items():
        for loaded in (False, True):
            competitor = None
            if loaded:
                competitor = multiprocessing.Process(target=busy, daemon=True)
                competitor.start()
            try:
                one, two = (
                    epoch_seconds({**base, **extra}, args.samples, args.repeats, count)
                    for count in (1, 2)
                )
            finally:
                if competitor is not None:
                    competitor.terminate()
                    competitor.join()
            load = "1 busy" if loaded else "quiet"
            results[f"{name}, {load}"] = {"1": one, "2": two}
            print(f"{name:42} {load:>10} {one:9.3f} {two:9.3f} {one / two:8.2f}x", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
