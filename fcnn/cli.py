"""The ``fcnn`` command: ``fcnn train``, ``fcnn evaluate`` and ``fcnn predict``.

Errors a user can fix (a missing file, a bad setting, no data set) print one
line and exit with status 2, as argparse does for a wrong flag.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .datasets import (
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    DatasetNotFoundError,
    load_fashion_mnist,
    load_mnist,
    read_idx,
    train_val_split,
)
from .serialization import load, save
from .training import TrainConfig, evaluate, fit, predict

__all__ = ["main"]

_DATASETS = {
    "mnist": (load_mnist, MNIST_CLASSES),
    "fashion-mnist": (load_fashion_mnist, FASHION_MNIST_CLASSES),
}


class UsageError(Exception):
    """A problem the user can fix; reported in one line with exit status 2."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="fcnn", description="Train and use fully-connected networks on MNIST.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--dataset", choices=sorted(_DATASETS), default="mnist")
        sub.add_argument("--data-dir", type=Path, default=None,
                         help="folder with the IDX files (default: $FCNN_DATA or ~/.cache/fcnn;"
                              " downloaded there when missing)")
        sub.add_argument("--no-download", action="store_true",
                         help="fail instead of downloading missing files")

    train = commands.add_parser("train", help="train a network and save it")
    data_options(train)
    train.add_argument("--hidden", type=_positive_int, nargs="+", default=list(defaults.hidden),
                       metavar="N", help="hidden layer sizes (default: %(default)s)")
    train.add_argument("--lr", type=float, default=defaults.lr,
                       help="initial learning rate (default: %(default)s)")
    train.add_argument("--lr-decay", type=float, default=defaults.lr_decay,
                       help="schedule factor alpha per stage (default: %(default)s)")
    train.add_argument("--lr-step", type=_positive_int, default=defaults.lr_step,
                       help="schedule stage length T in steps (default: %(default)s)")
    train.add_argument("--weight-decay", type=float, default=defaults.weight_decay,
                       help="SGD weight decay lambda (default: %(default)s)")
    train.add_argument("--epochs", type=_positive_int, default=defaults.epochs)
    train.add_argument("--batch-size", type=_positive_int, default=defaults.batch_size)
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--dtype", choices=["float32", "float64"], default=defaults.dtype)
    train.add_argument("--val-size", type=_positive_int, default=10_000,
                       help="training images held out for validation (default: %(default)s)")
    train.add_argument("--out", type=Path, default=Path("fcnn-run"),
                       help="folder for model.npz and history.json (default: %(default)s)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")

    evaluate_cmd = commands.add_parser("evaluate", help="report a saved model on the test set")
    evaluate_cmd.add_argument("--model", type=Path, required=True)
    data_options(evaluate_cmd)
    evaluate_cmd.add_argument("--json", action="store_true", help="print JSON instead")

    predict_cmd = commands.add_parser("predict", help="print the predicted class of each image")
    predict_cmd.add_argument("--model", type=Path, required=True)
    predict_cmd.add_argument("images", type=Path, help="an IDX (raw or .gz) or .npy file")
    return parser


def _load_data(args: argparse.Namespace):
    loader, class_names = _DATASETS[args.dataset]
    try:
        train_data, test_data = loader(args.data_dir, download=not args.no_download,
                                       progress=not getattr(args, "no_progress", False))
    except DatasetNotFoundError as error:
        raise UsageError(str(error)) from None
    return train_data, test_data, list(class_names)


def _train(args: argparse.Namespace) -> None:
    try:
        config = TrainConfig(hidden=tuple(args.hidden), lr=args.lr, lr_decay=args.lr_decay,
                             lr_step=args.lr_step, weight_decay=args.weight_decay,
                             epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                             dtype=args.dtype)
        (train_images, train_labels), test_data, class_names = _load_data(args)
        train_data, val_data = train_val_split(train_images, train_labels,
                                               val_size=args.val_size, seed=args.seed)
        net, optimizer, history = fit(config, train_data, val_data=val_data,
                                      test_data=test_data, num_classes=len(class_names),
                                      progress=not args.no_progress)
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None
    args.out.mkdir(parents=True, exist_ok=True)
    metadata = {"config": config.to_dict(), "dataset": args.dataset, "history": history,
                "class_names": class_names}
    model_path = save(net, args.out / "model.npz", optimizer=optimizer, metadata=metadata)
    history_path = args.out / "history.json"
    history_path.write_text(json.dumps({"config": config.to_dict(), "history": history},
                                       indent=1))
    if history.get("interrupted"):
        print(f"interrupted: saved the model after {optimizer.step_count} steps",
              file=sys.stderr)
    result = evaluate(net, *test_data, class_names=class_names)
    print(result["report_text"])
    print(f"test accuracy {result['accuracy']:.2%}; saved {model_path} and {history_path}")


def _evaluate(args: argparse.Namespace) -> None:
    net = _load_model(args.model)
    _, (test_images, test_labels), class_names = _load_data(args)
    result = evaluate(net, test_images, test_labels, class_names=class_names)
    if args.json:
        print(json.dumps({
            "model": str(args.model), "dataset": args.dataset, "loss": result["loss"],
            "accuracy": result["accuracy"],
            "confusion_matrix": result["confusion_matrix"].tolist(),
            "report": result["report"],
        }, indent=1))
    else:
        print(result["report_text"])
        print(f"test accuracy {result['accuracy']:.2%}, loss {result['loss']:.4f}")


def _load_model(path: Path):
    try:
        return load(path)
    except FileNotFoundError:
        raise UsageError(f"no model file at {path}") from None
    except ValueError as error:
        raise UsageError(str(error)) from None


def _predict(args: argparse.Namespace) -> None:
    net = _load_model(args.model)
    if not args.images.is_file():
        raise UsageError(f"no images file at {args.images}")
    try:
        if args.images.suffix == ".npy":
            images = np.load(args.images, allow_pickle=False)
        else:
            images = read_idx(args.images)
        if images.ndim == 2 and images.shape[1] != net.linear_layers()[0].num_inputs:
            images = images[np.newaxis]  # a single image
        expected = net.linear_layers()[0].num_inputs
        if images.ndim < 2 or int(np.prod(images.shape[1:])) != expected:
            raise ValueError(
                f"{args.images}: images must have {expected} pixels each, got shape "
                f"{images.shape}")
        predictions = predict(net, images)
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None
    sys.stdout.write("".join(f"{label}\n" for label in predictions))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fcnn`` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    handlers = {"train": _train, "evaluate": _evaluate, "predict": _predict}
    try:
        handlers[args.command](args)
    except UsageError as error:
        # One line per problem, as argparse reports a bad flag.
        message = str(error).replace("\n", " ")
        print(f"fcnn {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fcnn: interrupted", file=sys.stderr)
        return 130
    return 0
