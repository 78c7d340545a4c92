"""The ``fcnn`` command: ``fcnn train``, ``evaluate``, ``predict``, ``export`` and ``search``.

Exit status: 0 done; 1 a runtime failure (missing data or model file, an
unwritable output, divergence, a model that does not fit the data), reported
as ``fcnn <command>: error: ...`` without a traceback; 2 a usage error (a bad
flag or setting: argparse's convention); 130 interrupted by Ctrl-C, after
``fcnn train`` saved what it had.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import inspect
import json
import math
import os
import shlex
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from ._checks import check_dropout_rate
from ._cli_startup import INTERRUPTED as _INTERRUPTED
from ._cli_startup import exit_interrupted
from ._core import set_num_threads
from ._io import write_text_atomically
from .augmentation import RECOMMENDED, Augmentation
from .dataloader import DataLoader
from .datasets import (
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    DatasetNotFoundError,
    load_fashion_mnist,
    load_mnist,
    read_idx,
    train_val_split,
)
from .functional import Dropout, Linear
from .nn import Module
from .serialization import load_checkpoint, restore_optimizer, save
from .training import (
    AUGMENTED_CONFIG,
    DivergenceError,
    TrainConfig,
    build_model,
    build_optimizer,
    evaluate,
    predict_proba,
    train,
)

__all__ = ["main"]

_DATASETS = {
    "mnist": (load_mnist, MNIST_CLASSES),
    "fashion-mnist": (load_fashion_mnist, FASHION_MNIST_CLASSES),
}


class UsageError(Exception):
    """A bad flag value or combination; one line, exit status 2 (as argparse does)."""


class CommandError(Exception):
    """A runtime failure (files, data, divergence); the message, exit status 1."""


# ---------------------------------------------------------------------------- the parser


def _integer_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``, one wording for every option."""

    def integer(text: str) -> int:
        # int() raising ValueError gives argparse's "invalid integer value: 'abc'".
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text}")
        return value

    return integer


_positive = _integer_at_least(1)
_non_negative = _integer_at_least(0)


def _architecture(text: str) -> tuple[int, ...]:
    """One candidate of ``fcnn search --hidden``: ``256`` is one hidden layer, ``256x128`` two.

    Candidates are separated by spaces, as ``fcnn train --hidden 256 128`` separates layers.
    """
    if "," in text:
        raise argparse.ArgumentTypeError(
            f"got {text!r}: separate candidates by spaces and the layers of one "
            "candidate by x, e.g. --hidden 256 256x128 (two candidates)"
        )
    try:
        sizes = tuple(int(part) for part in text.split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be layer sizes like 256 or 256x128, got {text!r}"
        ) from None
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"layer sizes must be >= 1, got {text!r}")
    return sizes


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, unless the text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text
            or action.default is argparse.SUPPRESS
            or action.required
            or not action.option_strings
        ):  # positionals and the list of commands
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return f"{text} (default: off)" if action.default is False else f"{text} (default: on)"
        return f"{text} (default: %(default)s)"


def _has_early_stopping() -> bool:
    return (
        "early_stopping" in {field.name for field in fields(TrainConfig)}
        and "early_stopping" in inspect.signature(train).parameters
    )


def _parser() -> argparse.ArgumentParser:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="fcnn",
        formatter_class=_HelpFormatter,
        description="Train and use fully-connected networks on MNIST and Fashion-MNIST.",
        epilog="Exit status: 0 done, 1 runtime error, 2 usage error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"fcnn {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return commands.add_parser(name, formatter_class=_HelpFormatter, **kwargs)

    def data_options(
        sub: argparse.ArgumentParser,
        dataset_default: str | None = "mnist",
        dataset_help: str = "the data set",
    ) -> None:
        sub.add_argument(
            "--dataset", choices=sorted(_DATASETS), default=dataset_default, help=dataset_help
        )
        sub.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help="folder with the IDX files (default: $FCNN_DATA or ~/.cache/fcnn;"
            " downloaded there when missing)",
        )
        sub.add_argument(
            "--no-download", action="store_true", help="fail instead of downloading missing files"
        )

    train_cmd = command(
        "train",
        help="train a network and save it",
        description="Train a network; writes model.npz, history.json and "
        "curves.png (with matplotlib) into --out. Ctrl-C stops "
        "after the current batch and saves the model.",
    )
    data_options(train_cmd)
    train_cmd.add_argument(
        "--hidden",
        type=_positive,
        nargs="+",
        default=list(defaults.hidden),
        metavar="N",
        help=f"hidden layer sizes (default: {' '.join(map(str, defaults.hidden))})",
    )
    train_cmd.add_argument("--lr", type=float, default=defaults.lr, help="initial learning rate")
    # --lr-decay, --dropout and --epochs default to None, "not given": --augment then picks
    # its own.
    train_cmd.add_argument(
        "--lr-decay",
        type=float,
        default=None,
        help=f"schedule factor alpha per stage (default: {defaults.lr_decay:g}; "
        f"{AUGMENTED_CONFIG.lr_decay:g} with --augment)",
    )
    train_cmd.add_argument(
        "--lr-step",
        type=_positive,
        default=defaults.lr_step,
        help="schedule stage length T in steps",
    )
    train_cmd.add_argument(
        "--weight-decay", type=float, default=defaults.weight_decay, help="SGD weight decay lambda"
    )
    train_cmd.add_argument(
        "--momentum", type=float, default=defaults.momentum, help="SGD momentum in [0, 1)"
    )
    train_cmd.add_argument(
        "--nesterov",
        action=argparse.BooleanOptionalAction,
        default=defaults.nesterov,
        help="Nesterov momentum",
    )
    train_cmd.add_argument(
        "--dropout",
        type=float,
        default=None,
        metavar="P",
        help="dropout rate in [0, 1) after every hidden layer's ReLU; 0 turns it off "
        f"(default: {defaults.dropout:g}; {AUGMENTED_CONFIG.dropout:g} with --augment)",
    )
    train_cmd.add_argument(
        "--epochs",
        type=_positive,
        default=None,
        help="epochs to train (with --resume: the total, counting the saved ones; "
        f"default: {defaults.epochs}; {AUGMENTED_CONFIG.epochs} with --augment; with "
        "--resume, the resumed run's)",
    )
    train_cmd.add_argument(
        "--batch-size", type=_positive, default=defaults.batch_size, help="images per SGD step"
    )
    train_cmd.add_argument(
        "--seed",
        type=_non_negative,
        default=defaults.seed,
        help="seed of the initial weights, the shuffling and the split",
    )
    train_cmd.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default=defaults.dtype,
        help="floating-point type of the weights",
    )
    train_cmd.add_argument(
        "--val-size",
        type=_non_negative,
        default=0,
        help="training images held out to watch validation figures; the "
        "default, 0, trains on all of them",
    )
    if _has_early_stopping():
        train_cmd.add_argument(
            "--early-stopping",
            type=_positive,
            default=None,
            metavar="PATIENCE",
            help="stop when the validation accuracy has not improved "
            "for PATIENCE epochs and keep the best epoch's weights; "
            "needs --val-size (default: off)",
        )
    _augmentation_options(train_cmd)
    train_cmd.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="MODEL",
        help="continue the run saved in MODEL (a model.npz of fcnn train) "
        "with its settings, up to --epochs in total (default: a new run)",
    )
    train_cmd.add_argument(
        "--threads",
        type=_positive,
        default=None,
        help="threads for fcnn's C core (default: all cores)",
    )
    train_cmd.add_argument(
        "--out",
        type=Path,
        default=Path("fcnn-run"),
        help="folder for model.npz, history.json and curves.png",
    )
    train_cmd.add_argument(
        "--no-progress", action="store_true", help="no progress bar; the per-epoch lines stay"
    )
    train_cmd.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no progress bar, no per-epoch lines, no report: errors and the final line only",
    )

    evaluate_cmd = command("evaluate", help="report a saved model on the test set")
    evaluate_cmd.add_argument("--model", type=Path, required=True, help="a model.npz")
    data_options(evaluate_cmd, None, "the data set (default: the one the model was trained on)")
    evaluate_cmd.add_argument("--json", action="store_true", help="print JSON instead")

    predict_cmd = command(
        "predict",
        help="print the predicted class of each image",
        description="Print each image's predicted class and its probability. Image files "
        "(PNG, JPEG, BMP, ...; needs Pillow) are made to look like MNIST first: "
        "grayscale, inverted when the background is light, cropped to the ink, "
        "fitted in 20x20 and centred by centre of mass in 28x28. .npy and IDX "
        "files hold images already in the model's format, uint8 0..255.",
    )
    predict_cmd.add_argument("--model", type=Path, required=True, help="a model.npz")
    predict_cmd.add_argument(
        "images",
        type=Path,
        nargs="+",
        metavar="IMAGES",
        help="image files, folders of image files, .npy or IDX files",
    )
    predict_cmd.add_argument(
        "--top-k",
        type=_positive,
        default=1,
        metavar="K",
        help="print the K most probable classes of each image",
    )
    predict_cmd.add_argument(
        "--json", action="store_true", help="print a JSON list, one object per image"
    )

    export_cmd = command(
        "export",
        help="write a saved model as an ONNX file",
        description="Write a model as ONNX (needs onnx: pip install "
        "fcnn[onnx]). Input 'input': float (N, features), pixels "
        "in [0, 1]; outputs 'probabilities' (N, classes) and "
        "'label' (N,).",
    )
    export_cmd.add_argument("--model", type=Path, required=True, help="a model.npz")
    export_cmd.add_argument("--out", type=Path, required=True, help="the .onnx file to write")

    _search_options(
        command(
            "search",
            help="choose settings on the validation set (sequential or grid search)",
            description="The original's sequential search: the learning rate, then the hidden "
            "size, then the weight decay (then the momentum, if given), each stage "
            "from the best settings so far, chosen on the validation accuracy of the "
            "last epoch; --stages runs other stages, those of the library included "
            "(--list-stages), --grid trains every combination instead. A stage with one "
            "value fixes that setting. Writes search.csv, search.json and figures.",
        ),
        data_options,
    )
    return parser


def _search_options(
    search: argparse.ArgumentParser, data_options: Callable[[argparse.ArgumentParser], None]
) -> None:
    from .search import ORIGINAL_BASE, ORIGINAL_STAGES

    grids = dict(ORIGINAL_STAGES)
    data_options(search)
    search.add_argument(
        "--lr",
        type=float,
        nargs="+",
        default=list(grids["lr"]),
        metavar="X",
        help="initial learning rates (default: %(default)s)",
    )
    search.add_argument(
        "--hidden",
        type=_architecture,
        nargs="+",
        default=[(size,) for size in grids["hidden"]],
        metavar="N[xN...]",
        help="hidden layer sizes, one candidate each: 256 is one layer of 256, 256x128 "
        "two layers (default: 64 128 256 512 1024); without --base the first is used "
        "until its stage",
    )
    search.add_argument(
        "--weight-decay",
        type=float,
        nargs="+",
        default=list(grids["weight_decay"]),
        metavar="L",
        help="SGD weight decays lambda, 0 for none (default: %(default)s)",
    )
    search.add_argument(
        "--momentum",
        type=float,
        nargs="+",
        default=None,
        metavar="M",
        help="momentums, searched last (default: no momentum stage)",
    )
    search.add_argument(
        "--stages",
        nargs="+",
        default=None,
        metavar="NAME",
        help="the stages to run, in this order: lr, hidden, weight_decay or momentum (with "
        "the values of those options) or a stage the library defines by name, e.g. further "
        "or further.lr_decay (see --list-stages) (default: lr hidden weight_decay, then "
        "momentum when --momentum is given)",
    )
    search.add_argument(
        "--list-stages",
        action="store_true",
        help="print every stage --stages takes with its values, then exit",
    )
    search.add_argument(
        "--base",
        type=Path,
        default=None,
        metavar="FILE",
        help="start from the settings in FILE: a search.json of fcnn search (its best "
        "settings), a history.json of fcnn train or a JSON object of training settings "
        "(default: the original's, one hidden layer of the first --hidden size)",
    )
    search.add_argument(
        "--epochs",
        type=_positive,
        default=ORIGINAL_BASE.epochs,
        help="epochs per candidate (default: %(default)s)",
    )
    search.add_argument(
        "--n-jobs",
        type=int,
        default=None,
        metavar="J",
        help="candidates trained at once; -1 for every core (default: 1, or "
        "every worker of --backend dask/ray)",
    )
    search.add_argument(
        "--backend",
        default=None,
        metavar="NAME",
        help="joblib backend: loky (default), threading, dask (connects to "
        "$DASK_SCHEDULER_ADDRESS, else starts a local cluster) or ray",
    )
    search.add_argument(
        "--grid",
        action="store_true",
        help="train every combination instead of one setting at a time",
    )
    search.add_argument(
        "--seed",
        type=_non_negative,
        default=None,
        help="seed of the validation split and of every run (default: the --base "
        f"file's, else {ORIGINAL_BASE.seed})",
    )
    search.add_argument(
        "--repeats",
        type=_positive,
        default=1,
        metavar="R",
        help="train each candidate R times, with seeds SEED, SEED+1, ... on the same "
        "split, and compare the means (default: %(default)s)",
    )
    search.add_argument(
        "--val-size",
        type=_positive,
        default=10_000,
        help="training images held out for validation (default: %(default)s)",
    )
    search.add_argument(
        "--out",
        type=Path,
        default=Path("fcnn-search"),
        help="folder for search.csv, search.json and the figures (default: %(default)s)",
    )
    search.add_argument("--no-progress", action="store_true", help="no line per finished candidate")


# ---------------------------------------------------------------------------- data and models


def _load_split(dataset: str, args: argparse.Namespace, split: str | None, progress: bool) -> Any:
    """``(train, test)`` of ``dataset``, or ``(images, labels)`` of one ``split``."""
    loader = _DATASETS[dataset][0]
    if args.data_dir is not None and args.data_dir.exists() and not args.data_dir.is_dir():
        raise CommandError(f"--data-dir {args.data_dir} is a file, not a folder")
    try:
        if split is None:
            return loader(args.data_dir, download=not args.no_download, progress=progress)
        return loader(args.data_dir, download=not args.no_download, progress=progress, split=split)
    except DatasetNotFoundError as error:
        raise CommandError(_not_found_message(str(error))) from None
    except (ValueError, OSError) as error:
        raise CommandError(str(error)) from None


def _not_found_message(message: str) -> str:
    """The data set loader's own message, plus how to point fcnn at the files."""
    if "--data-dir" not in message:
        message += "\nPoint fcnn at the folder with --data-dir DIR or FCNN_DATA=DIR."
    return message


def _load_checkpoint(path: Path):
    try:
        return load_checkpoint(path)
    except FileNotFoundError:
        raise CommandError(f"no model file at {path}") from None
    except IsADirectoryError:
        raise CommandError(
            f"{path} is a folder, not a model file (try {path / 'model.npz'})"
        ) from None
    except (ValueError, OSError) as error:
        raise CommandError(str(error)) from None


def _class_names(metadata: dict[str, Any], dataset: str | None, num_classes: int) -> list[str]:
    """The model's class names: from its metadata, else its data set's, else the indices."""
    names = metadata.get("class_names")
    if isinstance(names, list) and len(names) == num_classes:
        return [str(name) for name in names]
    if dataset in _DATASETS and len(_DATASETS[dataset][1]) == num_classes:
        return list(_DATASETS[dataset][1])
    return [str(index) for index in range(num_classes)]


def _num_inputs(net: Module) -> int:
    return net.linear_layers()[0].num_inputs


def _check_fits(
    net: Module, model_path: Path, images: np.ndarray, labels: np.ndarray, dataset: str
) -> None:
    """A CommandError when the model cannot be evaluated on these images and labels."""
    features = int(np.prod(images.shape[1:]))
    if _num_inputs(net) != features:
        raise CommandError(
            f"{model_path} takes {_num_inputs(net)} inputs per image, but the "
            f"{dataset} images have {features} pixels"
        )
    num_classes = net.linear_layers()[-1].num_outputs
    if labels.size and int(labels.max()) >= num_classes:
        raise CommandError(
            f"{model_path} has {num_classes} classes, but the {dataset} labels "
            f"go up to {int(labels.max())}"
        )


# ---------------------------------------------------------------------------- train

#: Share of the machine's memory a new net (weights, gradients, momentum) may claim.
_MEMORY_SHARE = 0.8


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _check_memory(num_inputs: int, num_classes: int, config: TrainConfig) -> None:
    """A UsageError when the net's arrays could not fit in this machine's memory."""
    sizes = [num_inputs, *config.hidden, num_classes]
    params = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    # Weights, gradients and momentum buffers, plus the activations of one batch (x2 for
    # their gradients).
    needed = np.dtype(config.dtype).itemsize * (3 * params + 2 * config.batch_size * sum(sizes))
    available = _physical_memory()
    if available is not None and needed > _MEMORY_SHARE * available:
        raise UsageError(
            f"--hidden {' '.join(map(str, config.hidden))}: the net would need "
            f"{needed / 2**30:.1f} GiB of memory, more than this machine's "
            f"{available / 2**30:.1f} GiB allows"
        )


def _check_out_folder(folder: Path) -> None:
    """Fails before any training when ``--out`` cannot become a writable folder."""
    if folder.exists() and not folder.is_dir():
        raise CommandError(
            f"--out {folder} is a file; --out names the folder that gets model.npz and history.json"
        )
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise CommandError(f"cannot create --out {folder}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CommandError(f"cannot write to --out {folder}: {existing} is not writable")


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Holds Ctrl-C back while files are written, then raises it (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


class _InterruptHandler:
    """The SIGINT handler while a command runs: raises KeyboardInterrupt, as Python's own
    does, and remembers that it did.

    A KeyboardInterrupt raised where C code clears errors is lost: one raised inside an
    ``isinstance`` check while the command started up once let ``fcnn train`` run to the
    end. ``fcnn.train`` (see ``_StopOnInterrupt``) and :func:`main` also look at
    ``received``, so such a Ctrl-C still stops the command.
    """

    def __init__(self) -> None:
        self.received = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.received = True
        raise KeyboardInterrupt


@contextlib.contextmanager
def _interrupt_handler() -> Iterator[_InterruptHandler | None]:
    """Installs an :class:`_InterruptHandler` for the command and restores the handler before
    (Python's own after fcnn's start-up one); yields None, changing nothing, off the main thread
    or when the caller has a handler of its own or ignores SIGINT."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous not in (
        exit_interrupted,
        signal.default_int_handler,
    ):
        yield None
        return
    handler = _InterruptHandler()
    signal.signal(signal.SIGINT, handler)
    try:
        yield handler
    finally:
        # Past the command, Ctrl-C is Python's usual KeyboardInterrupt again.
        restored = signal.default_int_handler if previous is exit_interrupted else previous
        signal.signal(signal.SIGINT, restored)


class _Run:
    """What ``fcnn train`` has done so far, for the message when it is interrupted."""

    def __init__(self) -> None:
        self.saved_to: Path | None = None


def _write_outputs(
    folder: Path,
    net: Module,
    optimizer: Any,
    metadata: dict[str, Any],
    history_record: dict[str, Any],
    run: _Run,
) -> tuple[Path, Path, str | None]:
    """model.npz and history.json into ``folder``; into a fresh temporary folder if that fails.

    Returns the two paths and, when the rescue folder was used, why ``folder`` failed.
    """

    def write(target: Path) -> tuple[Path, Path]:
        target.mkdir(parents=True, exist_ok=True)
        with _interrupts_deferred():
            model_path = save(net, target / "model.npz", optimizer=optimizer, metadata=metadata)
            run.saved_to = model_path
            history_path = target / "history.json"
            write_text_atomically(history_path, json.dumps(history_record, indent=1))
        return model_path, history_path

    try:
        return (*write(folder), None)
    except OSError as error:
        problem = f"cannot write to {folder} ({error.strerror or error})"
    except ValueError as error:  # fcnn.save refuses NaN or infinite weights
        raise CommandError(f"{error}; nothing saved") from None
    try:
        return (*write(Path(tempfile.mkdtemp(prefix="fcnn-rescue-"))), problem)
    except OSError as error:
        raise CommandError(
            f"{problem}, nor to a temporary folder ({error.strerror or error}); "
            "the model was not saved"
        ) from None


def _write_curves(folder: Path, history: dict[str, Any]) -> str | None:
    """curves.png in ``folder``; a note instead when matplotlib is missing or it fails."""
    if not history.get("epoch"):
        return None
    try:
        with _interrupts_deferred():  # a Ctrl-C inside an import can surface as ImportError
            from .plot import plot_curves
    except ImportError:
        return "curves.png needs matplotlib: pip install fcnn[plot]"
    try:
        with _interrupts_deferred():
            plot_curves(history).savefig(folder / "curves.png", dpi=100)
    except (OSError, ValueError) as error:
        return f"curves.png not written: {error}"
    return None


# --flag, Augmentation field, what it sets
_AUGMENTATION_FLAGS = (
    ("--translate", "translate", "largest shift in pixels, x and y drawn apart"),
    ("--rotate", "rotate", "largest rotation in degrees"),
    ("--scale", "scale", "largest change of size, as a fraction (< 1)"),
    ("--shear", "shear", "largest shear factor"),
    ("--elastic-alpha", "elastic_alpha", "size in pixels of the elastic distortion"),
    ("--elastic-sigma", "elastic_sigma", "smoothness in pixels of the elastic distortion"),
)


def _augmentation_options(sub: argparse.ArgumentParser) -> None:
    group = sub.add_argument_group(
        "augmentation",
        "Warp every training image at random, anew each epoch, reproducibly from --seed. "
        "A strength flag turns augmentation on as --augment does; strengths not given are "
        "the recommended ones with --augment, else 0 (off).",
    )
    recommended = ", ".join(
        f"{flag} {getattr(RECOMMENDED, name):g}" for flag, name, _ in _AUGMENTATION_FLAGS
    )
    # Not dest "augment": that is TrainConfig's field, the Augmentation the flags make.
    group.add_argument(
        "--augment",
        dest="augment_recommended",
        action="store_true",
        help=f"augment with the recommended strengths for MNIST ({recommended})",
    )
    for flag, name, text in _AUGMENTATION_FLAGS:
        group.add_argument(
            flag,
            type=float,
            default=None,
            metavar="X",
            help=f"{text} (default: {getattr(RECOMMENDED, name):g} with --augment, else 0)",
        )


def _augmentation_from_args(args: argparse.Namespace) -> Augmentation | None:
    """The Augmentation the flags ask for, None without any; UsageError naming a bad flag."""
    given = {name: getattr(args, name, None) for _, name, _ in _AUGMENTATION_FLAGS}
    given = {name: value for name, value in given.items() if value is not None}
    recommended = getattr(args, "augment_recommended", False)
    if not recommended and not given:
        return None
    base = RECOMMENDED.to_dict() if recommended else {}
    try:
        return Augmentation(**{**base, **given})
    except (TypeError, ValueError) as error:
        name = str(error).split(" ", 1)[0]
        flag = "--" + name.replace("_", "-")
        raise UsageError(f"{flag} {getattr(args, name)}: {error}") from None


def _unset_defaults(args: argparse.Namespace) -> None:
    """Fills --epochs, --dropout and --lr-decay when not given: ``fcnn train --augment``
    trains the recommended configuration (:data:`fcnn.training.AUGMENTED_CONFIG`), else the
    defaults."""
    recommended = AUGMENTED_CONFIG if getattr(args, "augment_recommended", False) else TrainConfig()
    for name in ("epochs", "dropout", "lr_decay"):
        if getattr(args, name) is None:
            setattr(args, name, getattr(recommended, name))


def _config_from_args(args: argparse.Namespace) -> TrainConfig:
    _unset_defaults(args)
    settings = dict(
        hidden=tuple(args.hidden),
        lr=args.lr,
        lr_decay=args.lr_decay,
        lr_step=args.lr_step,
        weight_decay=args.weight_decay,
        momentum=args.momentum,
        nesterov=args.nesterov,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        dtype=args.dtype,
    )
    if getattr(args, "early_stopping", None) is not None:
        settings["early_stopping"] = args.early_stopping
    try:
        settings["dropout"] = check_dropout_rate(args.dropout, "dropout")
    except ValueError as error:
        raise UsageError(f"--dropout {args.dropout}: {error}") from None
    settings["augment"] = _augmentation_from_args(args)
    config = TrainConfig(**settings)
    # The schedule and the optimiser validate their settings: build them on a 1x1 net,
    # before any data is read. They take the flags' names (initial_lr is --lr).
    try:
        build_optimizer(Module(Linear(1, 1, dtype=config.dtype, rng=0)), config)
    except (ValueError, TypeError) as error:
        raise UsageError(_flag_error(error, args)) from None
    return config


_OPTIMIZER_FLAGS = ("lr", "lr_decay", "lr_step", "weight_decay", "momentum", "nesterov")


def _flag_error(error: Exception, args: argparse.Namespace) -> str:
    """``--flag value: message`` for a constructor's ValueError naming its argument."""
    message = str(error)
    name = message.split(" ", 1)[0]
    name = "lr" if name == "initial_lr" else name
    if name not in _OPTIMIZER_FLAGS:
        return message
    return f"--{name.replace('_', '-')} {getattr(args, name)}: {message}"


def _resumed_config(
    args: argparse.Namespace, parser_defaults: dict[str, Any], metadata: dict[str, Any]
) -> TrainConfig:
    """The saved run's settings, with --epochs; a UsageError for any other flag that differs."""
    try:
        saved = TrainConfig.from_dict(metadata["config"])
    except (KeyError, TypeError, ValueError):
        raise CommandError(
            f"{args.resume} holds no fcnn train settings (metadata['config']); "
            "only a model.npz written by fcnn train can be resumed"
        ) from None
    flags = {
        "hidden": list(saved.hidden),
        "lr": saved.lr,
        "lr_decay": saved.lr_decay,
        "lr_step": saved.lr_step,
        "weight_decay": saved.weight_decay,
        "momentum": saved.momentum,
        "nesterov": saved.nesterov,
        "batch_size": saved.batch_size,
        "seed": saved.seed,
        "dtype": saved.dtype,
        "dropout": saved.dropout,
        "dataset": metadata.get("dataset", "mnist"),
        "val_size": metadata.get("val_size", 0),
    }
    for name, value in flags.items():
        given = getattr(args, name)
        if given != parser_defaults[name] and given != value:
            flag = "--" + name.replace("_", "-")
            raise UsageError(
                f"{flag} {given} differs from the resumed run's {value}; --resume "
                "continues with the saved settings (only --epochs may change)"
            )
    augment = _augmentation_from_args(args)
    if augment is not None and augment != saved.augment:
        raise UsageError(
            f"the augmentation flags ask for {augment}, the resumed run used {saved.augment}; "
            "--resume continues with the saved settings (only --epochs may change)"
        )
    return replace(saved, epochs=saved.epochs if args.epochs is None else args.epochs)


def _train(args: argparse.Namespace, run: _Run) -> int:
    parser_defaults = vars(_parser().parse_args(["train"]))
    if args.resume is not None:
        checkpoint = _load_checkpoint(args.resume)
        metadata = checkpoint.metadata
        config = _resumed_config(args, parser_defaults, metadata)
        args.dataset = metadata.get("dataset", "mnist")
        args.val_size = metadata.get("val_size", 0)
        previous = metadata.get("history") or {}
        done = len(previous.get("epoch", []))
        if done >= config.epochs:
            raise UsageError(
                f"{args.resume} has trained {done} epochs already; give --epochs "
                f"above {done} to continue"
            )
    else:
        checkpoint, previous, done = None, {}, 0
        config = _config_from_args(args)
    if getattr(config, "early_stopping", None) is not None and args.val_size == 0:
        raise UsageError("--early-stopping watches the validation loss: give --val-size too")
    if args.threads is not None:
        cores = os.cpu_count() or 1
        if args.threads > cores:
            # More OpenMP threads than cores only slows every step down (4096 ~ a hang).
            raise UsageError(
                f"--threads {args.threads}: this machine has {cores} cores; give at most {cores}"
            )
        set_num_threads(args.threads)
    _check_out_folder(args.out)
    quiet = args.quiet
    if getattr(args, "augment_recommended", False) and args.dataset != "mnist" and not quiet:
        print(
            "note: --augment's settings were selected on MNIST's digits; on Fashion-MNIST "
            "they lower the test accuracy (86.8% against 90.0% for --epochs 100 without "
            "them, README: Results)",
            file=sys.stderr,
        )
    progress_bar = not (args.quiet or args.no_progress)
    full_train, test_data = _load_split(args.dataset, args, None, progress_bar)
    class_names = list(_DATASETS[args.dataset][1])
    num_inputs = int(np.prod(full_train[0].shape[1:]))
    if args.val_size == 0:
        train_data, val_data = full_train, None
    else:
        try:
            train_data, val_data = train_val_split(
                *full_train, val_size=args.val_size, seed=config.seed
            )
        except ValueError as error:
            raise UsageError(f"--val-size {args.val_size}: {error}") from None
    del full_train  # the split made copies: let the original go (47 MB for MNIST)

    try:
        if checkpoint is None:
            _check_memory(num_inputs, len(class_names), config)
            net = build_model(num_inputs, len(class_names), config)
            optimizer = build_optimizer(net, config)
        else:
            net = checkpoint.net
            _check_fits(net, args.resume, test_data[0], test_data[1], args.dataset)
            optimizer = build_optimizer(net, config)
            restore_optimizer(optimizer, checkpoint)
            # Dropout's step counter is not saved: one step per SGD step, as in the first run,
            # so the resumed run draws new masks rather than the first run's again.
            for layer in net.layers:
                if isinstance(layer, Dropout):
                    layer.step = optimizer.step_count
        loader = DataLoader(
            train_data,
            batch_size=config.batch_size,
            seed=config.seed,
            dtype=config.dtype,
            augment=config.augment,
        )
    except MemoryError:
        raise CommandError(
            f"out of memory building a {num_inputs}-"
            f"{'-'.join(map(str, config.hidden))}-{len(class_names)} net"
        ) from None
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None
    for _ in range(done):  # the shuffling continues where the saved run left it
        loader.epoch_order()
    if previous.get("interrupted"):
        print(
            f"note: {args.resume} was interrupted during epoch {done + 1}; that epoch "
            "starts over from the saved weights",
            file=sys.stderr,
        )

    def epoch_line(epoch: int, history: dict[str, Any]) -> None:
        if not quiet and not progress_bar:
            print(_epoch_line(history, done), flush=True)

    extra = {}
    if getattr(config, "early_stopping", None) is not None:
        extra["early_stopping"] = config.early_stopping
    steps_before = optimizer.step_count
    try:
        history = train(
            net,
            optimizer,
            loader,
            config.epochs - done,
            val_data=val_data,
            test_data=test_data,
            progress=progress_bar,
            on_epoch_end=epoch_line,
            **extra,
        )
    except DivergenceError as error:
        raise CommandError(f"{error}; nothing saved") from None
    except MemoryError:
        raise CommandError(
            "out of memory while training; try a smaller --hidden or --batch-size; nothing saved"
        ) from None
    # The training images (47 MB of MNIST, in the loader) are not needed past here: let them
    # go before matplotlib and the test report allocate, so that the peak stays training's.
    del loader, train_data, val_data
    history = _joined_history(previous, history, done)
    interrupted = bool(history.get("interrupted"))
    if interrupted and optimizer.step_count == steps_before:
        print("fcnn train: interrupted before the first step; nothing saved", file=sys.stderr)
        return _INTERRUPTED

    metadata = {
        "config": config.to_dict(),
        "dataset": args.dataset,
        "history": history,
        "class_names": class_names,
        "val_size": args.val_size,
        "fcnn_version": __version__,
    }
    model_path, history_path, problem = _write_outputs(
        args.out, net, optimizer, metadata, {"config": config.to_dict(), "history": history}, run
    )
    if problem is not None:
        print(
            f"fcnn train: error: {problem}; saved the model to {model_path} instead",
            file=sys.stderr,
        )
        return 1
    if interrupted:
        epochs_done = len(history["epoch"])
        print(
            f"fcnn train: interrupted after {optimizer.step_count} steps ({epochs_done} "
            f"complete epochs); saved the model to {model_path}",
            file=sys.stderr,
        )
        return _INTERRUPTED
    note = _write_curves(args.out, history)
    if note and not quiet:
        print(f"note: {note}", file=sys.stderr)
    result = evaluate(net, *test_data, class_names=class_names)
    if not quiet:
        print(result["report_text"])
    curves = "" if note else f", {args.out / 'curves.png'}"
    why = ""
    if history.get("stop_reason") == "early_stopping":
        why = f" (stopped early, weights of epoch {history.get('best_epoch')})"
    print(
        f"test accuracy {result['accuracy']:.2%}{why}; saved {model_path}, {history_path}{curves}"
    )
    return 0


def _joined_history(previous: dict[str, Any], history: dict[str, Any], done: int) -> dict[str, Any]:
    """The saved run's epochs followed by this run's, numbered on from them."""
    history = dict(history)
    history["epoch"] = [done + epoch for epoch in history.get("epoch", [])]
    if isinstance(history.get("best_epoch"), int):
        history["best_epoch"] += done
    if not previous:
        return history
    joined = {key: value for key, value in history.items() if not isinstance(value, list)}
    for key, values in history.items():
        if isinstance(values, list):
            joined[key] = list(previous.get(key, []))[:done] + values
    return joined


def _epoch_line(history: dict[str, Any], done: int) -> str:
    parts = [f"epoch {history['epoch'][-1] + done}"]
    for key in (
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "test_loss",
        "test_accuracy",
    ):
        if history.get(key):
            value = history[key][-1]
            parts.append(f"{key} {value:.2%}" if key.endswith("accuracy") else f"{key} {value:.4f}")
    parts.append(f"lr {history['lr'][-1]:.3g}")
    parts.append(f"{history['epoch_time'][-1]:.1f}s")
    return "  ".join(parts)


# ---------------------------------------------------------------------------- evaluate


def _evaluate(args: argparse.Namespace, run: _Run) -> int:
    checkpoint = _load_checkpoint(args.model)
    net, metadata = checkpoint.net, checkpoint.metadata
    trained_on = metadata.get("dataset")
    dataset = args.dataset or (trained_on if trained_on in _DATASETS else None)
    if dataset is None:
        dataset = "mnist"
        print(
            f"note: {args.model} does not say which data set it was trained on; evaluating "
            "on mnist (choose with --dataset)",
            file=sys.stderr,
        )
    elif trained_on in _DATASETS and dataset != trained_on:
        print(
            f"warning: {args.model} was trained on {trained_on}, evaluating it on {dataset}",
            file=sys.stderr,
        )
    test_images, test_labels = _load_split(dataset, args, "test", progress=False)
    _check_fits(net, args.model, test_images, test_labels, dataset)
    num_classes = net.linear_layers()[-1].num_outputs
    class_names = _class_names(metadata if dataset == trained_on else {}, dataset, num_classes)
    result = evaluate(net, test_images, test_labels, class_names=class_names)
    if args.json:
        print(
            json.dumps(
                {
                    "model": str(args.model),
                    "dataset": dataset,
                    "loss": result["loss"],
                    "accuracy": result["accuracy"],
                    "confusion_matrix": result["confusion_matrix"].tolist(),
                    "report": result["report"],
                },
                indent=1,
            )
        )
    else:
        print(result["report_text"])
        print(f"{dataset} test accuracy {result['accuracy']:.2%}, loss {result['loss']:.4f}")
    return 0


# ---------------------------------------------------------------------------- predict


def _predict_inputs(
    paths: Sequence[Path], num_inputs: int
) -> Iterator[tuple[list[str], np.ndarray]]:
    """``(names, images (n, features))`` per file named or found in a named folder.

    An image file is one image named by its path; the n images of a .npy or IDX
    file are named ``path[0]`` ... ``path[n-1]``.
    """
    from .images import IMAGE_SUFFIXES

    for path in paths:
        if path.is_dir():
            found = sorted(
                child
                for child in path.iterdir()
                if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES
            )
            if not found:
                raise CommandError(f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            for child in found:
                yield [str(child)], _image_file(child, num_inputs)
        elif not path.is_file():
            raise CommandError(f"no images file at {path}")
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            yield [str(path)], _image_file(path, num_inputs)
        else:
            images = _array_file(path, num_inputs)
            yield [f"{path}[{row}]" for row in range(images.shape[0])], images


def _image_file(path: Path, num_inputs: int) -> np.ndarray:
    from .images import load_image, mnist_preprocess

    side = math.isqrt(num_inputs)
    if side * side != num_inputs:
        raise CommandError(
            f"{path}: the model takes {num_inputs} inputs, not a square image; "
            "give its images as .npy instead"
        )
    try:
        image = mnist_preprocess(load_image(path), size=side, box=max(1, round(side * 20 / 28)))
    except ImportError as error:
        raise CommandError(str(error)) from None
    except (ValueError, OSError) as error:
        raise CommandError(
            f"{path}: {error}" if str(path) not in str(error) else str(error)
        ) from None
    return image.reshape(1, -1)


def _array_file(path: Path, num_inputs: int) -> np.ndarray:
    try:
        if path.suffix.lower() == ".npy":
            images = np.load(path, allow_pickle=False)
        else:
            images = read_idx(path)
    except (ValueError, OSError, EOFError) as error:
        raise CommandError(f"{path}: not a .npy, IDX or image file ({error})") from None
    if images.dtype.kind not in "uif":
        raise CommandError(f"{path}: images must be numbers, got {images.dtype}")
    if (
        images.ndim >= 1
        and images.size == num_inputs
        and images.shape[0] != 1
        and (images.ndim == 1 or images.shape[1:] != (num_inputs,))
    ):
        images = images.reshape(1, -1)  # a single image, e.g. (28, 28)
    if images.ndim < 2 or images.shape[0] == 0 or int(np.prod(images.shape[1:])) != num_inputs:
        raise CommandError(
            f"{path}: the model takes images of {num_inputs} pixels, got an "
            f"array of shape {images.shape}"
        )
    images = images.reshape(images.shape[0], -1)
    if images.dtype.kind == "f" and not np.isfinite(images).all():
        raise CommandError(f"{path}: the images hold NaN or infinite pixels")
    return images


def _predict(args: argparse.Namespace, run: _Run) -> int:
    checkpoint = _load_checkpoint(args.model)
    net = checkpoint.net
    num_classes = net.linear_layers()[-1].num_outputs
    class_names = _class_names(checkpoint.metadata, checkpoint.metadata.get("dataset"), num_classes)
    top_k = min(args.top_k, num_classes)
    records = []
    for names, images in _predict_inputs(args.images, _num_inputs(net)):
        probabilities = predict_proba(net, images)
        ranked = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
        for name, row_probabilities, classes in zip(names, probabilities, ranked, strict=True):
            top = [
                {
                    "class": int(index),
                    "name": class_names[index],
                    "probability": float(row_probabilities[index]),
                }
                for index in classes
            ]
            if args.json:
                records.append({"file": name, "predictions": top})
            else:
                sys.stdout.write(
                    f"{name}\t"
                    + "\t".join(f"{entry['name']} {entry['probability']:.4f}" for entry in top)
                    + "\n"
                )
    if args.json:
        print(json.dumps(records, indent=1))
    return 0


# ---------------------------------------------------------------------------- export


def _export(args: argparse.Namespace, run: _Run) -> int:
    from .onnx_export import export_onnx

    checkpoint = _load_checkpoint(args.model)
    net, metadata = checkpoint.net, checkpoint.metadata
    num_classes = net.linear_layers()[-1].num_outputs
    dataset = metadata.get("dataset")
    extra = {"dataset": dataset} if isinstance(dataset, str) else {}
    try:
        path = export_onnx(
            net, args.out, class_names=_class_names(metadata, dataset, num_classes), metadata=extra
        )
    except ImportError as error:
        raise CommandError(str(error)) from None
    except OSError as error:
        raise CommandError(f"cannot write {args.out} ({error.strerror or error})") from None
    print(
        f"wrote {path}: input 'input' float{np.dtype(net.dtype).itemsize * 8} "
        f"(N, {_num_inputs(net)}) in [0, 1]; outputs 'probabilities' (N, {num_classes}) "
        "and 'label' (N,)"
    )
    return 0


# ---------------------------------------------------------------------------- search


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
        with (
            LocalCluster(threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster,
            Client(cluster),
        ):
            yield


def _train_command(
    params: dict[str, Any], args: argparse.Namespace, searched: Sequence[str]
) -> tuple[list[str], list[str]]:
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
        value = params.get(field, config_defaults[field])
        if field == "augment":
            command += _augmentation_flags(value)
            continue
        if field not in train_defaults:
            if value != config_defaults[field]:
                missing.append(f"{field}={value}")
            continue
        if value is None:
            continue
        default = train_defaults[field]
        default = config_defaults[field] if default is None else default
        if field in searched or field in ("epochs", "seed") or value != default:
            flag = "--" + field.replace("_", "-")
            if isinstance(value, bool):
                command.append(flag if value else "--no-" + flag[2:])
            else:
                command += [flag, *map(str, value)] if field == "hidden" else [flag, str(value)]
    if args.val_size != train_defaults["val_size"]:
        command += ["--val-size", str(args.val_size)]
    return command, missing


def _augmentation_flags(value: Any) -> list[str]:
    """fcnn train's flags for an augmentation (an Augmentation, its dict, or None)."""
    if value is None:
        return []
    augmentation = Augmentation.from_dict(value) if isinstance(value, dict) else value
    if augmentation.is_identity:
        return []
    if augmentation == RECOMMENDED:
        return ["--augment"]
    flags = []
    for flag, name, _ in _AUGMENTATION_FLAGS:
        flags += [flag, f"{getattr(augmentation, name):g}"]
    return flags


#: The stages ``fcnn search`` builds from its own options: name -> the option giving the values.
_OPTION_STAGES = {
    "lr": "--lr",
    "hidden": "--hidden",
    "weight_decay": "--weight-decay",
    "momentum": "--momentum",
}


def _search_stages(args: argparse.Namespace) -> list[tuple[Any, Sequence[Any]]]:
    """The stages ``--stages`` names (by default the original's, from the options)."""
    from .search import STAGE_GROUPS, stage_names, stages_by_name

    names = args.stages
    if names is None:
        names = ["lr", "hidden", "weight_decay"]
        if args.momentum is not None:
            names.append("momentum")
    elif args.momentum is not None and "momentum" not in names:
        raise UsageError("--momentum gives candidates, but --stages does not name momentum")
    stages: list[tuple[Any, Sequence[Any]]] = []
    for name in names:
        if name in _OPTION_STAGES:
            values = getattr(args, name)
            if values is None:
                raise UsageError(f"--stages {name} needs {_OPTION_STAGES[name]} values")
            stages.append((name, values))
        else:
            try:
                stages.extend(stages_by_name([name]))
            except ValueError:
                known = [*_OPTION_STAGES, *STAGE_GROUPS, *stage_names()]
                raise UsageError(
                    f"--stages: unknown stage {name!r}; known: {', '.join(known)} "
                    "(see --list-stages)"
                ) from None
    return stages


def _list_stages(args: argparse.Namespace) -> None:
    from .search import STAGE_GROUPS, format_value, stage_names

    def values_text(field: Any, values: Sequence[Any]) -> str:
        # A linked stage's candidate sets several fields: its parts joined by commas.
        if isinstance(field, tuple):
            return " ".join(",".join(map(format_value, value)) for value in values)
        return " ".join(map(format_value, values))

    print("stages of fcnn search's options (their values as given):")
    for name, option in _OPTION_STAGES.items():
        values = getattr(args, name)
        shown = values_text(name, values) if values is not None else f"none: give {option}"
        print(f"  {name:30} {shown}")
    print("stages the library defines (a group runs its stages in order):")
    for group, stages in STAGE_GROUPS.items():
        print(f"  {group:30} {' '.join(f'{group}.{name}' for name in _stage_labels(stages))}")
    for name, (field, values) in stage_names().items():
        print(f"  {name:30} {values_text(field, values)}")


def _search_base(args: argparse.Namespace) -> TrainConfig:
    """The settings the search starts from: ``--base FILE``'s, or the original's."""
    from .search import ORIGINAL_BASE

    if args.base is None:
        base = replace(ORIGINAL_BASE, hidden=args.hidden[0])
    else:
        try:
            document = json.loads(args.base.read_text(encoding="utf-8"))
        except OSError as error:
            raise CommandError(
                f"cannot read --base {args.base}: {error.strerror or error}"
            ) from None
        except ValueError as error:
            raise UsageError(f"--base {args.base} is not JSON ({error})") from None
        if isinstance(document, dict):
            # search.json holds the best settings, fcnn train's history.json its config.
            document = document.get("best_params", document.get("config", document))
        if not isinstance(document, dict):
            raise UsageError(
                f"--base {args.base} must hold a JSON object of training settings, got "
                f"{type(document).__name__}"
            )
        try:
            base = TrainConfig.from_dict({**ORIGINAL_BASE.to_dict(), **document})
        except (TypeError, ValueError) as error:
            raise UsageError(f"--base {args.base}: {error}") from None
    if args.seed is not None:
        base = replace(base, seed=args.seed)
    return base


def _search(args: argparse.Namespace, run: _Run) -> int:
    from .search import SearchError, grid_search, sequential_search

    if args.list_stages:
        _list_stages(args)
        return 0
    stages = _search_stages(args)
    base = _search_base(args)
    args.seed = base.seed
    search = grid_search if args.grid else sequential_search
    if args.out.exists() and not args.out.is_dir():
        raise CommandError(
            f"--out {args.out} is a file; --out names the folder that gets "
            "search.csv and search.json"
        )
    # The test images are never looked at: settings are chosen on validation data.
    images, labels = _load_split(args.dataset, args, "train", not args.no_progress)
    class_names = _DATASETS[args.dataset][1]
    for hidden in _hidden_candidates(base, stages):
        _check_memory(
            int(np.prod(images.shape[1:])), len(class_names), replace(base, hidden=hidden)
        )
    try:
        train_data, val_data = train_val_split(
            images, labels, val_size=args.val_size, seed=args.seed
        )
        with _backend_session(args.backend):
            result = search(
                train_data,
                val_data,
                stages,
                base,
                epochs=args.epochs,
                num_classes=len(class_names),
                n_jobs=args.n_jobs,
                backend=args.backend,
                progress=not args.no_progress,
                repeats=args.repeats,
            )
    except (ValueError, TypeError, ImportError, SearchError) as error:
        raise UsageError(str(error)) from None
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        written = [result.to_csv(args.out / "search.csv"), result.to_json(args.out / "search.json")]
    except OSError as error:
        raise CommandError(
            f"cannot write to --out {args.out} ({error.strerror or error})"
        ) from None
    try:
        from .plot import plot_search
    except ImportError:
        print("note: figures need matplotlib: pip install fcnn[plot]", file=sys.stderr)
    else:
        for stage in result.stages:
            records = [record for record in result.stage_records(stage) if record["error"] is None]
            title = "grid search" if args.grid else f"sequential search, stage {stage}"
            slug = stage.replace("#", "-")
            for part, metrics in (
                ("train", ("train_loss", "train_accuracy")),
                ("val", ("val_accuracy",)),
            ):
                path = args.out / f"search_{slug}_{part}.png"
                plot_search(records, metrics=metrics, title=title).savefig(path, dpi=100)
                written.append(path)

    best = result.best_record
    searched = list(
        dict.fromkeys(
            name
            for field, _ in stages
            for name in (field if isinstance(field, tuple) else (field,))
        )
    )
    chosen = " ".join(f"{field}={_setting_text(best['params'][field])}" for field in searched)
    if not args.grid and args.no_progress:  # otherwise the progress lines said it
        for stage, record in result.stage_best().items():
            print(f"stage {stage}: {record['name']} (val accuracy {record['val_accuracy']:.2%})")
    print(
        f"best settings: {chosen} (val accuracy {best['val_accuracy']:.2%}, "
        f"val loss {best['val_loss']:.4f})"
    )
    command, missing = _train_command(best["params"], args, searched)
    print(f"train them with: {shlex.join(command)}")
    if missing:
        print(
            f"note: fcnn train has no option for {', '.join(missing)}; train with "
            f"fcnn.fit(TrainConfig.from_dict(best_params)) from {written[1]}"
        )
    print("wrote " + ", ".join(str(path) for path in written))
    return 0


def _setting_text(value: Any) -> str:
    """As candidate names write it: ``256x128`` for layer sizes."""
    return "x".join(map(str, value)) if isinstance(value, list) else str(value)


def _stage_labels(stages: Sequence[tuple[Any, Sequence[Any]]]) -> list[str]:
    return ["+".join(field) if isinstance(field, tuple) else field for field, _ in stages]


def _hidden_candidates(
    base: TrainConfig, stages: Sequence[tuple[Any, Sequence[Any]]]
) -> list[tuple[int, ...]]:
    """Every hidden-layer list the search may train, the base's first."""
    candidates = [tuple(base.hidden)]
    for field, values in stages:
        names = field if isinstance(field, tuple) else (field,)
        if "hidden" in names:
            for value in values:
                hidden = value[names.index("hidden")] if isinstance(field, tuple) else value
                candidates.append((hidden,) if isinstance(hidden, int) else tuple(hidden))
    return list(dict.fromkeys(candidates))


# ---------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fcnn`` command; returns the exit status (see the module doc).

    Bad flags raise ``SystemExit(2)`` from argparse, ``--help`` and ``--version``
    ``SystemExit(0)``; everything else returns its status.
    """
    # From here on Ctrl-C is a KeyboardInterrupt, handled in _main and by fcnn.train.
    with _interrupt_handler() as interrupts:
        return _main(argv, interrupts)


def _main(argv: Sequence[str] | None, interrupts: _InterruptHandler | None) -> int:
    command = "fcnn"
    run = _Run()
    try:
        parser = _parser()
        args = parser.parse_args(argv)
        command = f"fcnn {args.command}"
        handlers = {
            "train": _train,
            "evaluate": _evaluate,
            "predict": _predict,
            "export": _export,
            "search": _search,
        }
        status = handlers[args.command](args, run)
        if interrupts is not None and interrupts.received and status == 0:
            raise KeyboardInterrupt  # raised earlier, and lost in code that clears errors
        return status
    except UsageError as error:
        print(f"{command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except CommandError as error:
        # A data set's not-found message keeps its lines: files, folders, mirrors.
        print(f"{command}: error: {error}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"{command}: error: out of memory", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `fcnn predict ... | head`: the reader left; say nothing more on the closed pipe.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives until exit
        return 1
    except KeyboardInterrupt:
        saved = (
            f"; the model was saved to {run.saved_to}"
            if run.saved_to
            else ("; nothing saved" if command == "fcnn train" else "")
        )
        print(f"{command}: interrupted{saved}", file=sys.stderr)
        return _INTERRUPTED
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM):
            print(f"{command}: error: {error}", file=sys.stderr)
            return 1
        raise


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split("\n"))
