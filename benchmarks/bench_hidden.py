"""Show that an epoch's cost grows linearly in the hidden size H and in the samples N.

Hidden sweep: one epoch of 784-H-10 on MNIST at batch 64 for H in 64 ... 4096,
for fcnn fused, plain NumPy float32 and PyTorch on the CPU (when installed):
seconds per epoch and seconds per epoch per million weights (784*H + H*10);
the latter levels off when the cost is linear in H. Samples sweep: fcnn fused at
H=1024 on the first 7,500, 15,000, 30,000 and 60,000 images: seconds and
microseconds per sample. Each sweep also prints k, fitted by least squares on the
log-log points, in seconds ~ size**k (1 = linear), and the straight line
seconds = a + b * size with its R^2. Medians of --repeats runs, contenders and
sizes interleaved within a repeat.

Writes benchmarks/results/hidden.json.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_hidden.py --quick
    python benchmarks/bench_hidden.py
    python benchmarks/bench_hidden.py --hidden-sizes 256 1024 --sample-counts 30000 60000
"""

from __future__ import annotations

import common

ORDER = ("fused", "numpy32", "torch")
QUICK_HIDDEN_SAMPLES = 1024
QUICK_SAMPLE_COUNTS = [512, 1024, 2048, 4096]


def weights(num_inputs: int, hidden: int) -> int:
    return num_inputs * hidden + hidden * common.NUM_CLASSES


def main() -> None:
    parser = common.make_parser(__doc__)
    parser.add_argument(
        "--hidden-sizes",
        type=common.positive_int,
        nargs="+",
        default=[64, 128, 256, 512, 1024, 2048, 4096],
    )
    parser.add_argument("--batch-size", type=common.positive_int, default=64)
    parser.add_argument(
        "--samples",
        type=common.positive_int,
        default=None,
        help="images per epoch in the hidden sweep, times scaled to "
        f"{common.EPOCH_SAMPLES:,} (default all; {QUICK_HIDDEN_SAMPLES} "
        "with --quick)",
    )
    parser.add_argument(
        "--sample-counts",
        type=common.positive_int,
        nargs="+",
        default=None,
        help="images per epoch in the samples sweep (default 7500 15000 30000 "
        "60000; smaller with --quick)",
    )
    parser.add_argument(
        "--sweep-hidden",
        type=common.positive_int,
        default=1024,
        help="the hidden size of the samples sweep",
    )
    args = common.parse_args(parser)
    if args.samples is None and args.quick:
        args.samples = QUICK_HIDDEN_SAMPLES
    if args.sample_counts is None:
        args.sample_counts = QUICK_SAMPLE_COUNTS if args.quick else [7500, 15000, 30000, 60000]
    threads = common.set_threads(args.threads)
    data = common.load_data(args)
    num_inputs = data.train_images.shape[1]
    hidden_cases = [
        common.epoch_case(contender, data, hidden, args.batch_size, args.samples)
        for hidden in args.hidden_sizes
        for contender in common.contenders(ORDER, args)
    ]
    fused = common.CONTENDERS["fused"]
    sample_cases = [
        common.epoch_case(fused, data, args.sweep_hidden, args.batch_size, count)
        for count in args.sample_counts
    ]
    common.run_cases(hidden_cases + sample_cases, args.repeats)

    quick = " [QUICK: not a result]" if args.quick else ""
    samples = hidden_cases[0].info["samples"]
    scaled = (
        ""
        if samples == common.EPOCH_SAMPLES
        else (f", timed on the first {samples:,} samples and scaled to {common.EPOCH_SAMPLES:,}")
    )
    rows, hidden_growth = [], {}
    for name in dict.fromkeys(case.info["name"] for case in hidden_cases):
        mine = [case for case in hidden_cases if case.info["name"] == name]
        for case in mine:
            hidden = case.info["hidden"]
            case.info["weights"] = weights(num_inputs, hidden)
            case.info["seconds_per_epoch"] = common.per_epoch(case.median, samples)
            case.info["seconds_per_epoch_per_million_weights"] = case.info["seconds_per_epoch"] / (
                case.info["weights"] / 1e6
            )
            rows.append(
                [
                    name,
                    hidden,
                    f"{case.info['weights'] / 1e6:.3f}",
                    f"{case.info['seconds_per_epoch']:.3f}",
                    f"{case.info['seconds_per_epoch_per_million_weights']:.3f}",
                ]
            )
        hidden_growth[mine[0].info["contender"]] = common.growth(
            [case.info["hidden"] for case in mine],
            [case.info["seconds_per_epoch"] for case in mine],
        )
    common.print_table(
        f"hidden sweep: 784-H-10, batch {args.batch_size}, {threads} thread(s), median of "
        f"{args.repeats}{scaled}{quick}",
        ["contender", "H", "M weights", "s/epoch", "s/epoch per M weights"],
        rows,
    )
    for key, fit in hidden_growth.items():
        print(f"{common.CONTENDERS[key].name}: {common.growth_text(fit, 'H', 1024)}")

    rows = []
    for case in sample_cases:
        case.info["us_per_sample"] = case.median / case.info["samples"] * 1e6
        rows.append(
            [
                case.info["name"],
                f"{case.info['samples']:,}",
                f"{case.median:.3f}",
                f"{case.info['us_per_sample']:.2f}",
            ]
        )
    sample_growth = common.growth(
        [case.info["samples"] for case in sample_cases], [case.median for case in sample_cases]
    )
    common.print_table(
        f"samples sweep: 784-{args.sweep_hidden}-10, batch {args.batch_size}, {threads} "
        f"thread(s), median of {args.repeats}{quick}",
        ["contender", "samples", "seconds", "us/sample"],
        rows,
    )
    print(f"{fused.name}: {common.growth_text(sample_growth, 'samples', 10_000)}")
    common.write_results(
        args,
        "hidden",
        threads,
        {
            "batch_size": args.batch_size,
            "epoch_samples": common.EPOCH_SAMPLES,
            "hidden_cases": [case.record() for case in hidden_cases],
            "hidden_growth": hidden_growth,
            "sample_cases": [case.record() for case in sample_cases],
            "sample_growth": sample_growth,
        },
    )


if __name__ == "__main__":
    main()
