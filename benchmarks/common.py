"""What every benchmark script shares: flags, threads, MNIST, the contenders, timing, JSON.

A contender is one way of training 784-H-10 for one epoch (SGD, lr 0.1, no momentum, no
weight decay, float32 unless stated). Each starts from the same initial weights
(fcnn's ``Linear(784, H, rng=0)`` and ``Linear(H, 10, rng=1)``: N(0, 2 / fan_in),
zero biases), times only its own training loop (shuffling and batch conversion
included, building the net excluded) and returns a :class:`Run`.

Not a script: the ``bench_*.py`` files beside it import it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import threadpoolctl

# fcnn before torch: both link an OpenMP runtime called libgomp.so.1, and the dynamic
# loader keeps whichever comes first, so fcnn runs on the system's, as it does without torch.
import fcnn
from fcnn import _core
from fcnn.dataloader import DataLoader
from fcnn.datasets import load_mnist
from fcnn.functional import CrossEntropyLoss, Linear, ReLU, Softmax
from fcnn.nn import Module
from fcnn.optim import SGD

try:
    import torch
except ImportError:  # PyTorch is an optional contender, never a dependency of fcnn
    torch = None

RESULTS_DIR = Path(__file__).resolve().parent / "results"
LR = 0.1
NUM_CLASSES = 10
#: Seconds are reported per this many samples (one MNIST training epoch).
EPOCH_SAMPLES = 60_000


# ----------------------------------------------------------------------------
# flags and threads


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def make_parser(doc: str, uses_torch: bool = True) -> argparse.ArgumentParser:
    """The flags every script has; ``doc`` is the script's docstring (its help text)."""
    summary, _, details = doc.partition("\n")
    parser = argparse.ArgumentParser(
        description=summary, epilog=details, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short smoke run (few samples, 1 repeat): checks the script, "
        "its numbers are not results",
    )
    parser.add_argument(
        "--repeats",
        type=positive_int,
        default=None,
        help="runs per case, the median is reported (default 3; 1 with --quick)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="threads for every contender: fcnn.set_num_threads, "
        "torch.set_num_threads and threadpoolctl's limit on every BLAS "
        "and OpenMP pool (default fcnn.get_num_threads())",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder holding the MNIST IDX files (default $FCNN_DATA, else ~/.cache/fcnn)",
    )
    parser.add_argument("--download", action="store_true", help="download MNIST if missing")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the JSON file (default benchmarks/results/<name>.json, "
        "<name>-quick.json with --quick)",
    )
    if uses_torch:
        parser.add_argument(
            "--no-torch", action="store_true", help="leave PyTorch out even when it is installed"
        )
    return parser


def parse_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
) -> argparse.Namespace:
    """Parses the flags and fills the defaults that depend on ``--quick``."""
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    return args


def use_torch(args: argparse.Namespace) -> bool:
    return torch is not None and not getattr(args, "no_torch", False)


def set_threads(threads: int | None) -> int:
    """Gives every library in the process the same thread count; returns it.

    fcnn's OpenMP team and BLAS, NumPy's own OpenBLAS (a second copy, 64-bit
    indices) and PyTorch's pool would otherwise each pick their own.
    """
    count = fcnn.get_num_threads() if threads is None else threads
    # Kept in force until the process ends, on purpose: no context to restore.
    threadpoolctl.threadpool_limits(limits=count)
    fcnn.set_num_threads(count)
    if torch is not None:
        torch.set_num_threads(count)
    return count


def machine_info(threads: int) -> dict[str, Any]:
    """What the numbers depend on: CPU, thread settings, library versions and pools."""
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    pools = [
        {
            **{
                key: pool.get(key)
                for key in (
                    "user_api",
                    "internal_api",
                    "prefix",
                    "version",
                    "num_threads",
                    "threading_layer",
                    "architecture",
                )
            },
            "file": Path(pool["filepath"]).name,
        }  # NumPy's and fcnn's OpenBLAS share a prefix
        for pool in threadpoolctl.threadpool_info()
    ]
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "threads": threads,
        "fcnn_num_threads": fcnn.get_num_threads(),
        "torch_num_threads": torch.get_num_threads() if torch is not None else None,
        "env": {
            name: os.environ.get(name)
            for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        },
        "python": platform.python_version(),
        "fcnn": fcnn.__version__,
        "numpy": np.__version__,
        "threadpoolctl": threadpoolctl.__version__,
        "torch": torch.__version__ if torch is not None else None,
        "threadpools": pools,
    }


# ----------------------------------------------------------------------------
# data


@dataclass
class MNIST:
    """uint8 images flattened to (N, 784) and uint8 labels (N,)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def load_data(args: argparse.Namespace) -> MNIST:
    (train_images, train_labels), (test_images, test_labels) = load_mnist(
        args.data_dir, download=args.download, progress=False
    )
    return MNIST(
        train_images.reshape(len(train_images), -1),
        train_labels,
        test_images.reshape(len(test_images), -1),
        test_labels,
    )


# ----------------------------------------------------------------------------
# the contenders


@dataclass
class Run:
    """One timed run: its seconds, the trained (w1, b1, w2, b2) as NumPy arrays when there
    are any, and anything else a script wants recorded."""

    seconds: float
    params: tuple[np.ndarray, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def build_net(num_inputs: int, hidden: int, dtype: Any = np.float32) -> Module:
    """784-H-10 as the original project built it; every contender starts from its weights."""
    return Module(
        Linear(num_inputs, hidden, dtype=dtype, rng=0),
        ReLU(),
        Linear(hidden, NUM_CLASSES, dtype=dtype, rng=1),
        Softmax(),
    )


def net_params(net: Module) -> tuple[np.ndarray, ...]:
    first, second = net.linear_layers()
    return first.weight, first.bias, second.weight, second.bias


def initial_params(num_inputs: int, hidden: int, dtype: Any) -> tuple[np.ndarray, ...]:
    return tuple(param.copy() for param in net_params(build_net(num_inputs, hidden, dtype)))


def fcnn_fused_epoch(images: np.ndarray, labels: np.ndarray, hidden: int, batch_size: int) -> Run:
    """``fcnn.train(..., fused=True)``: the whole epoch in C."""
    net = build_net(images.shape[1], hidden)
    optimizer = SGD(net, lr=LR, lr_scheduler=None)
    loader = DataLoader((images, labels), batch_size=batch_size, seed=0)
    history = fcnn.train(net, optimizer, loader, epochs=1, progress=False, fused=True)
    return Run(history["epoch_time"][0], net_params(net))


def fcnn_module_epoch(
    images: np.ndarray, labels: np.ndarray, hidden: int, batch_size: int, backend: str = "c"
) -> Run:
    """The original project's loop on fcnn's Module API, on the given backend."""
    fcnn.set_backend(backend)
    try:
        net = build_net(images.shape[1], hidden)
        criterion = CrossEntropyLoss(net)
        optimizer = SGD(net, lr=LR, lr_scheduler=None)
        loader = DataLoader((images, labels), batch_size=batch_size, seed=0)
        started = time.perf_counter()
        for x, y in loader:
            criterion(net(x), y).backward()
            optimizer.step()
        seconds = time.perf_counter() - started
    finally:
        fcnn.set_backend("c")
    return Run(seconds, net_params(net))


def fcnn_numpy_backend_epoch(
    images: np.ndarray, labels: np.ndarray, hidden: int, batch_size: int
) -> Run:
    return fcnn_module_epoch(images, labels, hidden, batch_size, backend="numpy")


def numpy_epoch(
    images: np.ndarray, labels: np.ndarray, hidden: int, batch_size: int, dtype: Any = np.float32
) -> Run:
    """Hand-written NumPy: one ``@`` per product, temporaries reused, updates in place."""
    w1, b1, w2, b2 = initial_params(images.shape[1], hidden, dtype)
    lr = np.dtype(dtype).type(LR)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    order = rng.permutation(len(labels))
    for start in range(0, len(labels), batch_size):
        index = order[start : start + batch_size]
        x = images[index].astype(dtype)
        x /= 255
        y = labels[index]
        active = x @ w1
        active += b1
        np.maximum(active, 0, out=active)
        grad = active @ w2
        grad += b2
        grad -= grad.max(axis=1, keepdims=True)
        np.exp(grad, out=grad)
        grad /= grad.sum(axis=1, keepdims=True)
        grad[np.arange(len(y)), y] -= 1
        grad /= len(y)
        dw2, db2 = active.T @ grad, grad.sum(axis=0)
        dactive = grad @ w2.T
        dactive *= active > 0  # ReLU's gradient: after the in-place max, > 0 where it was
        dw1, db1 = x.T @ dactive, dactive.sum(axis=0)
        for param, gradient in ((w1, dw1), (b1, db1), (w2, dw2), (b2, db2)):
            gradient *= lr
            param -= gradient
    return Run(time.perf_counter() - started, (w1, b1, w2, b2))


def original_epoch(images: np.ndarray, labels: np.ndarray, hidden: int, batch_size: int) -> Run:
    """The plain NumPy loop in float64, the dtype the original project computed in."""
    return numpy_epoch(images, labels, hidden, batch_size, np.float64)


def torch_epoch(images: np.ndarray, labels: np.ndarray, hidden: int, batch_size: int) -> Run:
    """PyTorch on the CPU, written as its tutorials do, float32, fcnn's initial weights."""
    nn = torch.nn
    w1, b1, w2, b2 = initial_params(images.shape[1], hidden, np.float32)
    model = nn.Sequential(
        nn.Linear(images.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, NUM_CLASSES)
    )
    with torch.no_grad():  # PyTorch keeps (out, in): the transpose of fcnn's weights
        for layer, weight, bias in ((model[0], w1, b1), (model[2], w2, b2)):
            layer.weight.copy_(torch.from_numpy(weight.T))
            layer.bias.copy_(torch.from_numpy(bias))
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    image_tensor = torch.from_numpy(images)
    label_tensor = torch.from_numpy(labels.astype(np.int64))
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    order = torch.randperm(len(labels), generator=generator)
    for start in range(0, len(labels), batch_size):
        index = order[start : start + batch_size]
        x = image_tensor[index].to(torch.float32).div_(255)
        optimizer.zero_grad(set_to_none=True)
        criterion(model(x), label_tensor[index]).backward()
        optimizer.step()
    seconds = time.perf_counter() - started
    params = (
        model[0].weight.detach().numpy().T,
        model[0].bias.detach().numpy(),
        model[2].weight.detach().numpy().T,
        model[2].bias.detach().numpy(),
    )
    return Run(seconds, tuple(param.copy() for param in params))


def dense_floor_epoch(images: np.ndarray, labels: np.ndarray, hidden: int, batch_size: int) -> Run:
    """Only the four dense products of each step, through fcnn's BLAS kernels.

    No shuffling, conversion, activation, loss or update: what is left is the cost
    that no implementation doing dense products can avoid. Inputs are preallocated;
    the kernels allocate their outputs, as they do in the Module API.
    """
    num_inputs = images.shape[1]
    rows = min(batch_size, len(labels))
    w1, b1, w2, b2 = initial_params(num_inputs, hidden, np.float32)
    x = images[:rows].astype(np.float32) / np.float32(255)
    active = np.maximum(_core.linear_forward(x, w1, b1), 0)
    rng = np.random.default_rng(0)
    # Gradients of ordinary size: subnormal values would slow some BLAS paths down.
    dlogits = (rng.standard_normal((rows, NUM_CLASSES)) / 100).astype(np.float32)
    dactive = (rng.standard_normal((rows, hidden)) / 100).astype(np.float32)
    started = time.perf_counter()
    for start in range(0, len(labels), batch_size):
        count = min(batch_size, len(labels) - start)  # the last batch may be smaller
        batch, hidden_batch = x[:count], active[:count]
        _core.linear_forward(batch, w1, b1)
        _core.linear_forward(hidden_batch, w2, b2)
        _core.linear_backward(dlogits[:count], hidden_batch, w2)
        _core.linear_backward(dactive[:count], batch, w1, compute_dx=False)
    return Run(time.perf_counter() - started)


@dataclass(frozen=True)
class Contender:
    key: str
    name: str
    epoch: Callable[[np.ndarray, np.ndarray, int, int], Run]
    needs_torch: bool = False


CONTENDERS = {
    contender.key: contender
    for contender in (
        Contender("fused", "fcnn fused", fcnn_fused_epoch),
        Contender("module", "fcnn Module API", fcnn_module_epoch),
        Contender("numpy_backend", "fcnn NumPy backend", fcnn_numpy_backend_epoch),
        Contender("numpy32", "NumPy float32", numpy_epoch),
        Contender("original", "original (NumPy float64)", original_epoch),
        Contender("torch", "PyTorch CPU", torch_epoch, needs_torch=True),
        Contender("floor", "dense floor", dense_floor_epoch),
    )
}


def contenders(keys: Sequence[str], args: argparse.Namespace) -> list[Contender]:
    """The named contenders, PyTorch left out when it is not installed or not wanted."""
    chosen = [CONTENDERS[key] for key in keys]
    return [c for c in chosen if not c.needs_torch or use_torch(args)]


def numpy_predict(
    params: tuple[np.ndarray, ...], images: np.ndarray, batch_size: int = 1000
) -> np.ndarray:
    """Predicted classes of uint8 images by a float32 NumPy forward pass, batch by batch."""
    w1, b1, w2, b2 = (np.asarray(param, np.float32) for param in params)
    predictions = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].astype(np.float32)
        x /= 255
        active = x @ w1
        active += b1
        np.maximum(active, 0, out=active)
        logits = active @ w2
        logits += b2
        predictions.append(logits.argmax(axis=1))
    return np.concatenate(predictions)


# ----------------------------------------------------------------------------
# timing


@dataclass
class Case:
    """One thing to time: ``run()`` is timed, ``warm_up()`` runs once, untimed, first."""

    label: str
    run: Callable[[], Run]
    warm_up: Callable[[], object] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)

    @property
    def seconds(self) -> list[float]:
        return [run.seconds for run in self.runs]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def record(self) -> dict[str, Any]:
        return {**self.info, "seconds": self.seconds, "median_seconds": self.median}


def epoch_case(
    contender: Contender, data: MNIST, hidden: int, batch_size: int, samples: int | None = None
) -> Case:
    """An epoch of ``contender`` on the first ``samples`` training images (all by default)."""
    samples = len(data.train_labels) if samples is None else min(samples, len(data.train_labels))
    images, labels = data.train_images[:samples], data.train_labels[:samples]
    # A few batches first: thread pools, lazy initialisation and page faults of the weights.
    warm = min(samples, max(4 * batch_size, 512))
    return Case(
        label=f"{contender.name}, H={hidden}, B={batch_size}, {samples} samples",
        run=lambda: contender.epoch(images, labels, hidden, batch_size),
        warm_up=lambda: contender.epoch(images[:warm], labels[:warm], hidden, batch_size),
        info={
            "contender": contender.key,
            "name": contender.name,
            "hidden": hidden,
            "batch_size": batch_size,
            "samples": samples,
            "steps": -(-samples // batch_size),
        },
    )


def run_cases(cases: Sequence[Case], repeats: int) -> None:
    """Runs every case ``repeats`` times into ``case.runs``, cases interleaved within a
    repeat so that a drift in the machine's load hits all of them alike."""
    for case in cases:
        if case.warm_up is not None:
            case.warm_up()
    for repeat in range(1, repeats + 1):
        for case in cases:
            gc.collect()
            case.runs.append(case.run())
            print(
                f"  [{repeat}/{repeats}] {case.label}: {case.runs[-1].seconds:.3f} s",
                file=sys.stderr,
                flush=True,
            )


def per_epoch(seconds: float, samples: int) -> float:
    """Seconds scaled to EPOCH_SAMPLES samples (exact when ``samples`` is a full epoch)."""
    return seconds * EPOCH_SAMPLES / samples


def growth(sizes: Sequence[float], seconds: Sequence[float]) -> dict[str, float]:
    """How seconds grow with size, by least squares.

    ``exponent``: k in seconds ~ size**k on the log-log points (1 = linear, below 1
    while a fixed cost still weighs on the small sizes). ``intercept``, ``slope``
    and ``r2``: the straight line seconds = intercept + slope * size and the share
    of the variance it explains (1 = every point on the line).
    """
    sizes, seconds = np.asarray(sizes, float), np.asarray(seconds, float)
    exponent, _ = np.polyfit(np.log(sizes), np.log(seconds), 1)
    slope, intercept = np.polyfit(sizes, seconds, 1)
    residual = seconds - (intercept + slope * sizes)
    spread = np.sum((seconds - seconds.mean()) ** 2)
    r2 = 1 - np.sum(residual**2) / spread if spread > 0 else 1.0
    return {
        "exponent": float(exponent),
        "intercept": float(intercept),
        "slope": float(slope),
        "r2": float(r2),
    }


def growth_text(fit: dict[str, float], size_name: str, unit: float) -> str:
    return (
        f"k={fit['exponent']:.2f} in s ~ {size_name}**k; line s = {fit['intercept']:.3f} + "
        f"{fit['slope'] * unit:.3f} per {unit:,g} {size_name}, R^2={fit['r2']:.4f}"
    )


# ----------------------------------------------------------------------------
# output


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    cells = [[str(value) for value in row] for row in rows]
    widths = [max(len(headers[i]), *(len(row[i]) for row in cells)) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            value.ljust(widths[0]) if i == 0 else value.rjust(widths[i])
            for i, value in enumerate(values)
        )

    print(f"\n{title}")
    print(line(headers))
    print("  ".join("-" * width for width in widths))
    for row in cells:
        print(line(row))


def ratio(baseline: float | None, seconds: float) -> str:
    """How many times faster than ``baseline`` (above 1: faster; below 1: slower)."""
    return "-" if baseline is None else f"{baseline / seconds:.2f}x"


def output_path(args: argparse.Namespace, name: str, suffix: str = ".json") -> Path:
    if args.out is not None and suffix == ".json":
        return args.out
    stem = f"{name}-quick" if args.quick else name
    folder = args.out.parent if args.out is not None else RESULTS_DIR
    return folder / f"{stem}{suffix}"


def write_results(
    args: argparse.Namespace, name: str, threads: int, payload: dict[str, Any]
) -> Path:
    """Writes ``payload`` with the run's settings and the machine's facts as JSON."""
    path = output_path(args, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = {
        key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()
    }
    document = {
        "benchmark": name,
        "quick": args.quick,
        "repeats": args.repeats,
        "settings": settings,
        "machine": machine_info(threads),
        **payload,
    }
    path.write_text(json.dumps(document, indent=1) + "\n")
    print(f"\nwrote {path}")
    return path
