"""Time the Module API (the original project's loop) against PyTorch and NumPy, step by step.

The loop every contender runs, from the same initial weights (784-1024-10, float32,
the same thread count), on MNIST batches gathered from uint8 images and scaled per batch:

    for x, y in batches: criterion(net(x), y).backward(); optimizer.step()

- fcnn Module API: fcnn's DataLoader, Module, CrossEntropyLoss and SGD on the C core.
- PyTorch CPU: nn.Sequential(Linear, ReLU, Linear), nn.CrossEntropyLoss, torch.optim.SGD,
  ``zero_grad(set_to_none=True)`` each step, batches indexed from a uint8 tensor.
- NumPy float32: a hand-written loop, one ``@`` per product, updates in place.

Two optimizers, the same in each contender: plain SGD (lr 0.1), and the ``fcnn train``
defaults (Nesterov momentum 0.9, weight decay 5e-4; PyTorch adds the decay to the gradient
where fcnn and the NumPy loop shrink the weight, the same work either way). Each case is
timed at batch 64 (a whole epoch, or --samples) and at batch 1 (--batch1-steps steps),
and reported as seconds per 60,000 samples, microseconds per step, "x faster than PyTorch"
(above 1: faster) and minor page faults per step (fresh large arrays every step show there).
For fcnn it also counts the Python-level function calls of one step (sys.setprofile).

    python benchmarks/bench_module.py --quick           # smoke run, not a result
    python benchmarks/bench_module.py --threads 2       # the issue's setting
    python benchmarks/bench_module.py --optimizers sgd --no-torch
"""

from __future__ import annotations

import functools
import resource
import sys
import time
from typing import Any

import common
import numpy as np
from common import torch  # noqa: I001 - after fcnn, see common.py

from fcnn.dataloader import DataLoader
from fcnn.functional import CrossEntropyLoss
from fcnn.optim import SGD

HIDDEN = 1024
OPTIMIZERS = {
    "sgd": {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
    "nesterov": {"momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
}
QUICK_SAMPLES = 2048
QUICK_BATCH1_STEPS = 300


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def fcnn_loop(
    images: np.ndarray, labels: np.ndarray, batch_size: int, settings: dict[str, Any]
) -> common.Run:
    net = common.build_net(images.shape[1], HIDDEN)
    criterion = CrossEntropyLoss(net)
    optimizer = SGD(net, lr=common.LR, lr_scheduler=None, **settings)
    loader = DataLoader((images, labels), batch_size=batch_size, seed=0)
    started_faults, started = faults(), time.perf_counter()
    for x, y in loader:
        criterion(net(x), y).backward()
        optimizer.step()
    seconds = time.perf_counter() - started
    return common.Run(seconds, common.net_params(net), {"faults": faults() - started_faults})


def torch_loop(
    images: np.ndarray, labels: np.ndarray, batch_size: int, settings: dict[str, Any]
) -> common.Run:
    nn = torch.nn
    w1, b1, w2, b2 = common.initial_params(images.shape[1], HIDDEN, np.float32)
    model = nn.Sequential(
        nn.Linear(images.shape[1], HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, common.NUM_CLASSES)
    )
    with torch.no_grad():  # PyTorch keeps (out, in): the transpose of fcnn's weights
        for layer, weight, bias in ((model[0], w1, b1), (model[2], w2, b2)):
            layer.weight.copy_(torch.from_numpy(weight.T))
            layer.bias.copy_(torch.from_numpy(bias))
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=common.LR, **settings)
    image_tensor = torch.from_numpy(images)
    label_tensor = torch.from_numpy(labels.astype(np.int64))
    generator = torch.Generator().manual_seed(0)
    started_faults, started = faults(), time.perf_counter()
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
    return common.Run(
        seconds, tuple(param.copy() for param in params), {"faults": faults() - started_faults}
    )


def numpy_loop(
    images: np.ndarray, labels: np.ndarray, batch_size: int, settings: dict[str, Any]
) -> common.Run:
    """Plain NumPy float32 with fcnn's update rule (sgd_rule.h), temporaries reused."""
    params = list(common.initial_params(images.shape[1], HIDDEN, np.float32))
    real = np.float32
    lr, momentum = real(common.LR), real(settings["momentum"])
    keep = real(1) - real(settings["weight_decay"]) * lr
    nesterov = settings["nesterov"]
    velocities = [np.zeros_like(param) for param in params] if momentum > 0 else None
    rng = np.random.default_rng(0)
    started_faults, started = faults(), time.perf_counter()
    order = rng.permutation(len(labels))
    w1, b1, w2, b2 = params
    for start in range(0, len(labels), batch_size):
        index = order[start : start + batch_size]
        x = np.divide(images[index], real(255), dtype=real)
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
        dactive *= active > 0
        dw1, db1 = x.T @ dactive, dactive.sum(axis=0)
        for slot, (param, gradient) in enumerate(((w1, dw1), (b1, db1), (w2, dw2), (b2, db2))):
            step, scratch = gradient, True  # scratch: a temporary this step may overwrite
            if velocities is not None:
                velocity = velocities[slot]
                velocity *= momentum
                velocity += gradient
                if nesterov:
                    step = velocity * momentum
                    step += gradient
                else:
                    step, scratch = velocity, False
            if keep != 1:
                param *= keep
            param -= np.multiply(step, lr, out=step if scratch else None)
    seconds = time.perf_counter() - started
    return common.Run(seconds, (w1, b1, w2, b2), {"faults": faults() - started_faults})


CONTENDERS = (
    ("module", "fcnn Module API", fcnn_loop, False),
    ("torch", "PyTorch CPU", torch_loop, True),
    ("numpy32", "NumPy float32", numpy_loop, False),
)


def python_calls_per_step(
    data: common.MNIST, settings: dict[str, Any], batch_size: int, steps: int = 50
) -> dict[str, float]:
    """Python function calls and C calls made from Python per step of the fcnn loop."""
    net = common.build_net(data.train_images.shape[1], HIDDEN)
    criterion = CrossEntropyLoss(net)
    optimizer = SGD(net, lr=common.LR, lr_scheduler=None, **settings)
    count = steps * batch_size
    loader = DataLoader(
        (data.train_images[:count], data.train_labels[:count]), batch_size=batch_size, seed=0
    )
    counts = {"call": 0, "c_call": 0}

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event in counts:
            counts[event] += 1

    batches = iter(loader)
    x, y = next(batches)  # the first step builds the SGD plan and the buffers: not counted
    criterion(net(x), y).backward()
    optimizer.step()
    sys.setprofile(profile)
    try:
        for x, y in batches:
            criterion(net(x), y).backward()
            optimizer.step()
    finally:
        sys.setprofile(None)
    done = steps - 1
    return {"python_calls": counts["call"] / done, "c_calls": counts["c_call"] / done}


def main() -> None:
    parser = common.make_parser(__doc__)
    parser.add_argument(
        "--samples",
        type=common.positive_int,
        default=None,
        help=f"batch-64 cases train on the first N images, times scaled to "
        f"{common.EPOCH_SAMPLES:,} (default all; {QUICK_SAMPLES} with "
        "--quick)",
    )
    parser.add_argument(
        "--batch1-steps",
        type=common.positive_int,
        default=None,
        help=f"steps of the batch-1 cases (default 3000; {QUICK_BATCH1_STEPS} with --quick)",
    )
    parser.add_argument(
        "--optimizers", default="sgd,nesterov", help=f"comma-separated, from {sorted(OPTIMIZERS)}"
    )
    args = common.parse_args(parser)
    if args.samples is None:
        args.samples = QUICK_SAMPLES if args.quick else common.EPOCH_SAMPLES
    if args.batch1_steps is None:
        args.batch1_steps = QUICK_BATCH1_STEPS if args.quick else 3000
    optimizers = [name.strip() for name in args.optimizers.split(",") if name.strip()]
    unknown = sorted(set(optimizers) - set(OPTIMIZERS))
    if unknown:
        parser.error(f"unknown optimizers {unknown}; known: {sorted(OPTIMIZERS)}")
    threads = common.set_threads(args.threads)
    data = common.load_data(args)

    cases = []
    for optimizer in optimizers:
        settings = OPTIMIZERS[optimizer]
        for batch_size, samples in ((64, args.samples), (1, args.batch1_steps)):
            samples = min(samples, len(data.train_labels))
            images, labels = data.train_images[:samples], data.train_labels[:samples]
            warm = min(samples, 4 * batch_size if batch_size > 1 else 64)
            for key, name, loop, needs_torch in CONTENDERS:
                if needs_torch and not common.use_torch(args):
                    continue
                cases.append(
                    common.Case(
                        label=f"{name}, {optimizer}, B={batch_size}, {samples} samples",
                        run=functools.partial(loop, images, labels, batch_size, settings),
                        warm_up=functools.partial(
                            loop, images[:warm], labels[:warm], batch_size, settings
                        ),
                        info={
                            "contender": key,
                            "name": name,
                            "optimizer": optimizer,
                            "batch_size": batch_size,
                            "samples": samples,
                            "steps": -(-samples // batch_size),
                        },
                    )
                )
    common.run_cases(cases, args.repeats)

    torch_seconds = {
        (case.info["optimizer"], case.info["batch_size"]): case.median
        for case in cases
        if case.info["contender"] == "torch"
    }
    rows, records = [], []
    for case in cases:
        info = case.info
        per_step = case.median / info["steps"]
        faults_per_step = np.median([run.extra["faults"] for run in case.runs]) / info["steps"]
        baseline = torch_seconds.get((info["optimizer"], info["batch_size"]))
        rows.append(
            [
                info["name"],
                info["optimizer"],
                info["batch_size"],
                f"{common.per_epoch(case.median, info['samples']):.3f}",
                f"{per_step * 1e6:.1f}",
                common.ratio(baseline, case.median),
                f"{faults_per_step:.1f}",
            ]
        )
        records.append(
            {
                **case.record(),
                "seconds_per_epoch": common.per_epoch(case.median, info["samples"]),
                "microseconds_per_step": per_step * 1e6,
                "faults_per_step": float(faults_per_step),
                "speedup_vs_torch": None if baseline is None else baseline / case.median,
            }
        )
    title = (
        f"784-{HIDDEN}-10, float32, {threads} thread(s), median of {args.repeats}; s/epoch "
        f"scaled to {common.EPOCH_SAMPLES:,} samples"
        f"{' [QUICK: not a result]' if args.quick else ''}\n"
        "vs PyTorch: x faster (PyTorch seconds / contender seconds; below 1 = slower)"
    )
    common.print_table(
        title,
        ["contender", "optimizer", "B", "s/epoch", "us/step", "vs PyTorch", "faults/step"],
        rows,
    )
    calls = {
        optimizer: {
            batch_size: python_calls_per_step(data, OPTIMIZERS[optimizer], batch_size)
            for batch_size in (1, 64)
        }
        for optimizer in optimizers
    }
    common.print_table(
        "fcnn Module API: calls per step (sys.setprofile)",
        ["optimizer", "B", "Python calls", "C calls"],
        [
            [optimizer, batch_size, f"{counts['python_calls']:.0f}", f"{counts['c_calls']:.0f}"]
            for optimizer, by_size in calls.items()
            for batch_size, counts in by_size.items()
        ],
    )
    common.write_results(
        args,
        "module",
        threads,
        {
            "hidden": HIDDEN,
            "optimizers": {name: OPTIMIZERS[name] for name in optimizers},
            "cases": records,
            "calls_per_step": calls,
        },
    )


if __name__ == "__main__":
    main()
