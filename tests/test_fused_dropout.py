"""Dropout in the fused C epoch: against its twin, against the Module API loop with the
same seeds, bitwise reproducible, the same on 1 and 2 threads, and its bad input."""

import numpy as np
import pytest
from synthetic import assert_matches_twin, assert_same_training, fused_epoch
from test_fused import CLASSES, digits_like

import fcnn
from fcnn import _core, reference
from fcnn.dataloader import DataLoader
from fcnn.functional import Dropout, Linear, ReLU, Softmax
from fcnn.nn import Module
from fcnn.optim import SGD, ExponentialScheduler
from fcnn.training import fused_eligible, train


def run(backend, sizes, dtype, dropout, momentum=0.9, sparse_threshold=0.5, num_threads=0):
    images, labels = digits_like()
    return fused_epoch(
        backend,
        images,
        labels,
        sizes,
        dtype,
        momentum=momentum,
        sparse_threshold=sparse_threshold,
        num_threads=num_threads,
        dropout=dropout,
    )


DROPOUTS = {
    "one-layer": ([60, 40, CLASSES], [(0.5, 7, 0)]),
    "two-layers": ([60, 70, 13, CLASSES], [(0.3, 1, 5), (0.6, 2**64 - 1, 2**40)]),
    "second-only": ([60, 70, 13, CLASSES], [None, (0.25, 9, 3)]),
    "rate-zero": ([60, 40, CLASSES], [(0.0, 7, 0)]),
    # one hidden layer over several column blocks, the last partial (64 float32 columns a
    # block, 32 float64): the output layer runs inside the first layer's blocks
    "one-layer-wide": ([60, 150, CLASSES], [(0.4, 3, 11)]),
}


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("case", DROPOUTS)
@pytest.mark.parametrize("sparse_threshold", [0.0, 1.0])
def test_fused_epoch_with_dropout_matches_twin(dtype, rtol, case, sparse_threshold):
    sizes, dropout = DROPOUTS[case]
    result = run(_core, sizes, dtype, dropout, sparse_threshold=sparse_threshold)
    twin_result = run(reference, sizes, dtype, dropout)
    assert_matches_twin(result, twin_result, 10, dtype, rtol)


def test_dropout_changes_the_fused_epoch():
    """The masks are really applied: with dropout the result differs from without, and a
    rate of 0 gives exactly the epoch without dropout."""
    sizes = [60, 40, CLASSES]
    _, plain = run(_core, sizes, np.float64, None)
    _, zero = run(_core, sizes, np.float64, [(0.0, 7, 0)])
    _, dropped = run(_core, sizes, np.float64, [(0.5, 7, 0)])
    _, other_step = run(_core, sizes, np.float64, [(0.5, 7, 1)])
    for a, b in zip(plain, zero, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(plain[0], dropped[0])
    assert not np.array_equal(dropped[0], other_step[0])


@pytest.mark.parametrize("sparse_threshold", [1.0, None])
@pytest.mark.parametrize("case", ["two-layers", "one-layer-wide"])
def test_fused_dropout_is_the_same_on_1_and_2_threads(sparse_threshold, case):
    sizes, dropout = DROPOUTS[case]
    results = []
    previous = _core.get_num_threads()
    try:
        for threads in (1, 2, 2, 3):
            fcnn.set_num_threads(threads)
            results.append(
                run(_core, sizes, np.float32, dropout, sparse_threshold=sparse_threshold)
            )
    finally:
        fcnn.set_num_threads(previous)
    for summary, params in results[1:]:
        assert summary == results[0][0]
        for a, b in zip(params, results[0][1], strict=True):
            np.testing.assert_array_equal(a, b)


def dropout_mlp(dtype=np.float64, hidden=(24, 16), p=(0.5, 0.2), seed=0):
    sizes = [60, *hidden, CLASSES]
    layers = []
    for index, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(Linear(a, b, dtype=dtype, rng=seed + index))
        if index < len(sizes) - 2:
            layers.append(ReLU())
            if p[index] is not None:
                layers.append(Dropout(p[index], seed=100 + index))
        else:
            layers.append(Softmax())
    return Module(layers)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("p", [(0.5, 0.2), (None, 0.3)])
def test_train_fused_equals_module_path_with_dropout(momentum, p):
    images, labels = digits_like(n=500)
    finals = []
    for fused in (True, False):
        net = dropout_mlp(p=p)
        optimizer = SGD(
            net,
            lr_scheduler=ExponentialScheduler(0.3, stage_length=7),
            decay=1e-4,
            momentum=momentum,
        )
        loader = DataLoader((images, labels), batch_size=40, seed=3, dtype=np.float64)
        assert fused_eligible(net, optimizer, loader) is None
        history = train(net, optimizer, loader, epochs=2, progress=False, fused=fused)
        steps = [layer.step for layer in net.layers if isinstance(layer, Dropout)]
        finals.append((net.state_dict(), history, steps))
    (fused_state, fused_history, fused_steps), (module_state, module_history, module_steps) = finals
    assert fused_steps == module_steps == [2 * 13] * len(fused_steps)
    assert_same_training((fused_state, fused_history), (module_state, module_history))


def test_fused_training_with_dropout_is_bitwise_reproducible():
    images, labels = digits_like(n=400)
    runs = []
    for _ in range(2):
        net = dropout_mlp(np.float32, hidden=(200, 30))
        optimizer = SGD(net, lr=0.1, momentum=0.5)
        train(net, optimizer, DataLoader((images, labels), seed=5), epochs=2, progress=False)
        runs.append(net.state_dict())
    for key in runs[0]:
        np.testing.assert_array_equal(runs[0][key], runs[1][key])
    # another seed, other masks
    net = dropout_mlp(np.float32, hidden=(200, 30))
    net.layers[2].seed += 1
    train(
        net,
        SGD(net, lr=0.1, momentum=0.5),
        DataLoader((images, labels), seed=5),
        epochs=2,
        progress=False,
    )
    assert not np.array_equal(net.state_dict()["layers.0.weight"], runs[0]["layers.0.weight"])


def test_fused_eligibility_with_dropout():
    images, labels = digits_like()
    loader = DataLoader((images, labels))
    net = dropout_mlp(np.float32)
    assert fused_eligible(net, SGD(net, lr=0.1), loader) is None
    for layers in (
        [Linear(60, 8), Dropout(0.5), ReLU(), Linear(8, CLASSES)],  # before the ReLU
        [Linear(60, 8), ReLU(), Dropout(0.5), Dropout(0.5), Linear(8, CLASSES)],
        [Linear(60, 8), ReLU(), Dropout(0.5)],
        [Dropout(0.5), Linear(60, CLASSES)],
    ):
        odd = Module(layers)
        assert "not Linear, (ReLU, [Dropout], Linear)*" in fused_eligible(
            odd, SGD(odd, lr=0.1), loader
        )


@pytest.mark.parametrize("fused", [True, False])
def test_train_trains_in_training_mode_and_restores_the_mode(fused):
    images, labels = digits_like()
    net = dropout_mlp().eval()
    loader = DataLoader((images, labels), batch_size=32, seed=1, dtype=np.float64)
    train(net, SGD(net, lr=0.1), loader, epochs=1, progress=False, fused=fused)
    assert [layer.step for layer in net.layers if isinstance(layer, Dropout)] == [10, 10]
    assert not net.training and not any(layer.training for layer in net.layers)


def bad_dropout_cases():
    sizes = [60, 16, CLASSES]
    return [
        ([(1.0, 0, 0)], ValueError, r"^p must be in \[0, 1\)"),
        ([(0.5, -1, 0)], ValueError, r"^seed must be an integer >= 0"),
        ([(0.5, 0, -1)], ValueError, r"^step must be an integer >= 0"),
        ([(0.5, 0)], TypeError, r"^dropout\[0\] must be None or a tuple"),
        ([0.5], TypeError, r"^dropout\[0\] must be None or a tuple"),
        ([None, None], ValueError, r"^dropout must hold 1 entries"),
        (0.5, TypeError, r"^dropout must be None or a list"),
    ], sizes


@pytest.mark.parametrize("index", range(7))
@pytest.mark.parametrize("backend", [_core, reference], ids=["core", "reference"])
def test_train_epoch_bad_dropout(backend, index):
    cases, sizes = bad_dropout_cases()
    dropout, error, pattern = cases[index]
    with pytest.raises(error, match=pattern):
        run(backend, sizes, np.float32, dropout)
