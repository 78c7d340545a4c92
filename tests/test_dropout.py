"""Dropout: the kernels against their twin (exact masks, not just close values), the mask
rule written out by hand, the scaling, p = 0, and the share of units kept; the layer, its
training and evaluation modes, its gradients, saving and loading."""

import contextlib
import json

import numpy as np
import pytest
from test_gradcheck import numerical_gradient

import fcnn
import fcnn._core as core
import fcnn.nn
from fcnn import reference, serialization
from fcnn.functional import LAYERS, CrossEntropyLoss, Dropout, Linear, ReLU, Softmax
from fcnn.nn import Module

BACKENDS = [pytest.param(core, id="core"), pytest.param(reference, id="reference")]
DTYPES = (np.float32, np.float64)


@contextlib.contextmanager
def fcnn_backend(name):
    before = fcnn.get_backend()
    fcnn.set_backend(name)
    try:
        yield
    finally:
        fcnn.set_backend(before)


def batch(dtype, shape=(37, 53), seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 0.999])
@pytest.mark.parametrize("kernel", ["dropout_forward", "dropout_backward"])
def test_core_equals_reference_bitwise(kernel, dtype, p):
    x = batch(dtype)
    for seed, step in ((0, 0), (12345, 7), (2**64 - 1, 2**63 - 1)):
        actual = getattr(core, kernel)(x, p, seed, step)
        desired = getattr(reference, kernel)(x, p, seed, step)
        assert actual.dtype == desired.dtype == dtype
        assert actual.tobytes() == desired.tobytes()


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("p", [0.2, 0.5 + 2.0**-53, 2.0**-60])
def test_large_masks_split_across_threads_equal_reference(threads, p):
    # From 2^14 units on, the kernel splits the mask across threads and tests m >= ceil(p 2^53)
    # in integers: the same bits as the twin's u >= p on any thread count, p off the grid too.
    x = batch(np.float32, shape=(64, 1024))
    before = fcnn.get_num_threads()
    fcnn.set_num_threads(threads)
    try:
        for kernel in ("dropout_forward", "dropout_backward"):
            actual = getattr(core, kernel)(x, p, 3, 11)
            desired = getattr(reference, kernel)(x, p, 3, 11)
            assert actual.tobytes() == desired.tobytes()
    finally:
        fcnn.set_num_threads(before)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_mask_rule_by_hand(backend, dtype):
    """Unit j of row b kept iff random_uniform(random_key(seed, step), b * H + j) >= p,
    kept units times 1 / (1 - p) rounded to the dtype."""
    B, H, p, seed, step = 5, 7, 0.4, 99, 12
    x = batch(dtype, (B, H)) + dtype(10)  # no zero inputs: a zero output means dropped
    out = backend.dropout_forward(x, p, seed, step)
    key = reference.random_key(seed, step)
    scale = dtype(1.0 / (1.0 - p))
    for b in range(B):
        for j in range(H):
            kept = reference.random_uniform(key, b * H + j) >= p
            assert out[b, j] == (x[b, j] * scale if kept else 0), (b, j)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_uses_the_forward_mask(backend, dtype):
    x = batch(dtype) + dtype(10)
    out = backend.dropout_forward(x, 0.3, 5, 2)
    dout = batch(dtype, seed=1)
    dinp = backend.dropout_backward(dout, 0.3, 5, 2)
    np.testing.assert_array_equal(dinp == 0, (out == 0) | (dout == 0))
    np.testing.assert_array_equal(dinp[out != 0], dout[out != 0] * dtype(1 / 0.7))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_rate_zero_is_the_identity(backend, dtype):
    x = batch(dtype)
    x[0, :3] = (np.nan, np.inf, -0.0)
    for kernel in (backend.dropout_forward, backend.dropout_backward):
        assert kernel(x, 0.0, 3, 4).tobytes() == x.tobytes()


@pytest.mark.parametrize("backend", BACKENDS)
def test_steps_and_seeds_draw_different_masks(backend):
    x = np.ones((16, 64))
    masks = [
        backend.dropout_forward(x, 0.5, seed, step) != 0 for seed, step in ((1, 0), (1, 1), (2, 0))
    ]
    for first in range(3):
        for second in range(first + 1, 3):
            # independent masks of 1024 units at p = 0.5 agree on ~512; never on all
            assert 400 < int((masks[first] == masks[second]).sum()) < 624


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_kept_share_and_mean_are_right(p):
    """Over 200,000 units the kept share is within 5 standard deviations of 1 - p, and the
    mean of an all-ones batch within as much of 1 (inverted dropout keeps the expectation)."""
    x = np.ones((200, 1000))
    out = core.dropout_forward(x, p, 2024, 1)
    kept = float((out != 0).mean())
    sigma = np.sqrt(p * (1 - p) / x.size)
    assert abs(kept - (1 - p)) < 5 * sigma
    assert abs(float(out.mean()) - 1.0) < 5 * sigma / (1 - p)
    np.testing.assert_array_equal(np.unique(out), [0.0, 1 / (1 - p)])


def test_in_place_input_is_not_changed():
    x = batch(np.float32)
    before = x.copy()
    core.dropout_forward(x, 0.5, 1, 1)
    core.dropout_backward(x, 0.5, 1, 1)
    np.testing.assert_array_equal(x, before)


# ---------------------------------------------------------------------------- the layer


def dropout_net(dtype=np.float64, p=0.5, seed=3, features=6, classes=3):
    return Module(
        Linear(features, 8, dtype=dtype, rng=0),
        ReLU(),
        Dropout(p, seed=seed),
        Linear(8, classes, dtype=dtype, rng=1),
        Softmax(),
    )


@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_layer_draws_one_mask_per_training_step(backend):
    x = batch(np.float64, (5, 9)) + 10
    dout = batch(np.float64, (5, 9), seed=1)
    with fcnn_backend(backend):
        layer = Dropout(0.3, seed=42)
        for step in range(3):
            assert layer.step == step
            out = layer(x)
            np.testing.assert_array_equal(out, reference.dropout_forward(x, 0.3, 42, step))
            np.testing.assert_array_equal(
                layer.backward(dout), reference.dropout_backward(dout, 0.3, 42, step)
            )
        assert layer.step == 3
        np.testing.assert_array_equal(layer.inference(x), x)  # no step counted
        assert layer.step == 3


def test_train_and_eval_modes():
    net = dropout_net()
    assert net.training and all(layer.training for layer in net.layers)
    assert net.eval() is net
    assert not net.training and not any(layer.training for layer in net.layers)
    x = batch(np.float64, (4, 6))
    dropout = net.layers[2]
    np.testing.assert_array_equal(net(x), net.inference(x))  # eval: the identity
    assert dropout.step == 0  # evaluation passes draw no mask
    loss = CrossEntropyLoss(net)(net(x), np.arange(4) % 3)
    loss.backward()  # through the identity
    assert net.train() is net and net.training and dropout.training
    assert not np.array_equal(net(x), net.inference(x))
    assert dropout.step == 1
    with pytest.raises(TypeError, match="mode must be a bool"):
        net.train("no")


def test_layer_settings_are_validated():
    for p in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"^p must be in \[0, 1\)"):
            Dropout(p)
    with pytest.raises(TypeError, match="^p must be a real number"):
        Dropout("0.5")
    with pytest.raises(ValueError, match="^seed must be an integer >= 0"):
        Dropout(0.5, seed=-1)
    with pytest.raises(TypeError, match="^seed must be an integer"):
        Dropout(0.5, seed=1.5)
    with pytest.raises(RuntimeError, match="Dropout.backward called before forward"):
        Dropout().backward(np.ones((2, 3)))
    assert Dropout().seed != Dropout().seed  # None: a fresh random seed, kept in .seed
    assert fcnn.Dropout is Dropout and fcnn.nn.Dropout is Dropout and "Dropout" in LAYERS
    assert repr(Dropout(0.25, seed=7)) == "Dropout(p=0.25, seed=7)"
    assert Dropout(0.25, seed=7).config() == {"p": 0.25, "seed": 7, "step": 0}


class OwnForward(Module):
    """A subclass with its own forward: fcnn.predict runs it, in evaluation mode."""

    def forward(self, x):
        return super().forward(x)


def test_predictions_run_in_evaluation_mode():
    images = np.random.default_rng(0).integers(0, 256, (50, 6)).astype(np.uint8)
    labels = np.arange(50) % 3
    plain = dropout_net()
    plain.layers.pop(2)  # the same weights without Dropout
    for net in (dropout_net(), OwnForward(dropout_net().layers)):
        assert net.training
        np.testing.assert_array_equal(
            fcnn.predict_proba(net, images), fcnn.predict_proba(plain, images)
        )
        np.testing.assert_array_equal(fcnn.predict(net, images), fcnn.predict(plain, images))
        assert (
            fcnn.evaluate(net, images, labels)["loss"]
            == fcnn.evaluate(plain, images, labels)["loss"]
        )
        assert net.training and net.layers[2].training  # put back as found
        assert net.layers[2].step == 0


@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_gradients_of_a_net_with_dropout(backend):
    """Finite differences of the loss with the mask held fixed (the step replayed)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 6))
    labels = np.array([0, 2, 1, 2])
    with fcnn_backend(backend):
        net = dropout_net(p=0.4, seed=11)
        dropout = net.layers[2]
        criterion = CrossEntropyLoss(net)

        def loss():
            dropout.step = 7
            return criterion(net(x), labels).item()

        dropout.step = 7
        criterion(net(x), labels).backward()
        kept = reference.dropout_keep((4, 8), 0.4, 11, 7)
        assert 0 < kept.sum() < kept.size  # some units dropped, some kept
        for layer in net.linear_layers():
            for name, gradient in (("weight", layer.weight_grad), ("bias", layer.bias_grad)):
                analytic = gradient.copy()
                numeric = numerical_gradient(loss, getattr(layer, name))
                np.testing.assert_allclose(analytic, numeric, atol=1e-7, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_net_with_dropout_saves_and_loads(dtype, tmp_path):
    net = dropout_net(dtype, p=0.25, seed=2**64 - 1)
    x = batch(dtype, (5, 6))
    for _ in range(3):  # three training steps: the file keeps the step count
        net(x)
    path = fcnn.save(net, tmp_path / "net.npz")
    with np.load(path, allow_pickle=False) as archive:
        meta = json.loads(archive[serialization.META_KEY].tobytes().decode("utf-8"))
    assert meta["layers"][2] == {"type": "Dropout", "p": 0.25, "seed": 2**64 - 1, "step": 3}
    loaded = fcnn.load(path)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in net.layers]
    assert loaded.layers[2].config() == {"p": 0.25, "seed": 2**64 - 1, "step": 3}
    np.testing.assert_array_equal(loaded(x), net(x))  # same seed, same step: same mask
    np.testing.assert_array_equal(loaded.inference(x), net.inference(x))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        ({"type": "Dropout", "p": 1.5, "seed": 0, "step": 0}, r"p must be in \[0, 1\)"),
        ({"type": "Dropout", "p": 0.5, "seed": -3, "step": 0}, "seed must be an integer >= 0"),
        ({"type": "Dropout", "p": 0.5, "seed": 0}, "must have exactly the fields"),
        ({"type": "Dropout", "p": "0.5", "seed": 0, "step": 0}, "p must be a real number"),
        ({"type": "Dropout", "p": 0.5, "seed": 0, "step": -1}, "step must be an integer >= 0"),
    ],
)
def test_hand_edited_dropout_records_are_refused(edit, match, tmp_path):
    path = fcnn.save(dropout_net(), tmp_path / "net.npz")
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(arrays.pop(serialization.META_KEY).tobytes().decode("utf-8"))
    meta["layers"][2] = edit
    meta["sha256"] = serialization._checksum(arrays)
    encoded = np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)
    with open(tmp_path / "edited.npz", "wb") as file:
        np.savez(file, **arrays, **{serialization.META_KEY: encoded})
    with pytest.raises(ValueError, match=match):
        fcnn.load(tmp_path / "edited.npz")
