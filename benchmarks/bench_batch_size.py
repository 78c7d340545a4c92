"""Time a training epoch of 784-1024-10 against the batch size B (1, 16, 64, 256, 1024).

Contenders: fcnn fused, fcnn's Module API, plain NumPy float32, PyTorch on the
CPU (when installed) and the dense floor (only the matrix products). Small
batches take so many steps that, below batch 64, only the first --samples
images (6,000 by default) are trained on and the time is scaled to 60,000
samples; the table marks those rows as extrapolated. Medians of --repeats runs,
contenders interleaved within a repeat.

Prints seconds per 60,000 samples and microseconds per sample for each (B,
contender); writes benchmarks/results/batch_size.json and a log-log plot of epoch
time against batch size, one line per contender, benchmarks/results/batch_size.png.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_batch_size.py --quick
    python benchmarks/bench_batch_size.py
    python benchmarks/bench_batch_size.py --batch-sizes 32 128 --samples 12000
"""

from __future__ import annotations

import common

ORDER = ("fused", "module", "numpy32", "torch", "floor")
#: Batch sizes below this train on the first --samples images only.
SUBSET_BELOW = 64
QUICK_SMALL_SAMPLES = 256
QUICK_SAMPLES = 2048


def plot(cases: list[common.Case], path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullLocator

    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    names = dict.fromkeys(case.info["name"] for case in cases)
    for name in names:
        points = sorted(
            (case.info["batch_size"], case.info["seconds_per_epoch"])
            for case in cases
            if case.info["name"] == name
        )
        axes.plot(*zip(*points, strict=True), marker="o", label=name)
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    batch_sizes = sorted({case.info["batch_size"] for case in cases})
    axes.set_xticks(batch_sizes, labels=[str(size) for size in batch_sizes])
    axes.xaxis.set_minor_locator(NullLocator())  # log-2 minor ticks would hide the sizes
    # 2, 5, 10, 20, ... rather than 2 x 10^0, and not every minor tick
    plain = FuncFormatter(lambda value, _: f"{value:g}" if f"{value:.0e}"[0] in "125" else "")
    axes.yaxis.set_major_formatter(plain)
    axes.yaxis.set_minor_formatter(plain)
    axes.set_xlabel("batch size")
    axes.set_ylabel(f"seconds per {common.EPOCH_SAMPLES:,} samples")
    axes.set_title(title, fontsize=9)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    print(f"wrote {path}")


def main() -> None:
    parser = common.make_parser(__doc__)
    parser.add_argument(
        "--batch-sizes", type=common.positive_int, nargs="+", default=[1, 16, 64, 256, 1024]
    )
    parser.add_argument("--hidden", type=common.positive_int, default=1024)
    parser.add_argument(
        "--samples",
        type=common.positive_int,
        default=None,
        help=f"images trained on for batch sizes below {SUBSET_BELOW} "
        f"(default 6000; {QUICK_SMALL_SAMPLES} with --quick)",
    )
    args = common.parse_args(parser)
    if args.samples is None:
        args.samples = QUICK_SMALL_SAMPLES if args.quick else 6000
    threads = common.set_threads(args.threads)
    data = common.load_data(args)
    contenders = common.contenders(ORDER, args)
    cases = []
    for batch_size in args.batch_sizes:
        samples = (
            args.samples if batch_size < SUBSET_BELOW else (QUICK_SAMPLES if args.quick else None)
        )
        cases += [
            common.epoch_case(contender, data, args.hidden, batch_size, samples)
            for contender in contenders
        ]
    common.run_cases(cases, args.repeats)

    rows = []
    for case in cases:
        samples = case.info["samples"]
        case.info["seconds_per_epoch"] = common.per_epoch(case.median, samples)
        case.info["extrapolated"] = samples < common.EPOCH_SAMPLES
        case.info["us_per_sample"] = case.median / samples * 1e6
        rows.append(
            [
                case.info["name"],
                case.info["batch_size"],
                f"{samples:,}{' *' if case.info['extrapolated'] else ''}",
                f"{case.info['seconds_per_epoch']:.3f}",
                f"{case.info['us_per_sample']:.2f}",
            ]
        )
    quick = " [QUICK: not a result]" if args.quick else ""
    title = (
        f"784-{args.hidden}-10, {threads} thread(s), median of {args.repeats}{quick}\n"
        f"s per {common.EPOCH_SAMPLES:,}: extrapolated from the samples timed where "
        f"marked *"
    )
    common.print_table(
        title,
        ["contender", "B", "samples timed", f"s per {common.EPOCH_SAMPLES:,}", "us/sample"],
        rows,
    )
    common.write_results(
        args,
        "batch_size",
        threads,
        {
            "hidden": args.hidden,
            "epoch_samples": common.EPOCH_SAMPLES,
            "cases": [case.record() for case in cases],
        },
    )
    plot(
        cases,
        common.output_path(args, "batch_size", ".png"),
        f"one epoch of 784-{args.hidden}-10 on MNIST, {threads} thread(s), median of "
        f"{args.repeats}{quick}\nbatches below {SUBSET_BELOW}: scaled from the first "
        f"{args.samples:,} samples{f', the others from {QUICK_SAMPLES:,}' if args.quick else ''}",
    )


if __name__ == "__main__":
    main()
