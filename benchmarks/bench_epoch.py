"""Time one training epoch of 784-1024-10 on full MNIST (batch 64, SGD lr 0.1) per contender.

Contenders: fcnn fused (fcnn.train, the whole epoch in C), fcnn's Module API
(the original project's loop on the C core), the same loop on fcnn's NumPy
backend, a well-written plain NumPy float32 loop, that loop in float64 (as the
original project computed), PyTorch on the CPU (when installed) and the dense
floor (only the four matrix products of each step, through fcnn's BLAS kernels).
All start from the same initial weights and use the same thread count.

Prints the median epoch time of each over --repeats runs (contenders interleaved
within a repeat), how many times faster it is than NumPy float32, the dense
floor, PyTorch and the original, and the test accuracy after the epoch as a check
that each really trained; writes benchmarks/results/epoch.json.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_epoch.py --quick
    python benchmarks/bench_epoch.py                  # the real run: 7 epochs x 3 repeats
    python benchmarks/bench_epoch.py --threads 1      # single-threaded, every contender
"""

from __future__ import annotations

import common

QUICK_SAMPLES = 2048
ORDER = ("fused", "module", "numpy_backend", "numpy32", "original", "torch", "floor")
BASELINES = (("NumPy f32", "numpy32"), ("dense floor", "floor"), ("PyTorch", "torch"),
             ("original", "original"))


def main() -> None:
    parser = common.make_parser(__doc__)
    parser.add_argument("--hidden", type=common.positive_int, default=1024)
    parser.add_argument("--batch-size", type=common.positive_int, default=64)
    parser.add_argument("--samples", type=common.positive_int, default=None,
                        help=f"train on the first N images only, times scaled to "
                             f"{common.EPOCH_SAMPLES:,} (default all; {QUICK_SAMPLES} with "
                             f"--quick)")
    args = common.parse_args(parser)
    if args.samples is None and args.quick:
        args.samples = QUICK_SAMPLES
    threads = common.set_threads(args.threads)
    data = common.load_data(args)
    cases = [common.epoch_case(contender, data, args.hidden, args.batch_size, args.samples)
             for contender in common.contenders(ORDER, args)]
    common.run_cases(cases, args.repeats)

    samples = cases[0].info["samples"]
    per_epoch = {case.info["contender"]: common.per_epoch(case.median, samples)
                 for case in cases}
    accuracy = {}
    for case in cases:
        params = case.runs[-1].params
        if params is not None:
            predicted = common.numpy_predict(params, data.test_images)
            accuracy[case.info["contender"]] = float((predicted == data.test_labels).mean())
    scaled = "" if samples == common.EPOCH_SAMPLES else (
        f", timed on the first {samples:,} samples and scaled to {common.EPOCH_SAMPLES:,}")
    title = (f"one epoch of 784-{args.hidden}-10, batch {args.batch_size}, {threads} thread(s), "
             f"median of {args.repeats}{scaled}{' [QUICK: not a result]' if args.quick else ''}\n"
             "ratios: x faster than (baseline seconds / contender seconds; below 1 = slower)")
    headers = ["contender", "s/epoch", *(f"vs {label}" for label, _ in BASELINES), "test acc"]
    rows = []
    for case in cases:
        key = case.info["contender"]
        rows.append([case.info["name"], f"{per_epoch[key]:.3f}",
                     *(common.ratio(per_epoch.get(base), per_epoch[key]) for _, base in BASELINES),
                     f"{accuracy[key]:.2%}" if key in accuracy else "-"])
    common.print_table(title, headers, rows)
    common.write_results(args, "epoch", threads, {
        "hidden": args.hidden, "batch_size": args.batch_size, "samples": samples,
        "epoch_samples": common.EPOCH_SAMPLES,
        "cases": [{**case.record(), "seconds_per_epoch": per_epoch[case.info["contender"]],
                   "test_accuracy": accuracy.get(case.info["contender"])} for case in cases],
        "speedups": {key: {base: per_epoch[base] / per_epoch[key]
                           for _, base in BASELINES if base in per_epoch}
                     for key in per_epoch},
    })


if __name__ == "__main__":
    main()
