"""The ``fcnn`` command: ``fcnn train``, ``fcnn evaluate``, ``fcnn predict`` and ``fcnn search``.

Errors a user can fix (a missing file, a bad setting, no data set) print one
line and exit with status 2, as argparse does for a wrong flag.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from ._core import set_num_threads
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


def _hidden_sizes(text: str) -> tuple[int, ...]:
    """``"256"`` is one hidden layer of 256, ``"256,128"`` two layers."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be layer sizes like 256 or 256,128, got {text!r}") from None
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"layer sizes must be >= 1, got {text!r}")
    return sizes


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
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
    train.add_argument("--momentum", type=float, default=defaults.momentum,
                       help="SGD momentum in [0, 1) (default: %(default)s)")
    train.add_argument("--nesterov", action=argparse.BooleanOptionalAction,
                       default=defaults.nesterov,
                       help="Nesterov momentum (default: %(default)s)")
    train.add_argument("--epochs", type=_positive_int, default=defaults.epochs)
    train.add_argument("--batch-size", type=_positive_int, default=defaults.batch_size)
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--dtype", choices=["float32", "float64"], default=defaults.dtype)
    train.add_argument("--val-size", type=_count, default=0,
                       help="training images held out to watch validation figures; the "
                            "default, 0, trains on all of them")
    train.add_argument("--threads", type=_positive_int, default=None,
                       help="threads for fcnn's C core (default: all cores)")
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

    _search_options(commands.add_parser(
        "search", help="choose settings on the validation set (sequential or grid search)",
        description="The original's sequential search: the learning rate, then the hidden "
                    "size, then the weight decay (then the momentum, if given), each stage "
                    "from the best settings so far, chosen on the validation accuracy of the "
                    "last epoch; --grid trains every combination instead. A stage with one "
                    "value fixes that setting. Writes search.csv, search.json and figures."),
        data_options)
    return parser


def _search_options(search: argparse.ArgumentParser,
                    data_options: Callable[[argparse.ArgumentParser], None]) -> None:
    from .search import ORIGINAL_BASE, ORIGINAL_STAGES

    grids = dict(ORIGINAL_STAGES)
    data_options(search)
    search.add_argument("--lr", type=float, nargs="+", default=list(grids["lr"]), metavar="X",
                        help="initial learning rates (default: %(default)s)")
    search.add_argument("--hidden", type=_hidden_sizes, nargs="+",
                        default=[(size,) for size in grids["hidden"]], metavar="N[,N...]",
                        help="hidden layer sizes, one candidate each, e.g. 256 or 256,128 "
                             "(default: 64 128 256 512 1024); the first is used until its stage")
    search.add_argument("--weight-decay", type=float, nargs="+",
                        default=list(grids["weight_decay"]), metavar="L",
                        help="SGD weight decays lambda, 0 for none (default: %(default)s)")
    search.add_argument("--momentum", type=float, nargs="+", default=None, metavar="M",
                        help="momentums, searched last (default: no momentum stage)")
    search.add_argument("--epochs", type=_positive_int, default=ORIGINAL_BASE.epochs,
                        help="epochs per candidate (default: %(default)s)")
    search.add_argument("--n-jobs", type=int, default=None, metavar="J",
                        help="candidates trained at once; -1 for every core (default: 1, or "
                             "every worker of --backend dask/ray)")
    search.add_argument("--backend", default=None, metavar="NAME",
                        help="joblib backend: loky (default), threading, dask (connects to "
                             "$DASK_SCHEDULER_ADDRESS, else starts a local cluster) or ray")
    search.add_argument("--grid", action="store_true",
                        help="train every combination instead of one setting at a time")
    search.add_argument("--seed", type=int, default=ORIGINAL_BASE.seed,
                        help="seed of the validation split and of every run (default: "
                             "%(default)s)")
    search.add_argument("--val-size", type=_positive_int, default=10_000,
                        help="training images held out for validation (default: %(default)s)")
    search.add_argument("--out", type=Path, default=Path("fcnn-search"),
                        help="folder for search.csv, search.json and the figures "
                             "(default: %(default)s)")
    search.add_argument("--no-progress", action="store_true",
                        help="no line per finished candidate")


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
                             momentum=args.momentum, nesterov=args.nesterov,
                             epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                             dtype=args.dtype)
        if args.threads is not None:
            set_num_threads(args.threads)
        full_train, test_data, class_names = _load_data(args)
        if args.val_size == 0:
            train_data, val_data = full_train, None
        else:
            train_data, val_data = train_val_split(*full_train, val_size=args.val_size,
                                                   seed=args.seed)
        del full_train  # the split made copies: let the original go (47 MB for MNIST)
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


@contextlib.contextmanager
def _backend_session(backend: str | None) -> Iterator[None]:
    """For ``--backend dask``: a Client, unless one is already active."""
    if backend != "dask":
        yield
        return
    try:
        import dask.config
        from distributed import Client, LocalCluster, default_client
    except ImportError:
        raise UsageError("--backend dask needs Dask: pip install fcnn[dask]") from None
    try:
        default_client()
    except ValueError:
        pass
    else:
        yield
        return
    address = dask.config.get("scheduler-address", None)
    if address:
        with Client(address):
            yield
    else:
        with LocalCluster(threads_per_worker=1, host="127.0.0.1", dashboard_address=None) \
                as cluster, Client(cluster):
            yield


def _train_command(params: dict[str, Any], args: argparse.Namespace,
                   searched: Sequence[str]) -> tuple[list[str], list[str]]:
    """The ``fcnn train`` command line for ``params``, and the settings it has no option for."""
    train_defaults = vars(_parser().parse_args(["train"]))
    command = ["fcnn", "train"]
    if args.dataset != train_defaults["dataset"]:
        command += ["--dataset", args.dataset]
    if args.data_dir is not None:
        command += ["--data-dir", str(args.data_dir)]
    if args.no_download:
        command.append("--no-download")
    missing = []
    config_defaults = TrainConfig().to_dict()
    for field in (f.name for f in fields(TrainConfig)):
        value = params[field]
        if field not in train_defaults:
            if value != config_defaults[field]:
                missing.append(f"{field}={value}")
            continue
        if field in searched or field in ("epochs", "seed") or value != train_defaults[field]:
            flag = "--" + field.replace("_", "-")
            if isinstance(value, bool):
                command.append(flag if value else "--no-" + flag[2:])
            else:
                command += [flag, *map(str, value)] if field == "hidden" else [flag, str(value)]
    if args.val_size != train_defaults["val_size"]:
        command += ["--val-size", str(args.val_size)]
    return command, missing


def _search(args: argparse.Namespace) -> None:
    from .search import ORIGINAL_BASE, SearchError, grid_search, sequential_search

    stages: list[tuple[str, list[Any]]] = [
        ("lr", args.lr), ("hidden", args.hidden), ("weight_decay", args.weight_decay)]
    if args.momentum is not None:
        stages.append(("momentum", args.momentum))
    base = replace(ORIGINAL_BASE, hidden=args.hidden[0], seed=args.seed)
    search = grid_search if args.grid else sequential_search
    try:
        # The test images are never looked at: settings are chosen on validation data.
        (images, labels), _, class_names = _load_data(args)
        train_data, val_data = train_val_split(images, labels, val_size=args.val_size,
                                               seed=args.seed)
        with _backend_session(args.backend):
            result = search(train_data, val_data, stages, base, epochs=args.epochs,
                            num_classes=len(class_names), n_jobs=args.n_jobs,
                            backend=args.backend, progress=not args.no_progress)
    except (ValueError, TypeError, ImportError, SearchError) as error:
        raise UsageError(str(error)) from None
    args.out.mkdir(parents=True, exist_ok=True)
    written = [result.to_csv(args.out / "search.csv"), result.to_json(args.out / "search.json")]
    try:
        from .plot import plot_search
    except ImportError:
        print("note: figures need matplotlib: pip install fcnn[plot]", file=sys.stderr)
    else:
        for stage in result.stages:
            records = [record for record in result.stage_records(stage)
                       if record["error"] is None]
            title = "grid search" if args.grid else f"sequential search, stage {stage}"
            slug = stage.replace("#", "-")
            for part, metrics in (("train", ("train_loss", "train_accuracy")),
                                  ("val", ("val_accuracy",))):
                path = args.out / f"search_{slug}_{part}.png"
                plot_search(records, metrics=metrics, title=title).savefig(path, dpi=100)
                written.append(path)

    best = result.best_record
    searched = [field for field, _ in stages]
    chosen = " ".join(f"{field}={_setting_text(best['params'][field])}" for field in searched)
    if not args.grid and args.no_progress:  # otherwise the progress lines said it
        for stage, record in result.stage_best().items():
            print(f"stage {stage}: {record['name']} (val accuracy {record['val_accuracy']:.2%})")
    print(f"best settings: {chosen} (val accuracy {best['val_accuracy']:.2%}, "
          f"val loss {best['val_loss']:.4f})")
    command, missing = _train_command(best["params"], args, searched)
    print(f"train them with: {shlex.join(command)}")
    if missing:
        print(f"note: fcnn train has no option for {', '.join(missing)}; train with "
              f"fcnn.fit(TrainConfig.from_dict(best_params)) from {written[1]}")
    print("wrote " + ", ".join(str(path) for path in written))


def _setting_text(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fcnn`` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    handlers = {"train": _train, "evaluate": _evaluate, "predict": _predict, "search": _search}
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
