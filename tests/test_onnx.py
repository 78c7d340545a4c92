"""fcnn.export_onnx and `fcnn export`: run by onnxruntime, the exported graph answers as fcnn."""

import json
import subprocess
import sys

import numpy as np
import pytest
from synthetic import blobs

import fcnn
from fcnn.cli import main
from fcnn.dataloader import DataLoader
from fcnn.datasets import load_mnist
from fcnn.functional import Dropout, Linear, ReLU, Sigmoid, Softmax, Tanh
from fcnn.nn import Module
from fcnn.optim import SGD
from fcnn.training import TrainConfig, fit

onnx = pytest.importorskip("onnx", reason="ONNX export needs onnx: pip install fcnn[onnx]")
onnxruntime = pytest.importorskip("onnxruntime", reason="running the export needs onnxruntime")


def run_onnx(path, images):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probabilities, labels = session.run(None, {"input": images})
    return probabilities, labels


def as_input(images, dtype):
    """What the graph takes: one flattened image per row, in [0, 1]."""
    flat = images.reshape(images.shape[0], -1)
    return (flat / 255).astype(dtype) if flat.dtype == np.uint8 else flat.astype(dtype)


@pytest.fixture(scope="module")
def mnist_net(mnist_dir):
    (train_images, train_labels), test = load_mnist(mnist_dir, download=False, progress=False)
    config = TrainConfig(hidden=(64,), epochs=1, lr=0.05)
    net, _, _ = fit(
        config, (train_images[:20_000], train_labels[:20_000]), num_classes=10, progress=False
    )
    return net, test


def test_mnist_test_set_same_predictions_and_probabilities(mnist_net, tmp_path):
    net, (test_images, _) = mnist_net
    path = fcnn.export_onnx(net, tmp_path / "mnist.onnx", class_names=list("0123456789"))
    assert path == tmp_path / "mnist.onnx"
    probabilities, labels = run_onnx(path, as_input(test_images, np.float32))
    expected_probabilities = fcnn.predict_proba(net, test_images)
    np.testing.assert_array_equal(labels, fcnn.predict(net, test_images))
    np.testing.assert_allclose(probabilities, expected_probabilities, rtol=0, atol=1e-5)
    assert probabilities.dtype == np.float32 and labels.dtype == np.int64
    assert labels.shape == (10_000,)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "layers",
    [
        "linear",  # logistic regression, no Softmax at the end
        "linear-softmax",
        "linear-relu-linear",  # raw outputs: the export appends a Softmax
        "linear-relu-linear-relu-linear-softmax",
    ],
)
def test_every_trainable_stack_and_dtype(layers, dtype, tmp_path):
    images, labels = blobs(n=300, features=17, classes=3, seed=1)
    sizes = {
        "linear": [17, 3],
        "linear-softmax": [17, 3],
        "linear-relu-linear": [17, 8, 3],
        "linear-relu-linear-relu-linear-softmax": [17, 9, 5, 3],
    }[layers]
    rng = np.random.default_rng(0)
    stack = []
    for index, (inputs, outputs) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        stack.append(Linear(inputs, outputs, dtype=dtype, rng=rng))
        if index < len(sizes) - 2:
            stack.append(ReLU())
    if layers.endswith("softmax"):
        stack.append(Softmax())
    net = Module(stack)
    optimizer = SGD(net, lr=0.1)
    loader = DataLoader((images, labels), batch_size=32, dtype=dtype)
    fcnn.train(net, optimizer, loader, epochs=2, progress=False)

    path = fcnn.export_onnx(net, tmp_path / "net.onnx")
    probabilities, predicted = run_onnx(path, as_input(images, dtype))
    assert probabilities.dtype == dtype
    np.testing.assert_array_equal(predicted, fcnn.predict(net, images))
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(
        probabilities, fcnn.predict_proba(net, images), rtol=0, atol=tolerance
    )
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=10 * tolerance)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("final_softmax", [True, False], ids=["softmax", "raw"])
def test_sigmoid_and_tanh_nets(dtype, final_softmax, tmp_path):
    images, labels = blobs(n=200, features=10, classes=3, seed=4)
    stack = [
        Linear(10, 7, dtype=dtype, rng=0),
        Sigmoid(),
        Linear(7, 6, dtype=dtype, rng=1),
        Tanh(),
        Linear(6, 3, dtype=dtype, rng=2),
    ]
    net = Module(stack + [Softmax()] if final_softmax else stack)
    loader = DataLoader((images, labels), batch_size=32, dtype=dtype)
    fcnn.train(net, SGD(net, lr=0.5), loader, epochs=2, progress=False)

    path = fcnn.export_onnx(net, tmp_path / "net.onnx")
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert ops[:6] == ["MatMul", "Add", "Sigmoid", "MatMul", "Add", "Tanh"]
    probabilities, predicted = run_onnx(path, as_input(images, dtype))
    assert probabilities.dtype == dtype
    np.testing.assert_array_equal(predicted, fcnn.predict(net, images))
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(
        probabilities, fcnn.predict_proba(net, images), rtol=0, atol=tolerance
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_is_left_out(dtype, tmp_path):
    """Dropout is the identity at inference: the graph has no node for it and answers as
    fcnn.predict, which runs the net in evaluation mode."""
    images, labels = blobs(n=200, features=10, classes=3, seed=5)
    net = Module(
        Linear(10, 12, dtype=dtype, rng=0),
        ReLU(),
        Dropout(0.5, seed=1),
        Linear(12, 3, dtype=dtype, rng=1),
        Softmax(),
    )
    loader = DataLoader((images, labels), batch_size=32, dtype=dtype)
    fcnn.train(net, SGD(net, lr=0.5), loader, epochs=2, progress=False)

    path = fcnn.export_onnx(net, tmp_path / "net.onnx")
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert ops == ["MatMul", "Add", "Relu", "MatMul", "Add", "Softmax", "Identity", "ArgMax"]
    probabilities, predicted = run_onnx(path, as_input(images, dtype))
    np.testing.assert_array_equal(predicted, fcnn.predict(net, images))
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(
        probabilities, fcnn.predict_proba(net, images), rtol=0, atol=tolerance
    )


def test_metadata_describes_the_input_and_classes(tmp_path):
    images, labels = blobs(n=60, features=6, classes=2)
    net, _, _ = fit(TrainConfig(hidden=(4,), epochs=1), (images, labels), progress=False)
    path = fcnn.export_onnx(
        net, tmp_path / "m.onnx", class_names=["no", "yes"], metadata={"dataset": "blobs"}
    )
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    props = {prop.key: prop.value for prop in model.metadata_props}
    assert json.loads(props["class_names"]) == ["no", "yes"]
    assert props["dataset"] == "blobs" and "[0, 1]" in props["input"]
    graph_input = model.graph.input[0]
    dims = graph_input.type.tensor_type.shape.dim
    assert [dims[0].dim_param, dims[1].dim_value] == ["N", 6]
    assert "[0, 1]" in graph_input.doc_string
    assert [output.name for output in model.graph.output] == ["probabilities", "label"]


def test_refuses_what_it_cannot_express(tmp_path):
    class Custom(Module):
        def forward(self, x):
            return super().forward(x) * 2

    with pytest.raises(TypeError, match="overrides forward"):
        fcnn.export_onnx(Custom(Linear(3, 2)), tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="at least one Linear"):
        fcnn.export_onnx(Module(ReLU()), tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="class_names must have one name per class \\(2\\)"):
        fcnn.export_onnx(Module(Linear(3, 2)), tmp_path / "x.onnx", class_names=["a"])
    with pytest.raises(TypeError, match="net must be an fcnn.nn.Module"):
        fcnn.export_onnx("model.npz", tmp_path / "x.onnx")
    assert not list(tmp_path.iterdir())


def test_import_fcnn_does_not_import_onnx(tmp_path):
    code = "import sys, fcnn; fcnn.export_onnx; print('onnx' in sys.modules)"
    # cwd: `python -c` puts the working directory first on sys.path, and a source
    # checkout's fcnn has no built _core.
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert done.stdout.strip() == "False"


def test_cli_export(tmp_path, capsys):
    images, labels = blobs(n=200, features=12, classes=3)
    net, optimizer, _ = fit(TrainConfig(hidden=(8,), epochs=1), (images, labels), progress=False)
    model_path = fcnn.save(
        net,
        tmp_path / "m.npz",
        optimizer=optimizer,
        metadata={"dataset": "fashion-mnist", "class_names": ["a", "b", "c"]},
    )
    assert main(["export", "--model", str(model_path), "--out", str(tmp_path / "m.onnx")]) == 0
    assert str(tmp_path / "m.onnx") in capsys.readouterr().out
    probabilities, predicted = run_onnx(tmp_path / "m.onnx", as_input(images, np.float32))
    np.testing.assert_array_equal(predicted, fcnn.predict(net, images))
    props = {prop.key: prop.value for prop in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert json.loads(props["class_names"]) == ["a", "b", "c"]
    assert props["dataset"] == "fashion-mnist"


def test_cli_export_errors(tmp_path, capsys):
    assert (
        main(["export", "--model", str(tmp_path / "none.npz"), "--out", str(tmp_path / "m.onnx")])
        == 1
    )
    err = capsys.readouterr().err
    assert "no model file at" in err and err.count("\n") == 1
    net = Module(Linear(4, 2))
    fcnn.save(net, tmp_path / "m.npz")
    assert (
        main(
            [
                "export",
                "--model",
                str(tmp_path / "m.npz"),
                "--out",
                str(tmp_path / "no" / "such" / "m.onnx"),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "cannot write" in err and err.count("\n") == 1 and "Traceback" not in err
