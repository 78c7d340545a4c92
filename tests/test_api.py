"""The original project's API: Module, layers, loss, SGD, scheduler, DataLoader, backends."""

import ast
from pathlib import Path

import numpy as np
import pytest

import fcnn
from fcnn.dataloader import DataLoader
from fcnn.functional import CrossEntropyLoss, Linear, ReLU, Softmax
from fcnn.nn import Module
from fcnn.optim import SGD, ConstantScheduler, ExponentialScheduler


@pytest.fixture(params=["c", "numpy"])
def backend(request):
    fcnn.set_backend(request.param)
    yield request.param
    fcnn.set_backend("c")


def small_net(dtype=np.float64, seed=0, sizes=(12, 9, 4)):
    return Module(
        Linear(sizes[0], sizes[1], dtype=dtype, rng=seed),
        ReLU(),
        Linear(sizes[1], sizes[2], dtype=dtype, rng=seed + 1),
        Softmax(),
    )


def random_batch(batch_size=7, features=12, classes=4, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((batch_size, features)).astype(dtype),
        rng.integers(0, classes, batch_size),
    )


# ---------------------------------------------------------------------------- Module and loss


def test_forward_returns_probabilities(backend):
    net = small_net()
    x, _ = random_batch()
    probs = net(x)
    assert probs.shape == (7, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)


def test_loss_gradient_matches_finite_differences(backend):
    """loss.backward() through the fused Softmax gives d(loss)/d(param) for every parameter."""
    net = small_net()
    x, y = random_batch()
    criterion = CrossEntropyLoss(net)
    criterion(net(x), y).backward()
    eps = 1e-6
    for layer in net.linear_layers():
        for name, param in layer.parameters().items():
            grad = layer.gradients()[name]
            flat, flat_grad = param.reshape(-1), grad.reshape(-1)
            for i in range(0, flat.size, max(1, flat.size // 10)):
                saved = flat[i]
                flat[i] = saved + eps
                up = criterion(net(x), y).item()
                flat[i] = saved - eps
                down = criterion(net(x), y).item()
                flat[i] = saved
                assert flat_grad[i] == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-8)


def test_loss_matches_log_of_probabilities(backend):
    net = small_net()
    x, y = random_batch()
    probs = net(x)
    loss = CrossEntropyLoss(net)(probs, y)
    assert loss.item() == pytest.approx(-np.mean(np.log(probs[np.arange(7), y])), rel=1e-12)
    assert isinstance(loss.item(), float) and float(loss) == loss.item()


def test_loss_without_softmax_takes_logits():
    net = Module(Linear(12, 4, dtype=np.float64, rng=0))
    x, y = random_batch()
    logits = net(x)
    loss = CrossEntropyLoss(net)(logits, y)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    assert loss.item() == pytest.approx(-log_probs[np.arange(7), y].mean(), rel=1e-12)
    dlogits = loss.backward()
    np.testing.assert_allclose(net.layers[0].bias_grad, dlogits.sum(axis=0), rtol=1e-12)


def test_loss_is_stable_for_huge_logits():
    net = Module(Linear(2, 3, dtype=np.float64, rng=0), Softmax())
    net.layers[0].weight[...] = [[1e4, -1e4, 0.0], [0.0, 0.0, 0.0]]
    loss = CrossEntropyLoss(net)(net(np.array([[1.0, 0.0]])), np.array([1]))
    assert loss.item() == pytest.approx(2e4, rel=1e-12)


def test_loss_refuses_output_it_cannot_trace():
    net = small_net()
    x, y = random_batch()
    probs = net(x)
    with pytest.raises(ValueError, match="^output must be what the net's forward just returned"):
        CrossEntropyLoss(net)(probs.copy(), y)


def test_loss_without_net_returns_gradient_only():
    x, y = random_batch()
    loss = CrossEntropyLoss()(x[:, :4].copy(), y)
    assert loss.backward().shape == (7, 4)


def test_backward_before_forward_is_an_error():
    with pytest.raises(RuntimeError, match="before forward"):
        Linear(3, 2).backward(np.zeros((1, 2), np.float32))


def test_module_rejects_non_layers():
    with pytest.raises(TypeError, match=r"^layers\[1\] must be an fcnn layer"):
        Module(Linear(3, 2), "relu")


def test_module_subclass_as_in_original():
    class Net(Module):
        def __init__(self):
            self.layers = [Linear(5, 3, rng=0), ReLU(), Linear(3, 2, rng=1), Softmax()]

    net = Net()
    assert net(np.ones((4, 5), np.float32)).shape == (4, 2)
    assert [name for name, _ in net.named_parameters()] == [
        "layers.0.weight",
        "layers.0.bias",
        "layers.2.weight",
        "layers.2.bias",
    ]


def test_state_dict_round_trip():
    net, other = small_net(seed=0), small_net(seed=5)
    held = other.layers[0].weight
    other.load_state_dict(net.state_dict())
    assert other.layers[0].weight is held  # loaded in place
    for (_, a), (_, b) in zip(net.named_parameters(), other.named_parameters(), strict=True):
        np.testing.assert_array_equal(a, b)
    state = net.state_dict()
    state["layers.0.weight"][...] = 0  # a copy: the net is untouched
    assert np.any(net.layers[0].weight != 0)


def test_load_state_dict_errors():
    net = small_net()
    state = net.state_dict()
    with pytest.raises(ValueError, match="missing \\['layers.0.bias'\\]"):
        net.load_state_dict({k: v for k, v in state.items() if k != "layers.0.bias"})
    state["layers.0.weight"] = state["layers.0.weight"].T.copy()
    with pytest.raises(ValueError, match=r"must have shape \(12, 9\), got \(9, 12\)"):
        net.load_state_dict(state)


# ---------------------------------------------------------------------------- Linear


def test_linear_initialisation():
    kaiming = Linear(784, 1024, rng=0)
    assert kaiming.weight.dtype == np.float32 and kaiming.weight.shape == (784, 1024)
    assert kaiming.weight.std() == pytest.approx(np.sqrt(2 / 784), rel=0.01)
    assert not kaiming.bias.any()
    normal = Linear(784, 1024, init="normal", dtype=np.float64, rng=0)
    assert normal.weight.dtype == np.float64
    assert normal.weight.std() == pytest.approx(1.0, rel=0.01)
    assert kaiming.in_features == 784 and kaiming.out_features == 1024
    np.testing.assert_array_equal(Linear(4, 3, rng=7).weight, Linear(4, 3, rng=7).weight)


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        (
            (2**40, 2**40),
            {},
            ValueError,
            r"^num_inputs must be an integer >= 1 and <= 2147483647, got 1099511627776",
        ),
        ((0, 3), {}, ValueError, r"^num_inputs must be an integer >= 1 and <= 2147483647, got 0"),
        ((3, -1), {}, ValueError, r"^num_outputs must be an integer >= 1 and"),
        ((3.5, 2), {}, TypeError, r"^num_inputs must be an integer, got float"),
        ((3, 2), {"dtype": np.int32}, TypeError, r"^dtype must be float32 or float64, got int32"),
        ((3, 2), {"init": "xavier"}, ValueError, r"^init must be 'kaiming' or 'normal'"),
    ],
)
def test_linear_bad_settings(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        Linear(*args, **kwargs)


@pytest.mark.parametrize("size", [2**20, 2**31 - 1])
def test_linear_too_big_to_allocate(size):
    with pytest.raises(MemoryError, match=rf"^Linear\({size}, {size}\) needs .* GiB"):
        Linear(size, size)


def test_linear_bad_input():
    layer = Linear(4, 3)
    with pytest.raises(ValueError, match=r"^x must have 4 features for Linear\(4, 3"):
        layer(np.ones((2, 5), np.float32))
    with pytest.raises(TypeError, match="^x must be a numpy.ndarray, got list"):
        layer([[1.0, 2.0, 3.0, 4.0]])
    with pytest.raises(ValueError, match=r"^x must be 2-D"):
        layer(np.ones(4, np.float32))


def test_linear_casts_input_to_its_dtype():
    layer = Linear(4, 3, rng=0)
    out = layer(np.ones((2, 4), np.uint8))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.ones((2, 4), np.float32) @ layer.weight, rtol=1e-6)


# ---------------------------------------------------------------------------- optimiser


def test_sgd_applies_weight_decay_rule_to_weights_and_biases(backend):
    net = small_net()
    x, y = random_batch()
    net.layers[0].bias[...] = 0.3
    CrossEntropyLoss(net)(net(x), y).backward()
    before = {name: p.copy() for name, p in net.named_parameters()}
    grads = [g for layer in net.linear_layers() for g in layer.gradients().values()]
    optimizer = SGD(net, lr=0.1, lr_scheduler=None, weight_decay=0.01)
    optimizer.step()
    for (name, param), grad in zip(net.named_parameters(), grads, strict=True):
        np.testing.assert_allclose(
            param, (1 - 0.01 * 0.1) * before[name] - 0.1 * grad, rtol=1e-13, atol=1e-15
        )


def test_sgd_follows_staircase_schedule():
    net = Module(Linear(2, 2, rng=0))
    optimizer = SGD(net, lr=0.5, lr_scheduler=ExponentialScheduler, weight_decay=1e-5)
    net.layers[0].weight_grad[...] = 0
    lrs = []
    for _ in range(1001):
        lrs.append(optimizer.lr)
        optimizer.step()
    assert lrs[0] == lrs[499] == 0.5
    assert lrs[500] == lrs[999] == 0.25
    assert lrs[1000] == 0.125
    assert optimizer.get_last_lr() == [0.125]
    assert optimizer.state_dict()["step_count"] == 1001


def test_sgd_scheduler_forms():
    net = Module(Linear(2, 2))
    scheduler = ExponentialScheduler(0.2, lr_step=10, lr_decay=0.1)
    assert SGD(net, lr_scheduler=scheduler).lr == 0.2
    assert isinstance(SGD(net, lr=0.3, lr_scheduler=None).scheduler, ConstantScheduler)
    with pytest.raises(ValueError, match="differs from the scheduler's initial_lr"):
        SGD(net, lr=0.5, lr_scheduler=scheduler)
    with pytest.raises(TypeError, match="^lr is required"):
        SGD(net)
    with pytest.raises(ValueError, match="^lr must be finite and >= 0"):
        SGD(net, lr=-1.0)
    with pytest.raises(ValueError, match="^weight_decay must be finite and >= 0"):
        SGD(net, lr=0.1, weight_decay=float("nan"))
    with pytest.raises(TypeError, match="^weight_decay must be a real number, got bool"):
        SGD(net, lr=0.1, weight_decay=True)
    with pytest.raises(TypeError, match="^net must be an fcnn.nn.Module"):
        SGD([net], lr=0.1)
    assert SGD(net, lr=0.1, weight_decay=0.25).weight_decay == 0.25
    assert SGD(net, 0.1, None, 0.25).weight_decay == 0.25


def test_original_names_stay_accepted():
    """``SGD(decay=)`` and ``ExponentialScheduler(stage_length=, decay=)`` are the original's."""
    net = Module(Linear(2, 2))
    assert SGD(net, lr=0.1, decay=0.25).weight_decay == 0.25
    with pytest.raises(ValueError, match="^decay must be finite and >= 0"):
        SGD(net, lr=0.1, decay=float("nan"))
    with pytest.raises(TypeError, match="^give weight_decay or decay, not both"):
        SGD(net, lr=0.1, decay=0.1, weight_decay=0.1)
    old = ExponentialScheduler(0.2, stage_length=10, decay=0.1)
    assert (old.lr_step, old.lr_decay) == (10, 0.1)
    assert old.state_dict() == ExponentialScheduler(0.2, 10, 0.1).state_dict()
    with pytest.raises(TypeError, match="^give lr_step or stage_length, not both"):
        ExponentialScheduler(0.2, lr_step=10, stage_length=10)
    with pytest.raises(TypeError, match="^give lr_decay or decay, not both"):
        ExponentialScheduler(0.2, lr_decay=0.5, decay=0.5)
    with pytest.raises(ValueError, match=r"^decay must be in \(0, 1\]"):
        ExponentialScheduler(0.2, decay=1.5)


def test_optimizer_state_with_the_original_names_loads():
    """Checkpoints written before the names were unified keep resuming."""
    net = Module(Linear(2, 2))
    optimizer = SGD(net, lr=0.1)
    optimizer.load_state_dict(
        {
            "name": "sgd",
            "weight_decay": 0.01,
            "step_count": 7,
            "scheduler": {
                "name": "exponential",
                "initial_lr": 0.3,
                "stage_length": 20,
                "decay": 0.8,
                "staircase": True,
            },
        }
    )
    assert (optimizer.scheduler.lr_step, optimizer.scheduler.lr_decay) == (20, 0.8)
    assert optimizer.step_count == 7 and optimizer.weight_decay == 0.01
    assert set(optimizer.state_dict()["scheduler"]) == {
        "name",
        "initial_lr",
        "lr_step",
        "lr_decay",
        "staircase",
    }


def test_exponential_scheduler_formula(backend):
    staircase = ExponentialScheduler(0.5, lr_step=500, lr_decay=0.5)
    continuous = ExponentialScheduler(0.5, lr_step=500, lr_decay=0.5, staircase=False)
    for step in (0, 1, 499, 500, 501, 2345, 10**6):
        assert staircase(step) == pytest.approx(0.5 * 0.5 ** (step // 500), rel=1e-15)
        assert continuous(step) == pytest.approx(0.5 * 0.5 ** (step / 500), rel=1e-14)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lr_step": 0}, "^lr_step must be an integer >= 1"),
        ({"lr_decay": 0.0}, r"^lr_decay must be in \(0, 1\]"),
        ({"lr_decay": 1.5}, r"^lr_decay must be in \(0, 1\]"),
        ({"initial_lr": float("inf")}, "^initial_lr must be finite"),
    ],
)
def test_exponential_scheduler_bad_settings(kwargs, message):
    settings = {"initial_lr": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        ExponentialScheduler(**settings)


def test_step_before_backward_uses_zero_gradients():
    net = Module(Linear(2, 2, rng=0))
    weight = net.layers[0].weight.copy()
    SGD(net, lr=0.1, lr_scheduler=None).step()
    np.testing.assert_array_equal(net.layers[0].weight, weight)


# ---------------------------------------------------------------------------- DataLoader


def test_dataloader_batches_and_rescales():
    images = np.arange(10 * 2 * 3, dtype=np.uint8).reshape(10, 2, 3) * 4
    labels = np.arange(10, dtype=np.uint8)
    loader = DataLoader((images, labels), batch_size=4, shuffle=False)
    batches = list(loader)
    assert len(loader) == 3 and [len(y) for _, y in batches] == [4, 4, 2]
    x, y = batches[0]
    assert x.dtype == np.float32 and x.shape == (4, 6) and y.dtype == np.int64
    np.testing.assert_array_equal(x, images[:4].reshape(4, 6).astype(np.float32) / 255)
    assert np.shares_memory(loader.images, images)  # no float copy of the data set is kept
    assert len(DataLoader((images, labels), batch_size=4, drop_last=True)) == 2
    x64, _ = next(iter(DataLoader((images, labels), dtype=np.float64)))
    assert x64.dtype == np.float64 and x64.max() <= 1.0


def test_dataloader_float_images_are_not_rescaled():
    images = np.full((3, 4), 0.5, np.float64)
    x, _ = next(iter(DataLoader((images, np.zeros(3, np.int64)), shuffle=False)))
    np.testing.assert_array_equal(x, np.full((3, 4), 0.5, np.float32))


def test_dataloader_seeded_shuffling_is_reproducible():
    images = np.arange(100, dtype=np.uint8).reshape(100, 1)
    labels = np.arange(100)

    def epochs(seed):
        loader = DataLoader((images, labels), batch_size=10, seed=seed)
        return [np.concatenate([y for _, y in loader]) for _ in range(2)]

    first, second = epochs(0), epochs(0)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], first[1])  # a new order every epoch
    assert sorted(first[0]) == list(range(100))
    assert not np.array_equal(epochs(1)[0], first[0])


@pytest.mark.parametrize(
    "dataset, kwargs, error, message",
    [
        ((np.zeros((3, 4)), np.zeros(2, int)), {}, ValueError, r"^labels must have shape \(3,\)"),
        ((np.zeros((3, 4)), np.zeros(3)), {}, TypeError, "^labels must have an integer dtype"),
        (([[0.0]], np.zeros(1, int)), {}, TypeError, "^images must be a numpy.ndarray"),
        ((np.zeros((0, 4)), np.zeros(0, int)), {}, ValueError, "^images must have shape"),
        (
            (np.zeros((3, 4)), np.zeros(3, int)),
            {"batch_size": 0},
            ValueError,
            "^batch_size must be an integer >= 1",
        ),
        (
            (np.zeros((3, 4)), np.zeros(3, int)),
            {"dtype": np.int8},
            TypeError,
            "^dtype must be float32",
        ),
        (np.zeros((3, 4)), {}, TypeError, r"^dataset must be a pair"),
    ],
)
def test_dataloader_bad_input(dataset, kwargs, error, message):
    with pytest.raises(error, match=message):
        DataLoader(dataset, **kwargs)


# ---------------------------------------------------------------------------- backends


def test_set_backend():
    assert fcnn.get_backend() == "c"
    with pytest.raises(ValueError, match="^backend must be one of"):
        fcnn.set_backend("cuda")


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_training_runs_agree_between_backends(dtype, rtol):
    """100 steps of the Module API on the C core and on the NumPy twin end at the same weights."""
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (640, 20), dtype=np.uint8)
    labels = rng.integers(0, 5, 640)
    finals = {}
    for name in ("c", "numpy"):
        fcnn.set_backend(name)
        try:
            net = small_net(dtype=dtype, sizes=(20, 16, 5))
            criterion = CrossEntropyLoss(net)
            optimizer = SGD(
                net, lr=0.2, lr_scheduler=ExponentialScheduler(0.2, 30), weight_decay=1e-4
            )
            loader = DataLoader((images, labels), batch_size=64, seed=1, dtype=dtype)
            for _ in range(10):
                for x, y in loader:
                    criterion(net(x), y).backward()
                    optimizer.step()
            assert optimizer.step_count == 100
            finals[name] = net.state_dict()
        finally:
            fcnn.set_backend("c")
    for key, value in finals["c"].items():
        assert value.dtype == dtype
        np.testing.assert_allclose(value, finals["numpy"][key], rtol=rtol, atol=rtol * 1e-2)


# ---------------------------------------------------------------------------- MNIST


@pytest.mark.slow
def test_mnist_original_recipe_reaches_97_percent_in_3_epochs(mnist_dir):
    """The original loop and settings (784-1024-10, b64, lr 0.5, alpha 0.5, T 500, decay 1e-5)."""
    from fcnn.datasets import load_mnist

    (train_images, train_labels), (test_images, test_labels) = load_mnist(
        mnist_dir, download=False, progress=False
    )
    net = Module(Linear(784, 1024, rng=0), ReLU(), Linear(1024, 10, rng=1), Softmax())
    criterion = CrossEntropyLoss(net)
    optimizer = SGD(net, lr=0.5, lr_scheduler=ExponentialScheduler, weight_decay=1e-5)
    loader = DataLoader((train_images, train_labels), batch_size=64, seed=0)
    for _ in range(3):
        for images, labels in loader:
            criterion(net(images), labels).backward()
            optimizer.step()
    predictions = net(test_images.reshape(-1, 784).astype(np.float32) / 255).argmax(axis=1)
    assert (predictions == test_labels).mean() >= 0.97


# ---------------------------------------------------------------------------- in place, and
# the private kernel behind it


def backward_out_case(layout, dtype, seed=0, sizes=(7, 13, 5)):
    """Inputs of linear_backward in a memory layout: "c", "fortran", "strided" (every other
    column of a wider array) or "readonly"."""
    rng = np.random.default_rng(seed)
    B, C, OC = sizes
    arrays = [rng.standard_normal(shape).astype(dtype) for shape in ((B, OC), (B, C), (C, OC))]
    if layout == "fortran":
        arrays = [np.asfortranarray(array) for array in arrays]
    elif layout == "strided":
        arrays = [np.repeat(array, 2, axis=1)[:, ::2] for array in arrays]
    elif layout == "readonly":
        for array in arrays:
            array.flags.writeable = False
    return arrays


@pytest.mark.parametrize("layout", ["c", "fortran", "strided", "readonly"])
@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("compute_dx", [True, False])
def test_linear_backward_out_twins_linear_backward(layout, dtype, rtol, compute_dx):
    """C and NumPy twin write what linear_backward returns, into the given arrays."""
    from fcnn import _core, reference

    dout, x, weight = backward_out_case(layout, dtype)
    expected = reference.linear_backward(dout, x, weight, compute_dx)
    for module in (_core, reference):
        dweight, dbias = (
            np.full(weight.shape, np.nan, dtype),
            np.full(weight.shape[1], np.nan, dtype),
        )
        dx = np.full(x.shape, np.nan, dtype) if compute_dx else None
        assert module._linear_backward_out(dx, dweight, dbias, dout, x, weight) is None
        for got, want in zip((dweight, dbias, dx), expected, strict=True):
            if want is None:
                assert got is None
            else:
                assert got.dtype == dtype
                np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)


def backward_out_errors():
    f32, f64 = np.float32, np.float64
    B, C, OC = 7, 13, 5

    def case(**changes):
        arrays = {
            "dx": np.zeros((B, C), f32),
            "dweight": np.zeros((C, OC), f32),
            "dbias": np.zeros(OC, f32),
            "dout": np.ones((B, OC), f32),
            "x": np.ones((B, C), f32),
            "weight": np.ones((C, OC), f32),
        }
        arrays.update(changes)
        return arrays

    shared = np.zeros((B, C), f32)
    return [
        (case(dweight=np.zeros((OC, C), f32)), ValueError, r"^dweight must have shape \(13, 5\)"),
        (case(dbias=np.zeros(OC + 1, f32)), ValueError, r"^dbias must have shape \(5,\)"),
        (case(dx=np.zeros((B, C + 1), f32)), ValueError, r"^dx must have shape \(7, 13\)"),
        (case(dweight=np.zeros((C, OC), f64)), TypeError, "^dweight must have dtype float32"),
        (case(dweight=np.zeros((OC, C), f32).T), TypeError, "^dweight must be a writable"),
        (case(dbias=np.zeros(OC, f32)[::-1]), TypeError, "^dbias must be a writable"),
        (case(dx=shared, x=shared), ValueError, "^dx must not share memory with x"),
        (
            case(dweight=np.zeros((C, OC), f32)[:, :], weight=None),
            TypeError,
            "^weight must be a numpy.ndarray",
        ),
        (case(dout=np.ones((B, OC), np.int32)), TypeError, "^dout must have dtype float32 or"),
        (case(x=np.ones((B + 1, C), f32)), ValueError, r"^x must have shape \(7, \*\)"),
        (case(dx=[[0.0]]), TypeError, "^dx must be a numpy.ndarray"),
    ]


@pytest.mark.parametrize("arrays, error, message", backward_out_errors())
def test_linear_backward_out_bad_input(arrays, error, message):
    from fcnn import _core, reference

    for module in (_core, reference):
        with pytest.raises(error, match=message):
            module._linear_backward_out(**arrays)


def test_linear_backward_out_refuses_aliased_outputs():
    from fcnn import _core, reference

    B = C = OC = 4
    block = np.zeros((C, OC), np.float32)
    for module in (_core, reference):
        with pytest.raises(ValueError, match="^dweight must not share memory with dx"):
            module._linear_backward_out(
                block,
                block,
                np.zeros(OC, np.float32),
                np.ones((B, OC), np.float32),
                np.ones((B, C), np.float32),
                np.ones((C, OC), np.float32),
            )


def test_gradients_are_written_in_place_and_kept_between_steps(backend):
    net = small_net()
    x, y = random_batch()
    criterion = CrossEntropyLoss(net)
    first = net.layers[0]
    held = first.weight_grad, first.bias_grad
    criterion(net(x), y).backward()
    assert first.weight_grad is held[0] and first.bias_grad is held[1]
    expected = [g.copy() for g in held]
    x2, y2 = random_batch(seed=1)
    criterion(net(x2), y2).backward()
    assert first.weight_grad is held[0]
    assert not np.array_equal(first.weight_grad, expected[0])  # overwritten, not added
    criterion(net(x), y).backward()
    np.testing.assert_array_equal(first.weight_grad, expected[0])


def test_replaced_gradient_arrays_are_replaced_again_when_unusable():
    """A gradient someone swapped for a read-only or differently shaped array: backward
    starts from fresh arrays instead of failing."""
    net = small_net()
    x, y = random_batch()
    first = net.layers[0]
    first.weight_grad = np.zeros((3, 3))
    first.bias_grad = np.zeros(first.num_outputs)
    first.bias_grad.flags.writeable = False
    CrossEntropyLoss(net)(net(x), y).backward()
    assert first.weight_grad.shape == first.weight.shape and first.bias_grad.flags.writeable
    reference_net = small_net()
    CrossEntropyLoss(reference_net)(reference_net(x), y).backward()
    np.testing.assert_array_equal(first.weight_grad, reference_net.layers[0].weight_grad)


def test_linear_backward_reuses_its_input_gradient_per_batch_size():
    layer = Linear(4, 3, dtype=np.float64, rng=0)
    layer(np.ones((2, 4)))
    first = layer.backward(np.ones((2, 3)))
    second = layer.backward(np.full((2, 3), 2.0))
    assert second is first  # the same batch size: the same array, overwritten
    np.testing.assert_array_equal(second, np.full((2, 3), 2.0) @ layer.weight.T)
    layer(np.ones((5, 4)))
    assert layer.backward(np.ones((5, 3))).shape == (5, 4)
    assert layer.backward(np.ones((5, 3)), compute_dx=False) is None


def test_sgd_plan_follows_new_velocities_layers_and_momentum():
    """SGD.step caches which arrays it updates; replacing what it cached takes effect."""
    net = small_net()
    x, y = random_batch()
    criterion = CrossEntropyLoss(net)
    optimizer = SGD(net, lr=0.1, lr_scheduler=None, momentum=0.9)
    criterion(net(x), y).backward()
    optimizer.step()
    assert sorted(optimizer.velocities) == [name for name, _ in sorted(net.named_parameters())]
    grad = net.layers[0].weight_grad.copy()
    np.testing.assert_array_equal(optimizer.velocities["layers.0.weight"], grad)
    # A new velocities dict (as fcnn.load_checkpoint sets it) is used from the next step.
    optimizer.velocities = {name: np.zeros_like(p) for name, p in net.named_parameters()}
    fresh = optimizer.velocities["layers.0.weight"]
    optimizer.step()
    np.testing.assert_array_equal(fresh, grad)
    # Momentum switched off: no velocity is touched.
    optimizer.momentum = 0.0
    optimizer.step()
    np.testing.assert_array_equal(fresh, grad)
    # A new layer list: its Linear layers are the ones stepped.
    replacement = Linear(12, 9, dtype=np.float64, rng=9)
    replacement.weight_grad[...] = 1.0
    before = replacement.weight.copy()
    net.layers[0] = replacement
    optimizer.step()
    np.testing.assert_allclose(replacement.weight, before - 0.1)
    # A new weight array on a layer: stepped, not the old one.
    new_weight = np.ones_like(replacement.weight)
    replacement.weight = new_weight
    optimizer.step()
    np.testing.assert_allclose(new_weight, 0.9)


def test_inference_and_logits_match_forward(backend):
    for net in (small_net(), Module(Linear(12, 4, dtype=np.float64, rng=0), ReLU())):
        x, _ = random_batch()
        output = net(x)
        np.testing.assert_array_equal(net.inference(x), output)
        last = net.layers[-1]
        expected_logits = last.logits if isinstance(last, Softmax) else output
        np.testing.assert_array_equal(net.logits(x), expected_logits)


def test_subclass_in_the_original_style_trains_and_infers():
    class Net(Module):
        def __init__(self):  # no super().__init__(), as in the original project
            self.layers = [Linear(5, 3, rng=0), ReLU(), Linear(3, 2, rng=1), Softmax()]

    net = Net()
    x, y = np.ones((4, 5), np.float32), np.array([0, 1, 1, 0])
    optimizer = SGD(net, lr=0.1, lr_scheduler=None)
    CrossEntropyLoss(net)(net(x), y).backward()
    optimizer.step()
    assert net.logits(x).shape == (4, 2) and net.inference(x).shape == (4, 2)


def test_trained_net_and_optimizer_pickle_and_deepcopy():
    """The per-net training lock is left out of copies: each copy trains on its own."""
    import copy
    import pickle

    net = small_net()
    x, y = random_batch()
    optimizer = SGD(net, lr=0.1, lr_scheduler=None, momentum=0.9)
    CrossEntropyLoss(net)(net(x), y).backward()
    optimizer.step()
    for clone in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        np.testing.assert_array_equal(clone.inference(x), net.inference(x))
        CrossEntropyLoss(clone)(clone(x), y).backward()
    restored = pickle.loads(pickle.dumps(optimizer))
    restored.step()
    assert restored.step_count == 2 and optimizer.step_count == 1
    np.testing.assert_array_equal(net.layers[0].weight, optimizer.net.layers[0].weight)
    assert not np.array_equal(restored.net.layers[0].weight, net.layers[0].weight)


def test_a_bad_dout_leaves_the_gradients_as_they_were():
    layer = Linear(4, 3, dtype=np.float64, rng=0)
    layer(np.ones((2, 4)))
    layer.backward(np.ones((2, 3)))
    held, before = layer.weight_grad, layer.weight_grad.copy()
    with pytest.raises(ValueError, match=r"^dout must be a float64 array of shape \(2, 3\)"):
        layer.backward(np.ones((5, 3)))
    assert layer.weight_grad is held
    np.testing.assert_array_equal(held, before)


def test_loss_refuses_an_output_the_last_forward_did_not_return():
    """Without a final Softmax too: inference's output, or an older batch's, would pair the
    loss's gradient with another pass's caches."""
    net = Module(Linear(12, 4, dtype=np.float64, rng=0))
    criterion = CrossEntropyLoss(net)
    x, y = random_batch()
    older = net(x)
    net(x[::-1].copy())
    for output in (older, net.inference(x)):
        with pytest.raises(ValueError, match="^output must be what the net's forward just"):
            criterion(output, y)
    criterion(net(x), y).backward()


def test_no_module_imports_another_modules_private_names():
    """A name with a leading underscore stays in its module; fcnn._checks holds what is shared."""
    package = Path(fcnn.__file__).parent
    offenders = []
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            # `from . import _core` imports a module, not a private name.
            if isinstance(node, ast.ImportFrom) and node.level and node.module:
                offenders += [
                    f"{path.name}: from .{node.module} import {alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_")
                ]
    assert offenders == []
