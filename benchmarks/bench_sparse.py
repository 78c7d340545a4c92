"""Where the sparse first layer stops paying: fused epochs at rising pixel densities.

The fused epoch (``fcnn._core.train_epoch``) takes the first layer on a batch's
non-zeros when their share is below ``sparse_threshold``, and through dense
panel GEMMs otherwise; by default (``sparse_threshold=None``) a cost model timed on
the machine at the first call decides per batch. This script forces each path
(threshold 1.0: always sparse; 0.0: always dense) and runs the cost model's choice
("auto") on MNIST images whose zero pixels are filled in at random until a given
share of each image is non-zero (MNIST itself: ~19%), and prints the seconds per
60,000 samples of each, the density where dense starts to win, and how auto
compares with the better of the two forced paths (it should never be slower).
Writes benchmarks/results/sparse.json.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_sparse.py --quick
    python benchmarks/bench_sparse.py
"""

from __future__ import annotations

import time

import common
import numpy as np

from fcnn import _core
from fcnn.training import SPARSE_THRESHOLD

DENSITIES = (0.19, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)
QUICK_SAMPLES = 2048


def with_density(images: np.ndarray, density: float, seed: int = 0) -> np.ndarray:
    """``images`` with random zero pixels set to 1..255 until ``density`` of each is non-zero."""
    filled = images.copy()
    rng = np.random.default_rng(seed)
    zeros = filled == 0
    share_zero = zeros.mean()
    target_zero = 1 - density
    if target_zero < share_zero:
        keep_zero = rng.random(filled.shape) < target_zero / share_zero
        fill = zeros & ~keep_zero
        filled[fill] = rng.integers(1, 256, int(fill.sum()), dtype=np.uint8)
    return filled


def fused_epoch(
    images: np.ndarray, labels: np.ndarray, hidden: int, batch_size: int, threshold: float | None
) -> common.Run:
    weights = [param.copy() for param in common.initial_params(images.shape[1], hidden, np.float32)]
    order = np.random.default_rng(0).permutation(len(labels))
    lrs = np.full(-(-len(order) // batch_size), common.LR)
    started = time.perf_counter()
    _core.train_epoch(
        images,
        labels,
        order,
        [weights[0], weights[2]],
        [weights[1], weights[3]],
        lrs,
        batch_size,
        sparse_threshold=threshold,
    )
    return common.Run(time.perf_counter() - started)


def main() -> None:
    parser = common.make_parser(__doc__, uses_torch=False)
    parser.add_argument("--hidden", type=common.positive_int, default=1024)
    parser.add_argument("--batch-size", type=common.positive_int, default=64)
    parser.add_argument(
        "--samples",
        type=common.positive_int,
        default=None,
        help=f"training images per epoch (default 60000; {QUICK_SAMPLES} "
        "with --quick); seconds are scaled to 60,000",
    )
    parser.add_argument("--densities", type=float, nargs="+", default=list(DENSITIES))
    args = common.parse_args(parser)
    threads = common.set_threads(args.threads)
    data = common.load_data(args)
    samples = args.samples or (QUICK_SAMPLES if args.quick else len(data.train_labels))
    images, labels = data.train_images[:samples], data.train_labels[:samples]
    cases = []
    for density in args.densities:
        dense_images = with_density(images, density)
        measured = float((dense_images != 0).mean())
        for path, threshold in (("sparse", 1.0), ("dense", 0.0), ("auto", None)):
            cases.append(
                common.Case(
                    label=f"{path} path, density {measured:.2f}",
                    run=lambda x=dense_images, t=threshold: fused_epoch(
                        x, labels, args.hidden, args.batch_size, t
                    ),
                    warm_up=lambda x=dense_images[:512], t=threshold: fused_epoch(
                        x, labels[:512], args.hidden, args.batch_size, t
                    ),
                    info={
                        "path": path,
                        "density": measured,
                        "hidden": args.hidden,
                        "batch_size": args.batch_size,
                        "samples": samples,
                    },
                )
            )
    common.run_cases(cases, args.repeats)
    rows, crossover = [], None
    for sparse_case, dense_case, auto_case in zip(
        cases[::3], cases[1::3], cases[2::3], strict=True
    ):
        density = sparse_case.info["density"]
        sparse_s = common.per_epoch(sparse_case.median, samples)
        dense_s = common.per_epoch(dense_case.median, samples)
        auto_s = common.per_epoch(auto_case.median, samples)
        if crossover is None and dense_s < sparse_s:
            crossover = density
        rows.append(
            [
                f"{density:.2f}",
                f"{sparse_s:.3f}",
                f"{dense_s:.3f}",
                common.ratio(dense_s, sparse_s),
                f"{auto_s:.3f}",
                f"{auto_s / min(sparse_s, dense_s):.2f}",
            ]
        )
    common.print_table(
        f"fused epoch 784-{args.hidden}-10, B={args.batch_size}, {threads} thread(s), seconds "
        f"per 60,000 samples (median of {args.repeats})",
        ["non-zero share", "sparse path", "dense path", "sparse vs dense", "auto", "auto / best"],
        rows,
    )
    print(
        f"dense first wins at density {crossover}; SPARSE_THRESHOLD is {SPARSE_THRESHOLD}"
        if crossover is not None
        else f"the sparse path wins at every density measured; SPARSE_THRESHOLD is "
        f"{SPARSE_THRESHOLD}"
    )
    common.write_results(
        args,
        "sparse",
        threads,
        {
            "cases": [case.record() for case in cases],
            "crossover_density": crossover,
            "sparse_threshold": SPARSE_THRESHOLD,
        },
    )


if __name__ == "__main__":
    main()
