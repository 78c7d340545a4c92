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
    python benchmarks/bench_epoch.py --epochs 30      # the defaults table over 30 epochs

Then three more tables. "fcnn train defaults": fcnn.fit with TrainConfig's defaults
(Nesterov 0.9, weight decay 5e-4, the exponential schedule) for --epochs epochs on MNIST,
Fashion-MNIST (when installed: apt-get install dataset-fashion-mnist, or --fashion-dir) and
dense random uint8 images, every epoch timed and the worst one reported, beside PyTorch with
the same optimizer and the dense floor of the same data. "threads": fcnn fused plain SGD on
1 thread and on the run's threads, and the speed-up. The CPU model, its flags and the library
versions are written to the JSON with every table.
"""

from __future__ import annotations

import time
from pathlib import Path

import common
import numpy as np

import fcnn
from fcnn.datasets import load_fashion_mnist
from fcnn.training import TrainConfig, fit

QUICK_SAMPLES = 2048
ORDER = ("fused", "module", "numpy_backend", "numpy32", "original", "torch", "floor")
BASELINES = (
    ("NumPy f32", "numpy32"),
    ("dense floor", "floor"),
    ("PyTorch", "torch"),
    ("original", "original"),
)


def main() -> None:
    parser = common.make_parser(__doc__)
    parser.add_argument("--hidden", type=common.positive_int, default=1024)
    parser.add_argument("--batch-size", type=common.positive_int, default=64)
    parser.add_argument(
        "--samples",
        type=common.positive_int,
        default=None,
        help=f"train on the first N images only, times scaled to "
        f"{common.EPOCH_SAMPLES:,} (default all; {QUICK_SAMPLES} with "
        f"--quick)",
    )
    parser.add_argument(
        "--epochs",
        type=common.positive_int,
        default=None,
        help="epochs of the defaults table (default 5; 2 with --quick)",
    )
    parser.add_argument(
        "--fashion-dir",
        type=Path,
        default=Path("/usr/share/datasets"),
        help="folder holding Fashion-MNIST (default /usr/share/datasets)",
    )
    args = common.parse_args(parser)
    if args.epochs is None:
        args.epochs = 2 if args.quick else 5
    if args.samples is None and args.quick:
        args.samples = QUICK_SAMPLES
    threads = common.set_threads(args.threads)
    data = common.load_data(args)
    cases = [
        common.epoch_case(contender, data, args.hidden, args.batch_size, args.samples)
        for contender in common.contenders(ORDER, args)
    ]
    common.run_cases(cases, args.repeats)

    samples = cases[0].info["samples"]
    per_epoch = {case.info["contender"]: common.per_epoch(case.median, samples) for case in cases}
    accuracy = {}
    for case in cases:
        params = case.runs[-1].params
        if params is not None:
            predicted = common.numpy_predict(params, data.test_images)
            accuracy[case.info["contender"]] = float((predicted == data.test_labels).mean())
    scaled = (
        ""
        if samples == common.EPOCH_SAMPLES
        else (f", timed on the first {samples:,} samples and scaled to {common.EPOCH_SAMPLES:,}")
    )
    title = (
        f"one epoch of 784-{args.hidden}-10, batch {args.batch_size}, {threads} thread(s), "
        f"median of {args.repeats}{scaled}{' [QUICK: not a result]' if args.quick else ''}\n"
        "ratios: x faster than (baseline seconds / contender seconds; below 1 = slower)"
    )
    headers = ["contender", "s/epoch", *(f"vs {label}" for label, _ in BASELINES), "test acc"]
    rows = []
    for case in cases:
        key = case.info["contender"]
        rows.append(
            [
                case.info["name"],
                f"{per_epoch[key]:.3f}",
                *(common.ratio(per_epoch.get(base), per_epoch[key]) for _, base in BASELINES),
                f"{accuracy[key]:.2%}" if key in accuracy else "-",
            ]
        )
    common.print_table(title, headers, rows)
    defaults = defaults_table(args, data, threads)
    common.write_results(
        args,
        "epoch",
        threads,
        {
            "cpu_flags": cpu_flags(),
            "defaults": defaults,
            "hidden": args.hidden,
            "batch_size": args.batch_size,
            "samples": samples,
            "epoch_samples": common.EPOCH_SAMPLES,
            "cases": [
                {
                    **case.record(),
                    "seconds_per_epoch": per_epoch[case.info["contender"]],
                    "test_accuracy": accuracy.get(case.info["contender"]),
                }
                for case in cases
            ],
            "speedups": {
                key: {
                    base: per_epoch[base] / per_epoch[key]
                    for _, base in BASELINES
                    if base in per_epoch
                }
                for key in per_epoch
            },
        },
    )


def cpu_flags() -> list[str]:
    """The SIMD flags of the CPU (what the kernels' run-time dispatch picks from)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return sorted(
                    flag
                    for flag in line.split(":", 1)[1].split()
                    if flag.startswith(("avx", "fma", "sse4", "f16c"))
                )
    except OSError:
        pass
    return []


def datasets(args, data: common.MNIST) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MNIST, Fashion-MNIST when found, and dense random uint8 images of MNIST's size."""
    count = args.samples or len(data.train_labels)
    found = {"MNIST": (data.train_images[:count], data.train_labels[:count])}
    try:
        (images, labels), _ = load_fashion_mnist(args.fashion_dir, download=False, progress=False)
        found["Fashion-MNIST"] = (images.reshape(len(images), -1)[:count], labels[:count])
    except (OSError, ValueError) as error:
        print(f"Fashion-MNIST left out: {error}")
    rng = np.random.default_rng(0)
    found["dense random"] = (
        rng.integers(1, 256, (count, 784), dtype=np.uint8),
        rng.integers(0, 10, count).astype(np.uint8),
    )
    return found


def torch_default_epochs(
    images: np.ndarray, labels: np.ndarray, epochs: int, config: TrainConfig
) -> list[float]:
    """PyTorch with the same optimizer (SGD, Nesterov momentum, weight decay, the staircase
    schedule) and batch size; seconds of each epoch."""
    torch = common.torch
    nn = torch.nn
    model = nn.Sequential(
        nn.Linear(784, config.hidden[0]), nn.ReLU(), nn.Linear(config.hidden[0], common.NUM_CLASSES)
    )
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
    )
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, config.lr_step, config.lr_decay)
    image_tensor = torch.from_numpy(images)
    label_tensor = torch.from_numpy(labels.astype(np.int64))
    generator = torch.Generator().manual_seed(0)
    times = []
    for _ in range(epochs):
        started = time.perf_counter()
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(labels), config.batch_size):
            index = order[start : start + config.batch_size]
            x = image_tensor[index].to(torch.float32).div_(255)
            optimizer.zero_grad(set_to_none=True)
            criterion(model(x), label_tensor[index]).backward()
            optimizer.step()
            schedule.step()
        times.append(time.perf_counter() - started)
    return times


def defaults_table(args, data: common.MNIST, threads: int) -> dict:
    """The `fcnn train` defaults over several epochs per data set, and the threads table."""
    config = TrainConfig(epochs=args.epochs)
    floor = common.dense_floor_epoch(
        data.train_images, data.train_labels, config.hidden[0], config.batch_size
    )
    floor_seconds = common.per_epoch(floor.seconds, len(data.train_labels))
    results, rows = {}, []
    for name, (images, labels) in datasets(args, data).items():
        scale = common.EPOCH_SAMPLES / len(labels)
        _, _, history = fit(config, (images, labels), progress=False)
        fcnn_times = [seconds * scale for seconds in history["epoch_time"]]
        torch_times = None
        if common.use_torch(args):
            torch_times = [
                seconds * scale
                for seconds in torch_default_epochs(images, labels, args.epochs, config)
            ]
        worst = max(fcnn_times)
        results[name] = {
            "nonzero_share": float((images[:2000] != 0).mean()),
            "fcnn_epoch_seconds": fcnn_times,
            "torch_epoch_seconds": torch_times,
            "dense_floor_seconds": floor_seconds,
        }
        rows.append(
            [
                name,
                f"{(images[:2000] != 0).mean():.0%}",
                f"{fcnn_times[0]:.3f}",
                f"{worst:.3f}",
                f"{worst / fcnn_times[0]:.2f}",
                "-" if torch_times is None else f"{max(torch_times):.3f}",
                "-" if torch_times is None else f"{min(torch_times) / worst:.2f}x",
                f"{floor_seconds:.3f}",
                f"{worst / floor_seconds:.2f}",
            ]
        )
        print(
            f"  defaults on {name}: fcnn {fcnn_times}, torch {torch_times}",
            file=common.sys.stderr,
            flush=True,
        )
    common.print_table(
        f"fcnn train defaults (Nesterov {config.momentum}, weight decay {config.weight_decay}, "
        f"batch {config.batch_size}, 784-{config.hidden[0]}-10), {args.epochs} epochs, "
        f"{threads} thread(s), s/epoch",
        [
            "data",
            "non-zero",
            "fcnn 1st",
            "fcnn worst",
            "worst/1st",
            "torch worst",
            "fcnn worst vs torch best",
            "dense floor",
            "worst/floor",
        ],
        rows,
    )

    # threads: the fused plain-SGD epoch on 1 thread against the run's count
    per_threads = {}
    for count in sorted({1, threads}):
        fcnn.set_num_threads(count)
        case = common.epoch_case(
            common.CONTENDERS["fused"], data, config.hidden[0], config.batch_size, args.samples
        )
        common.run_cases([case], args.repeats)
        per_threads[count] = common.per_epoch(case.median, case.info["samples"])
    fcnn.set_num_threads(threads)
    common.print_table(
        "fcnn fused, plain SGD, by thread count (median s/epoch)",
        ["threads", "s/epoch", "speed-up over 1 thread"],
        [
            [count, f"{seconds:.3f}", f"{per_threads[1] / seconds:.2f}x"]
            for count, seconds in per_threads.items()
        ],
    )
    return {
        "config": config.to_dict(),
        "data": results,
        "fused_by_threads": {str(count): seconds for count, seconds in per_threads.items()},
    }


if __name__ == "__main__":
    main()
