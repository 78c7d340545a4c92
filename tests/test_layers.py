"""Sigmoid and Tanh end to end, and the layer declarations the rest of fcnn reads.

The kernels against their twins at the extremes, the layers' gradients in a net,
training, saving and loading (and files of format version 1), and a layer defined
here, outside fcnn, that SGD trains and fcnn.save stores with a float hyper-parameter
only because it declares its parameters and hyper-parameters.
"""

import json
import zipfile

import numpy as np
import pytest
from synthetic import blobs
from test_gradcheck import numerical_gradient

import fcnn
import fcnn._core as core
from fcnn import reference, serialization
from fcnn.dataloader import DataLoader
from fcnn.functional import (
    LAYERS,
    Activation,
    CrossEntropyLoss,
    Layer,
    Linear,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
    register_layer,
)
from fcnn.nn import Module
from fcnn.optim import SGD
from fcnn.training import fused_eligible

DTYPES = (np.float32, np.float64)
BACKENDS = [pytest.param(core, id="core"), pytest.param(reference, id="reference")]
ACTIVATIONS = ("sigmoid", "tanh")
# The exact limits of each function, and the range its outputs must stay in.
LIMITS = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}


def extreme_inputs(dtype):
    """Both signs of 0, ordinary values, ±100 (exp(100) overflows float32) and ±1e4."""
    row = [0.0, -0.0, 0.5, -0.5, 3.0, -3.0, 20.0, -20.0, 88.0, -88.0, 100.0, -100.0, 1e4, -1e4]
    return np.array([row, row[::-1]], dtype=dtype)


# ---------------------------------------------------------------------------- the kernels


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_kernels_match_twins_at_the_extremes(name, dtype):
    x = extreme_inputs(dtype)
    dout = np.random.default_rng(0).standard_normal(x.shape).astype(dtype)
    tolerance = 1e-6 if dtype == np.float32 else 1e-14
    core_out = getattr(core, f"{name}_forward")(x)
    reference_out = getattr(reference, f"{name}_forward")(x)
    assert core_out.dtype == reference_out.dtype == dtype
    np.testing.assert_allclose(core_out, reference_out, rtol=tolerance, atol=tolerance)
    low, high = LIMITS[name]
    assert np.all(np.isfinite(core_out)) and np.all((core_out >= low) & (core_out <= high))
    # At ±1e4 the limits exactly, never past them.
    huge = np.abs(x) >= 1e4
    np.testing.assert_array_equal(core_out[huge], np.where(x[huge] > 0, high, low))
    core_grad = getattr(core, f"{name}_backward")(dout, core_out)
    reference_grad = getattr(reference, f"{name}_backward")(dout, reference_out)
    assert core_grad.dtype == dtype
    assert np.all(np.isfinite(core_grad))
    np.testing.assert_allclose(core_grad, reference_grad, rtol=tolerance, atol=tolerance)
    # Saturated units pass no gradient.
    assert np.all(core_grad[huge] == 0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_is_symmetric_and_tanh_is_odd(backend, dtype):
    x = extreme_inputs(dtype)
    sigmoid = backend.sigmoid_forward(x)
    # sigmoid(-x) = 1 - sigmoid(x): what the exp(-|x|) formulation computes on both sides
    np.testing.assert_allclose(
        backend.sigmoid_forward(-x), 1 - sigmoid, atol=2 * np.finfo(dtype).eps
    )
    tanh = backend.tanh_forward(x)
    np.testing.assert_array_equal(backend.tanh_forward(-x), -tanh)
    np.testing.assert_allclose(tanh, np.tanh(x.astype(np.float64)), atol=np.finfo(dtype).eps)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_nan_stays_nan_and_infinities_saturate(backend, name):
    x = np.array([[np.nan, np.inf, -np.inf]])
    out = getattr(backend, f"{name}_forward")(x)
    low, high = LIMITS[name]
    assert np.isnan(out[0, 0]) and out[0, 1] == high and out[0, 2] == low


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_bad_input_errors_name_the_argument(backend, name):
    forward = getattr(backend, f"{name}_forward")
    backward = getattr(backend, f"{name}_backward")
    x = np.zeros((2, 3))
    with pytest.raises(TypeError, match="^x must be a numpy.ndarray, got list"):
        forward([[0.0]])
    with pytest.raises(TypeError, match="^x must have dtype float32 or float64, got int64"):
        forward(np.zeros((2, 3), np.int64))
    with pytest.raises(ValueError, match="^x must be 2-D"):
        forward(np.zeros(3))
    with pytest.raises(ValueError, match="^x must not be empty"):
        forward(np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"^out must have shape \(2, 3\) to match dout"):
        backward(x, np.zeros((3, 2)))
    with pytest.raises(TypeError, match="^out must have dtype float64 \\(the dtype of dout\\)"):
        backward(x, x.astype(np.float32))
    with pytest.raises(TypeError, match="^dout must be a numpy.ndarray"):
        backward(None, x)


# ---------------------------------------------------------------------------- the layers


def small_net(dtype=np.float64, seed=0, features=6, classes=3):
    return Module(
        Linear(features, 5, dtype=dtype, rng=seed),
        Sigmoid(),
        Linear(5, 4, dtype=dtype, rng=seed + 1),
        Tanh(),
        Linear(4, classes, dtype=dtype, rng=seed + 2),
        Softmax(),
    )


@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_gradients_of_a_sigmoid_tanh_net(backend):
    """loss.backward() through Sigmoid and Tanh layers against finite differences."""
    fcnn.set_backend(backend)
    try:
        net = small_net()
        rng = np.random.default_rng(5)
        x, labels = rng.standard_normal((4, 6)), rng.integers(0, 3, 4)
        criterion = CrossEntropyLoss(net)
        criterion(net(x), labels).backward()
        analytic = {name: array.copy() for name, array in _gradients(net).items()}

        for name, array in net.named_parameters():
            np.testing.assert_allclose(
                analytic[name], _numerical(net, x, labels, array), atol=1e-7, rtol=0
            )
    finally:
        fcnn.set_backend("c")


def _gradients(net):
    return {
        f"layers.{index}.{name}": gradient
        for index, layer in enumerate(net.layers)
        for name, gradient in layer.gradients().items()
    }


def _numerical(net, x, labels, array):
    logits_only = net.layers[:-1]

    def loss():
        logits = x
        for layer in logits_only:
            logits = layer.inference(logits)
        return reference.softmax_cross_entropy_forward(logits, labels)

    return numerical_gradient(loss, array)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", [Sigmoid, Tanh])
def test_training_reduces_the_loss(activation, dtype):
    images, labels = blobs(n=300, features=12, classes=3, seed=2)
    net = Module(
        Linear(12, 16, dtype=dtype, rng=0), activation(), Linear(16, 3, dtype=dtype, rng=1)
    )
    loader = DataLoader((images, labels), batch_size=32, dtype=dtype, shuffle=True, seed=0)
    optimizer = SGD(net, lr=0.5, lr_scheduler=None)
    assert fused_eligible(net, optimizer, loader) is not None  # the Module path trains it
    criterion = CrossEntropyLoss()
    first = criterion(net.inference((images / 255).astype(dtype)), labels).item()
    fcnn.train(net, optimizer, loader, epochs=3, progress=False)
    last = criterion(net.inference((images / 255).astype(dtype)), labels).item()
    assert last < 0.5 * first
    assert np.mean(fcnn.predict(net, images) == labels) > 0.9


def test_layers_forward_and_backward_like_the_kernels():
    x = extreme_inputs(np.float64)
    dout = np.ones_like(x)
    for layer, name in ((Sigmoid(), "sigmoid"), (Tanh(), "tanh")):
        out = layer(x)
        np.testing.assert_array_equal(out, getattr(core, f"{name}_forward")(x))
        np.testing.assert_array_equal(layer.inference(x), out)
        np.testing.assert_array_equal(
            layer.backward(dout), getattr(core, f"{name}_backward")(dout, out)
        )
        assert layer.parameters() == {} and layer.gradients() == {} and layer.config() == {}
        assert repr(layer) == f"{type(layer).__name__}()"


def test_layer_errors():
    with pytest.raises(RuntimeError, match="Sigmoid.backward called before forward"):
        Sigmoid().backward(np.ones((2, 3)))
    with pytest.raises(ValueError, match="x must be 2-D"):
        Tanh()(np.zeros(3))
    with pytest.raises(TypeError, match="x must be a numpy.ndarray, got list"):
        Tanh()([[0.0]])
    with pytest.raises(TypeError, match=r"^layers\[0\]: x must have dtype float32 or float64"):
        Module(Tanh(), Sigmoid()).forward(np.zeros((2, 3), np.float16))


def test_declarations():
    assert Linear.params == (("weight", "weight_grad"), ("bias", "bias_grad"))
    assert Linear.hyperparams == ("num_inputs", "num_outputs")
    for cls in LAYERS.values():
        for kernel in cls.kernel_names:
            assert callable(getattr(core, kernel)) and callable(getattr(reference, kernel))
    assert {"Linear", "ReLU", "Sigmoid", "Tanh", "Softmax"} <= set(LAYERS)
    assert fcnn.Sigmoid is Sigmoid and fcnn.Tanh is Tanh and "Sigmoid" in fcnn.__all__
    assert issubclass(ReLU, Activation)


def test_loss_reads_softmax_through_public_attributes():
    net = small_net()
    x = np.random.default_rng(0).standard_normal((3, 6))
    probs = net(x)
    softmax = net.layers[-1]
    assert softmax.probs is probs and softmax.logits is not None
    np.testing.assert_allclose(probs, core.softmax_forward(softmax.logits))
    CrossEntropyLoss(net)(probs, np.array([0, 1, 2])).backward()
    assert np.any(net.layers[0].weight_grad != 0)
    with pytest.raises(ValueError, match="output must be what the net's forward just returned"):
        CrossEntropyLoss(net)(probs.copy(), np.array([0, 1, 2]))


# ---------------------------------------------------------------------------- a layer from outside


class Shift(Layer):
    """``x * scale + shift``: a trainable vector and a float hyper-parameter."""

    params = (("shift", "shift_grad"),)
    hyperparams = ("features", "scale")

    def __init__(self, features, scale, dtype=np.float64):
        self.features, self.scale = features, scale
        self.shift = np.zeros(features, dtype)
        self.shift_grad = np.zeros_like(self.shift)

    @classmethod
    def param_shapes(cls, config):
        if not isinstance(config["scale"], float):
            raise TypeError(f"scale must be a float, got {type(config['scale']).__name__}")
        return {"shift": (config["features"],)}

    @classmethod
    def from_config(cls, config, dtype):
        return cls(**config, dtype=dtype)

    def forward(self, x):
        return x * self.scale + self.shift

    def backward(self, dout, compute_dx=True):
        self.shift_grad[...] = dout.sum(axis=0)
        return dout * self.scale


@pytest.fixture
def shift_registered():
    register_layer(Shift)
    yield Shift
    del LAYERS["Shift"]


def test_sgd_steps_every_declared_parameter(shift_registered):
    net = Module(Linear(4, 3, rng=0, dtype=np.float64), Shift(3, 0.5))
    optimizer = SGD(net, lr=0.1, lr_scheduler=None, momentum=0.9)
    x, labels = np.random.default_rng(1).standard_normal((5, 4)), np.array([0, 1, 2, 0, 1])
    CrossEntropyLoss(net)(net(x), labels).backward()
    grad = net.layers[1].shift_grad.copy()
    assert np.any(grad != 0)
    optimizer.step()
    np.testing.assert_allclose(net.layers[1].shift, -0.1 * grad)
    assert set(optimizer.velocities) == {"layers.0.weight", "layers.0.bias", "layers.1.shift"}


def test_float_hyperparameter_saved_and_loaded(shift_registered, tmp_path):
    net = Module(Linear(4, 3, rng=0, dtype=np.float64), Shift(3, 0.25))
    net.layers[1].shift[...] = [1.0, -2.0, 0.5]
    path = fcnn.save(net, tmp_path / "shift.npz")
    meta = read_meta(path)
    assert meta["version"] == serialization.FORMAT_VERSION == 2
    assert meta["layers"][1] == {"type": "Shift", "features": 3, "scale": 0.25}
    loaded = fcnn.load(path)
    assert loaded.layers[1].scale == 0.25 and type(loaded.layers[1].scale) is float
    np.testing.assert_array_equal(loaded.layers[1].shift, net.layers[1].shift)
    x = np.random.default_rng(0).standard_normal((2, 4))
    np.testing.assert_array_equal(loaded(x), net(x))
    # The layer's own check of its hyper-parameters, as a load error naming the layer.
    arrays, meta = read_archive(path)
    meta["layers"][1]["scale"] = "big"
    write_archive(path, arrays, meta)
    with pytest.raises(ValueError, match=r"layers\[1\] \(Shift\): scale must be a float, got str"):
        fcnn.load(path)


def test_register_layer_refuses_clashes():
    with pytest.raises(TypeError, match="cls must be a subclass of fcnn.functional.Layer"):
        register_layer(int)

    class Linear(Layer):  # noqa: F811 - another class of the same name
        pass

    with pytest.raises(ValueError, match="a layer named 'Linear' is registered already"):
        register_layer(Linear)
    assert register_layer(Sigmoid) is Sigmoid  # registering a class again changes nothing

    class Typed(Layer):
        hyperparams = ("type",)

    with pytest.raises(ValueError, match="Typed.hyperparams must not hold 'type'"):
        register_layer(Typed)
    assert "Typed" not in LAYERS


# ---------------------------------------------------------------------------- saved models


def read_meta(path):
    with np.load(path, allow_pickle=False) as archive:
        return json.loads(archive[serialization.META_KEY].tobytes().decode("utf-8"))


def read_archive(path):
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(arrays.pop(serialization.META_KEY).tobytes().decode("utf-8"))
    return arrays, meta


def write_archive(path, arrays, meta):
    meta["sha256"] = serialization._checksum(arrays)
    encoded = np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)
    with open(path, "wb") as file:
        np.savez(file, **arrays, **{serialization.META_KEY: encoded})


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_tanh_net_saves_and_loads_exactly(dtype, tmp_path):
    net = small_net(dtype)
    optimizer = SGD(net, lr=0.1, lr_scheduler=None, momentum=0.5)
    x = np.random.default_rng(3).standard_normal((7, 6)).astype(dtype)
    CrossEntropyLoss(net)(net(x), np.arange(7) % 3).backward()
    optimizer.step()
    path = fcnn.save(net, tmp_path / "net.npz", optimizer=optimizer)
    meta = read_meta(path)
    assert meta["version"] == 2
    assert [layer["type"] for layer in meta["layers"]] == [
        "Linear",
        "Sigmoid",
        "Linear",
        "Tanh",
        "Linear",
        "Softmax",
    ]
    assert meta["layers"][1] == {"type": "Sigmoid"}
    checkpoint = serialization.load_checkpoint(path)
    loaded = checkpoint.net
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in net.layers]
    for name, array in net.state_dict().items():
        assert loaded.state_dict()[name].dtype == dtype
        np.testing.assert_array_equal(loaded.state_dict()[name], array)
    np.testing.assert_array_equal(loaded.inference(x), net.inference(x))
    assert set(checkpoint.velocities) == set(net.state_dict())


def test_version_1_file_loads(tmp_path):
    """A file as fcnn 0.1 wrote it, built here by hand: still loads, and a plain net is still
    written in that very format (version 1), so fcnn 0.1 reads it too."""
    rng = np.random.default_rng(0)
    arrays = {
        "layers.0.weight": rng.standard_normal((5, 4)).astype(np.float32),
        "layers.0.bias": rng.standard_normal(4).astype(np.float32),
        "layers.2.weight": rng.standard_normal((4, 3)).astype(np.float32),
        "layers.2.bias": rng.standard_normal(3).astype(np.float32),
    }
    meta = {
        "format": "fcnn-model",
        "version": 1,
        "dtype": "float32",
        "layers": [
            {"type": "Linear", "num_inputs": 5, "num_outputs": 4},
            {"type": "ReLU"},
            {"type": "Linear", "num_inputs": 4, "num_outputs": 3},
            {"type": "Softmax"},
        ],
        "optimizer": None,
        "metadata": {"epochs": 1},
    }
    path = tmp_path / "v1.npz"
    write_archive(path, arrays, dict(meta))
    net = fcnn.load(path)
    assert [type(layer) for layer in net.layers] == [Linear, ReLU, Linear, Softmax]
    for name, array in arrays.items():
        np.testing.assert_array_equal(net.state_dict()[name], array)
    again = fcnn.save(net, tmp_path / "again.npz", metadata={"epochs": 1})
    saved = read_meta(again)
    assert {key: saved[key] for key in meta} == meta
    with zipfile.ZipFile(again) as archive:
        assert sorted(archive.namelist()) == sorted(
            [f"{name}.npy" for name in arrays] + [f"{serialization.META_KEY}.npy"]
        )


def test_hand_edited_layer_records_are_refused(tmp_path):
    path = fcnn.save(small_net(), tmp_path / "net.npz")
    for index, edit, match in (
        (1, {"type": "Sigmoid", "slope": 2.0}, r"layers\[1\] \(Sigmoid\) must have exactly"),
        (0, {"type": "Linear", "num_inputs": True, "num_outputs": 5}, "num_inputs must be an"),
        (
            0,
            {"type": "Linear", "num_inputs": 0, "num_outputs": 5},
            "num_inputs must be an integer >= 1",
        ),
        (0, {"type": "Linear", "num_inputs": 6.0, "num_outputs": 5}, "num_inputs must be an"),
    ):
        arrays, meta = read_archive(path)
        meta["layers"][index] = edit
        write_archive(tmp_path / "edited.npz", arrays, meta)
        with pytest.raises(ValueError, match=match):
            fcnn.load(tmp_path / "edited.npz")
