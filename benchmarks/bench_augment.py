"""What augmentation and dropout cost: fused epochs of `fcnn train`'s default configuration.

784-1024-10 on full MNIST, batch 64, float32, Nesterov momentum 0.9, weight decay 5e-4
(`fcnn train`'s defaults), each case trained for --epochs epochs in one run, and its worst
epoch kept. After an untimed warm-up epoch, the cases take turns, --repeats rounds of them
(each round in a rotated order, so that no case always runs first or last); reported: the
median over the rounds of each case's worst epoch, its ratio to plain's, and the range of
the per-round ratios. With --interleave, each case keeps one model that trains on from turn
to turn, after one untimed epoch each, and the cases take turns of --epochs epochs: a turn is
a round, and with --epochs 1 the cases' epochs stand side by side, so that a host whose
speed drifts within seconds moves them alike. Cases:

  plain                 no augmentation, no dropout
  affine                fcnn.Augmentation.recommended() without its elastic part
  recommended           fcnn.Augmentation.recommended() (affine + elastic)
  recommended, dropout  the same with dropout 0.2 after the hidden layer

Besides: the share of non-zero pixels in augmented images (the sparse first layer needs
few), and the augmentation kernel alone, fcnn.augment on all 60,000 training images
(microseconds per image, on the given thread count).

    python benchmarks/bench_augment.py                 # 3 rounds of 3 epochs per case
    python benchmarks/bench_augment.py --epochs 5 --repeats 5 --threads 1
    python benchmarks/bench_augment.py --interleave --epochs 1 --repeats 8
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import common
import numpy as np

import fcnn
from fcnn.augmentation import Augmentation
from fcnn.dataloader import DataLoader
from fcnn.training import TrainConfig, build_model, build_optimizer

AFFINE = dataclasses.replace(Augmentation.recommended(), elastic_alpha=0.0, elastic_sigma=0.0)
CASES = {
    "plain": (None, 0.0),
    "affine": (AFFINE, 0.0),
    "recommended": (Augmentation.recommended(), 0.0),
    "recommended, dropout 0.2": (Augmentation.recommended(), 0.2),
}


def training_of(images, labels, augmentation, dropout):
    """A fresh net, optimizer and loader of the default configuration."""
    config = TrainConfig(dropout=dropout, augment=augmentation, seed=0)
    net = build_model(images.shape[1], common.NUM_CLASSES, config)
    optimizer = build_optimizer(net, config)
    loader = DataLoader(
        (images.reshape(-1, 28, 28), labels),
        batch_size=config.batch_size,
        seed=0,
        augment=augmentation,
    )
    return net, optimizer, loader


def epochs_of(training, epochs):
    """Seconds of each of the next `epochs` epochs of fcnn.train on training (net, optimizer,
    loader)."""
    history = fcnn.train(*training, epochs=epochs, progress=False, fused=True)
    return history["epoch_time"]


def main() -> None:
    parser = common.make_parser(__doc__, uses_torch=False)
    parser.add_argument("--epochs", type=common.positive_int, default=3)
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="one model per case, trained on across rounds; a round is one turn of --epochs "
        "epochs per case",
    )
    args = common.parse_args(parser)
    threads = common.set_threads(args.threads)
    mnist = common.load_data(args)
    images, labels = mnist.train_images, mnist.train_labels
    if args.quick:
        images, labels, args.epochs = images[:4096], labels[:4096], 1
    scale = common.EPOCH_SAMPLES / len(labels)

    # Untimed: the first fused epoch of a process calibrates the first layer's cost model;
    # with --interleave, each case's model trains one epoch first.
    epochs_of(training_of(images[:4096], labels[:4096], None, 0.0), 1)
    names = list(CASES)
    kept = {}
    if args.interleave:
        kept = {name: training_of(images, labels, *CASES[name]) for name in names}
        for training in kept.values():
            epochs_of(training, 1)
    results = {name: [] for name in names}  # per round, the case's epoch times
    for round_index in range(args.repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            training = kept.get(name) or training_of(images, labels, *CASES[name])
            epochs = epochs_of(training, args.epochs)
            results[name].append([s * scale for s in epochs])
            print(f"  round {round_index + 1}, {name}: " + ", ".join(f"{s:.3f}" for s in epochs))
    worst = {name: [max(epochs) for epochs in runs] for name, runs in results.items()}
    median_worst = {name: statistics.median(values) for name, values in worst.items()}
    ratios = {
        name: [w / p for w, p in zip(worst[name], worst["plain"], strict=True)] for name in names
    }

    stack = images.reshape(-1, 28, 28)
    density = {"plain": float(np.count_nonzero(stack) / stack.size)}
    kernel = {}
    for name, augmentation in (("affine", AFFINE), ("recommended", Augmentation.recommended())):
        start = time.perf_counter()
        warped = fcnn.augment(stack, augmentation, seed=0)
        kernel[name] = (time.perf_counter() - start) / len(stack) * 1e6
        density[name] = float(np.count_nonzero(warped) / warped.size)

    common.print_table(
        f"fcnn train defaults, 784-1024-10, worst of {args.epochs} epoch(s), median of "
        f"{args.repeats} round(s){', interleaved' if args.interleave else ''}, "
        f"{threads} thread(s)",
        ["case", "worst s/epoch", "vs plain", "per round", "non-zero pixels", "augment us/image"],
        [
            [
                name,
                f"{median_worst[name]:.3f}",
                f"{median_worst[name] / median_worst['plain']:.2f}x",
                f"{min(ratios[name]):.2f}-{max(ratios[name]):.2f}x",
                f"{100 * density.get(name.split(',')[0], density['plain']):.0f}%",
                f"{kernel[name.split(',')[0]]:.1f}" if name.split(",")[0] in kernel else "-",
            ]
            for name in names
        ],
    )
    common.write_results(
        args,
        "augment",
        threads,
        {
            "epochs_per_round": results,
            "median_worst": median_worst,
            "worst_vs_plain": {name: median_worst[name] / median_worst["plain"] for name in names},
            "worst_vs_plain_per_round": ratios,
            "nonzero_share": density,
            "augment_us_per_image": kernel,
            "recommended": dataclasses.asdict(Augmentation.recommended()),
        },
    )


if __name__ == "__main__":
    main()
