"""Threads: the GIL-free kernels and prediction from many threads at once, and the guard
that stops two threads from training one net.

The kernels release the GIL around their C loops, so Python threads really run them at the
same time. Each test starts its threads together on a barrier, runs them over shared
read-only inputs with separate outputs, and compares every result bit for bit with the same
call made from one thread. Threads during ``fcnn.train`` and ``set_num_threads`` are tested
with the fused epoch (tests/test_fused.py).
"""

import threading

import numpy as np
import pytest

import fcnn
from fcnn import _core
from fcnn.functional import CrossEntropyLoss, Layer, Linear, ReLU, Softmax
from fcnn.nn import Module
from fcnn.optim import SGD

THREADS = 8
ROUNDS = 4
# Seconds a thread may take before the test calls it a deadlock (the work is ~0.1 s).
JOIN_TIMEOUT = 120


def run_together(work, count=THREADS):
    """Runs ``work(index)`` in ``count`` threads released at once; returns their results
    in order, re-raising the first exception a thread raised."""
    barrier = threading.Barrier(count)
    results, errors = [None] * count, []

    def body(index):
        try:
            barrier.wait()
            results[index] = work(index)
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            errors.append(error)

    threads = [threading.Thread(target=body, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a thread hung (deadlock?)"
    if errors:
        raise errors[0]
    return results


def assert_same_bits(actual, expected, what):
    """Equal structure, dtypes, shapes and bytes (NaN included), recursively."""
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected), what
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same_bits(a, e, f"{what}[{index}]")
    elif isinstance(expected, np.ndarray):
        assert isinstance(actual, np.ndarray), what
        assert actual.dtype == expected.dtype and actual.shape == expected.shape, what
        assert actual.tobytes() == expected.tobytes(), f"{what}: values differ"
    elif isinstance(expected, float):
        assert np.float64(actual).tobytes() == np.float64(expected).tobytes(), what
    else:
        assert actual == expected, what


# ---------------------------------------------------------------------------- kernels


def kernel_calls(dtype):
    """(name, call) for every per-batch kernel of _core; each call builds its own outputs
    (sgd_step: its own copies of param and velocity) from shared read-only inputs."""
    rng = np.random.default_rng(0)
    B, C, OC = 64, 300, 40

    def frozen(array):
        array = np.ascontiguousarray(array, dtype)
        array.flags.writeable = False
        return array

    x = frozen(rng.standard_normal((B, C)))
    weight = frozen(rng.standard_normal((C, OC)) / np.sqrt(C))
    bias = frozen(rng.standard_normal(OC))
    dout = frozen(rng.standard_normal((B, OC)))
    hidden = frozen(rng.standard_normal((B, C)))
    dhidden = frozen(rng.standard_normal((B, C)))
    logits = frozen(rng.standard_normal((B, OC)) * 5)
    probs = frozen(_core.softmax_forward(logits))
    sigmoid_out, tanh_out = (
        frozen(_core.sigmoid_forward(hidden)),
        frozen(_core.tanh_forward(hidden)),
    )
    labels = rng.integers(0, OC, B)
    labels.flags.writeable = False

    grad = frozen(rng.standard_normal((C, OC)))

    def sgd(nesterov):
        param, velocity = np.array(weight), np.full((C, OC), 0.5, dtype)
        _core.sgd_step(param, grad, 0.05, 1e-3, 0.9, velocity, nesterov)
        return param, velocity

    def backward_out(compute_dx):
        dweight, dbias = np.empty((C, OC), dtype), np.empty(OC, dtype)
        dx = np.empty((B, C), dtype) if compute_dx else None
        _core._linear_backward_out(dx, dweight, dbias, dout, x, weight)
        return dweight, dbias, dx

    return [
        ("linear_forward", lambda: _core.linear_forward(x, weight, bias)),
        ("linear_backward", lambda: _core.linear_backward(dout, x, weight)),
        ("linear_backward no dx", lambda: _core.linear_backward(dout, x, weight, False)),
        ("_linear_backward_out", lambda: backward_out(True)),
        ("_linear_backward_out no dx", lambda: backward_out(False)),
        ("relu_forward", lambda: _core.relu_forward(hidden)),
        ("relu_backward", lambda: _core.relu_backward(dhidden, hidden)),
        ("sigmoid_forward", lambda: _core.sigmoid_forward(hidden)),
        ("sigmoid_backward", lambda: _core.sigmoid_backward(dhidden, sigmoid_out)),
        ("tanh_forward", lambda: _core.tanh_forward(hidden)),
        ("tanh_backward", lambda: _core.tanh_backward(dhidden, tanh_out)),
        ("softmax_forward", lambda: _core.softmax_forward(logits)),
        ("softmax_backward", lambda: _core.softmax_backward(dout, probs)),
        ("dropout_forward", lambda: _core.dropout_forward(hidden, 0.5, 11, 3)),
        ("dropout_backward", lambda: _core.dropout_backward(dhidden, 0.5, 11, 3)),
        (
            "softmax_cross_entropy_forward",
            lambda: _core.softmax_cross_entropy_forward(logits, labels),
        ),
        (
            "softmax_cross_entropy_backward",
            lambda: _core.softmax_cross_entropy_backward(logits, labels),
        ),
        ("sgd_step", lambda: sgd(False)),
        ("sgd_step nesterov", lambda: sgd(True)),
        ("exponential_lr", lambda: _core.exponential_lr(0.1, 12345, 500, 0.8)),
    ]


def test_every_kernel_is_covered():
    """The list above calls every per-batch kernel the stub names, and the private one."""
    from fcnn.reference import KERNELS

    called = {name.split()[0] for name, _ in kernel_calls(np.float32)}
    assert called == set(KERNELS) | {"_linear_backward_out"}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_from_8_threads_give_the_single_threaded_results(dtype):
    calls = kernel_calls(dtype)
    expected = [call() for _, call in calls]

    def work(index):
        # Each thread walks the kernels from its own starting point, so that different
        # kernels overlap in time, not only copies of one.
        results = {}
        for round_ in range(ROUNDS):
            for offset in range(len(calls)):
                position = (index + offset + round_) % len(calls)
                results.setdefault(position, []).append(calls[position][1]())
        return results

    for results in run_together(work):
        for position, outcomes in results.items():
            for outcome in outcomes:
                assert_same_bits(outcome, expected[position], calls[position][0])


# ---------------------------------------------------------------------------- prediction


@pytest.fixture(scope="module")
def net_and_images():
    rng = np.random.default_rng(1)
    net = Module(Linear(64, 48, rng=0), ReLU(), Linear(48, 10, rng=1), Softmax())
    for layer in net.linear_layers():
        layer.bias[...] = rng.standard_normal(layer.bias.shape)
    images = rng.integers(0, 256, (1500, 64), dtype=np.uint8)
    labels = rng.integers(0, 10, 1500)
    return net, images, labels


def test_predict_from_8_threads_gives_the_single_threaded_results(net_and_images):
    """fcnn.predict once read Softmax.logits, which other threads overwrote: wrong labels."""
    net, images, labels = net_and_images
    # Small batches: many switches between threads within one call.
    expected = fcnn.predict(net, images, batch_size=50)
    expected_probs = fcnn.predict_proba(net, images, batch_size=50)
    expected_report = fcnn.evaluate(net, images, labels, batch_size=50)

    def work(index):
        outcomes = []
        for _ in range(ROUNDS):
            outcomes.append(("predict", fcnn.predict(net, images, batch_size=50)))
            outcomes.append(("predict_proba", fcnn.predict_proba(net, images, batch_size=50)))
            report = fcnn.evaluate(net, images, labels, batch_size=50)
            outcomes.append(("evaluate", (report["predictions"], report["loss"])))
        return outcomes

    for outcomes in run_together(work):
        for name, outcome in outcomes:
            if name == "predict":
                assert_same_bits(outcome, expected, name)
            elif name == "predict_proba":
                assert_same_bits(outcome, expected_probs, name)
            else:
                assert_same_bits(
                    outcome, (expected_report["predictions"], expected_report["loss"]), name
                )


def test_inference_writes_nothing_into_the_net(net_and_images):
    net, images, _ = net_and_images
    x = images[:20].astype(np.float32) / 255
    probs = net(x)
    caches = [dict(vars(layer)) for layer in net.layers]
    other = images[20:45].astype(np.float32) / 255
    inferred = net.inference(other)
    logits = net.logits(other)
    for layer, cache in zip(net.layers, caches, strict=True):
        for name, value in cache.items():
            assert vars(layer)[name] is value, f"{layer!r}.{name} was replaced"
    assert net.layers[-1]._probs is probs  # the loss can still trace the last forward
    assert_same_bits(inferred, net(other), "inference")
    assert_same_bits(logits, net.layers[-1].logits, "logits")


def test_predict_while_another_thread_trains_another_net(net_and_images):
    """Training one net and predicting with another at once: both as if alone."""
    net, images, labels = net_and_images
    expected = fcnn.predict(net, images, batch_size=50)

    def train_copy():
        copy = Module(Linear(64, 48, rng=0), ReLU(), Linear(48, 10, rng=1), Softmax())
        criterion, optimizer = CrossEntropyLoss(copy), SGD(copy, lr=0.1, lr_scheduler=None)
        x = images[:64].astype(np.float32) / 255
        for _ in range(30):
            criterion(copy(x), labels[:64]).backward()
            optimizer.step()
        return copy.state_dict()

    results = run_together(
        lambda index: train_copy() if index % 2 else fcnn.predict(net, images, batch_size=50),
        count=4,
    )
    for index, result in enumerate(results):
        if index % 2:
            assert_same_bits(
                result["layers.0.weight"], results[1]["layers.0.weight"], "trained weights"
            )
        else:
            assert_same_bits(result, expected, "predict")


# ---------------------------------------------------------------------------- the guard


class Gate(Layer):
    """Identity layer whose forward waits until the test opens it, so that a thread can be
    held inside ``net(x)`` for as long as the test needs, without any sleep."""

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()
        self.hold = False

    def forward(self, x):
        if self.hold:
            self.entered.set()
            assert self.release.wait(JOIN_TIMEOUT)
        return x

    def inference(self, x):
        return x

    def backward(self, dout, compute_dx=True):
        return dout


def test_a_second_thread_cannot_train_a_net_another_thread_is_in():
    gate = Gate()
    net = Module(gate, Linear(6, 3, dtype=np.float64, rng=0), Softmax())
    criterion, optimizer = CrossEntropyLoss(net), SGD(net, lr=0.1, lr_scheduler=None)
    x, labels = np.ones((2, 6)), np.array([0, 2])
    loss = criterion(net(x), labels)  # computed before the other thread goes in
    weights = net.layers[1].weight.copy()
    gate.hold = True
    inside = threading.Thread(target=net, args=(x,))
    inside.start()
    try:
        assert gate.entered.wait(JOIN_TIMEOUT)
        with pytest.raises(RuntimeError, match=r"^net\(x\) while another thread runs"):
            net(x)
        with pytest.raises(RuntimeError, match=r"^loss.backward\(\) while another thread"):
            loss.backward()
        with pytest.raises(RuntimeError, match=r"^optimizer.step\(\) while another thread"):
            optimizer.step()
        with pytest.raises(RuntimeError, match=r"^net.backward\(\) while another thread"):
            net.backward(np.ones((2, 3)))
        # Prediction takes no lock: it runs while the other thread is inside forward.
        assert net.inference(x).shape == (2, 3)
        np.testing.assert_array_equal(net.layers[1].weight, weights)  # nothing was stepped
    finally:
        gate.release.set()
        inside.join(JOIN_TIMEOUT)
    assert not inside.is_alive()
    gate.hold = False
    # The lock is free again, and the loss from before the other forward pass is stale.
    with pytest.raises(RuntimeError, match="after another forward pass of the net"):
        loss.backward()
    criterion(net(x), labels).backward()
    optimizer.step()
    assert optimizer.step_count == 1


def test_loss_backward_after_another_forward_is_refused():
    """One thread, two batches: the old loss's backward would use the new batch's caches."""
    net = Module(
        Linear(4, 3, dtype=np.float64, rng=0), ReLU(), Linear(3, 2, dtype=np.float64, rng=1)
    )
    criterion = CrossEntropyLoss(net)
    first = np.ones((2, 4))
    loss = criterion(net(first), np.array([0, 1]))
    net(np.zeros((5, 4)))
    with pytest.raises(RuntimeError, match="after another forward pass"):
        loss.backward()
    net.inference(first)  # inference is no forward pass: a fresh loss still works after it
    loss = criterion(net(first), np.array([0, 1]))
    net.inference(np.zeros((5, 4)))
    loss.backward()


def test_training_one_net_from_two_threads_fails_loudly_or_not_at_all():
    """Two threads running the whole loop on one net: each step either completes or is
    refused (RuntimeError from the lock or the stale loss, or the loss's ValueError when the
    other thread's forward replaced the output it was given); nothing else, no hang."""
    net = Module(Linear(32, 16, rng=0), ReLU(), Linear(16, 4, rng=1), Softmax())
    criterion, optimizer = CrossEntropyLoss(net), SGD(net, lr=0.01, lr_scheduler=None)
    rng = np.random.default_rng(0)
    x, labels = rng.random((64, 32), dtype=np.float32), rng.integers(0, 4, 64)

    def work(index):
        refused = 0
        for _ in range(200):
            try:
                criterion(net(x), labels).backward()
                optimizer.step()
            except RuntimeError:
                refused += 1
            except ValueError as error:
                if not str(error).startswith("output must be what the net's forward just"):
                    raise
                refused += 1
        return refused

    refusals = run_together(work, count=2)
    # Every loop that was not refused ended with a step.
    assert optimizer.step_count == 400 - sum(refusals)
    assert np.isfinite(net.layers[0].weight).all()


def test_a_subclass_with_its_own_forward_predicts_through_it():
    """net.logits runs self.layers; a subclass that overrides forward is predicted with it."""

    class Doubling(Module):
        def forward(self, x):
            return super().forward(2 * x)

    net = Doubling(Linear(4, 3, dtype=np.float64, rng=0), Softmax())
    images = np.random.default_rng(0).random((6, 4))
    expected = Module(*net.layers)(2 * images)
    np.testing.assert_array_equal(fcnn.predict_proba(net, images), expected)
