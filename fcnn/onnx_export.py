"""ONNX export: a trained fcnn net as an ``.onnx`` file that onnxruntime (or any ONNX runtime) runs.

The exported graph, for a net of Linear, ReLU, Sigmoid, Tanh and Softmax layers:

- input ``"input"``: float32 or float64 (the net's dtype), shape ``(N, features)``,
  pixels scaled to [0, 1] (a uint8 image divided by 255, as :func:`fcnn.predict`
  does), one flattened image per row;
- output ``"probabilities"``: the same dtype, shape ``(N, classes)``, each row
  summing to 1 (a Softmax is appended when the net does not end with one, as
  :func:`fcnn.predict_proba` does);
- output ``"label"``: int64, shape ``(N,)``, the most probable class.

Each Linear layer is a ``MatMul`` by its (in_features, out_features) weight and an
``Add`` of its bias; Softmax maps to the ONNX operator of that name, and every
elementwise activation to the operator its class names in ``onnx_op`` (``Relu``,
``Sigmoid``, ``Tanh``; opset 17). Dropout, the identity at inference, is left out.
The class names, the data set and the input's
description are stored as metadata properties of the model. Needs the ``onnx`` package:
``pip install fcnn[onnx]`` (which brings onnxruntime too).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._io import write_atomically
from .functional import Activation, Linear, Softmax
from .nn import Module

__all__ = ["INPUT_DESCRIPTION", "OPSET", "export_onnx"]

#: The ONNX operator set the graph is written against (onnxruntime >= 1.13 runs it).
OPSET = 17
# IR version 8 goes with opset 17; newer onnx packages default to a newer IR that
# older runtimes refuse to load.
_IR_VERSION = 8

#: What the graph's input holds; stored in the file as its doc string.
INPUT_DESCRIPTION = (
    "one flattened image per row, shape (N, features), float pixels in [0, 1] "
    "(uint8 pixels divided by 255)"
)


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError(
            "ONNX export needs the onnx package: pip install fcnn[onnx] (or pip install onnx)"
        ) from None
    return onnx


def export_onnx(
    net: Module,
    path: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Writes ``net`` to ``path`` as an ONNX model returning class probabilities.

    Parameters
    ----------
    net
        an :class:`~fcnn.nn.Module` made of Linear, ReLU, Sigmoid, Tanh and Softmax
        layers (every net :func:`fcnn.train` and :func:`fcnn.fit` build), float32 or float64.
    path
        the ``.onnx`` file to write; written to a temporary file beside it
        and renamed, so an existing file is replaced only by a complete one.
    class_names
        one name per output class, stored as the ``class_names``
        metadata property (a JSON list).
    metadata
        further string properties to store (e.g. ``{"dataset": "mnist"}``).

    Returns
    -------
    pathlib.Path
        ``path`` as a :class:`~pathlib.Path`.

    Raises
    ------
    ImportError
        the onnx package is not installed.
    TypeError
        ``net`` is not a Module, overrides ``forward``, holds a layer other than
        Linear, ReLU, Sigmoid, Tanh or Softmax, or its parameters are not all float32
        or all float64.
    ValueError
        ``net`` has no Linear layer, its layer sizes do not chain, or
        ``class_names`` does not have one name per class.

    Examples
    --------
    >>> fcnn.export_onnx(net, "mnist.onnx", class_names=[str(d) for d in range(10)])
    >>> import onnxruntime
    >>> session = onnxruntime.InferenceSession("mnist.onnx")
    >>> probabilities, labels = session.run(None, {"input": images.reshape(-1, 784) / 255})
    """
    onnx = _import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    dtype = _check_net(net)
    elem_type = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    linears = net.linear_layers()
    num_inputs, num_classes = linears[0].num_inputs, linears[-1].num_outputs
    if class_names is not None:
        class_names = [str(name) for name in class_names]
        if len(class_names) != num_classes:
            raise ValueError(
                f"class_names must have one name per class ({num_classes}), got {len(class_names)}"
            )

    nodes, initializers = [], []
    current = "input"
    for index, layer in enumerate(net.layers):
        output = f"layers.{index}.output"
        if layer.identity_at_inference:  # Dropout: nothing to compute at inference
            continue
        if isinstance(layer, Linear):
            weight, bias = f"layers.{index}.weight", f"layers.{index}.bias"
            initializers.append(numpy_helper.from_array(np.ascontiguousarray(layer.weight), weight))
            initializers.append(numpy_helper.from_array(np.ascontiguousarray(layer.bias), bias))
            nodes.append(
                helper.make_node(
                    "MatMul", [current, weight], [f"{output}.matmul"], name=f"layers.{index}.matmul"
                )
            )
            nodes.append(
                helper.make_node(
                    "Add", [f"{output}.matmul", bias], [output], name=f"layers.{index}.add"
                )
            )
        elif type(layer) is Softmax:
            nodes.append(
                helper.make_node("Softmax", [current], [output], axis=-1, name=f"layers.{index}")
            )
        else:
            nodes.append(
                helper.make_node(layer.onnx_op, [current], [output], name=f"layers.{index}")
            )
        current = output
    if not isinstance(net.layers[-1], Softmax):
        # predict_proba turns a net's raw output into probabilities the same way.
        nodes.append(
            helper.make_node("Softmax", [current], ["probabilities"], axis=-1, name="probabilities")
        )
    else:
        nodes.append(
            helper.make_node("Identity", [current], ["probabilities"], name="probabilities")
        )
    nodes.append(
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0, name="label")
    )

    graph_input = helper.make_tensor_value_info("input", elem_type, ["N", num_inputs])
    graph_input.doc_string = INPUT_DESCRIPTION
    probabilities = helper.make_tensor_value_info("probabilities", elem_type, ["N", num_classes])
    probabilities.doc_string = "class probabilities, each row summing to 1"
    label = helper.make_tensor_value_info("label", TensorProto.INT64, ["N"])
    label.doc_string = "the most probable class of each row"
    graph = helper.make_graph(
        nodes, "fcnn", [graph_input], [probabilities, label], initializer=initializers
    )
    graph.doc_string = f"fcnn net {_layer_summary(net)}; input: {INPUT_DESCRIPTION}"
    model = helper.make_model(
        graph, producer_name="fcnn", opset_imports=[helper.make_opsetid("", OPSET)]
    )
    model.ir_version = _IR_VERSION
    from . import __version__

    model.producer_version = __version__
    properties = {"input": INPUT_DESCRIPTION, **(metadata or {})}
    if class_names is not None:
        properties["class_names"] = json.dumps(class_names)
    for key, value in properties.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata must map strings to strings, got {key!r}: {value!r}")
    helper.set_model_props(model, properties)
    onnx.checker.check_model(model)
    payload = model.SerializeToString()
    path = Path(path)
    write_atomically(path, lambda stream: stream.write(payload))
    return path


def _check_net(net: Module) -> np.dtype:
    """The net's dtype, after checking that the graph above can express ``net``."""
    if not isinstance(net, Module):
        raise TypeError(f"net must be an fcnn.nn.Module, got {type(net).__name__}")
    if type(net).forward is not Module.forward or type(net).__call__ is not Module.__call__:
        raise TypeError(
            f"{type(net).__name__} overrides forward; only plain layer stacks can be exported"
        )
    for index, layer in enumerate(net.layers):
        if not _exportable(type(layer)):
            names = ", ".join(cls.__name__ for cls in _exportable_types())
            raise TypeError(
                f"net.layers[{index}] is a {type(layer).__name__}; only {names} layers can be "
                "exported"
            )
    linears = net.linear_layers()
    if not linears:
        raise ValueError("net must have at least one Linear layer, got none")
    dtype = np.dtype(net.dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"the parameters must be float32 or float64, got {dtype}")
    for name, array in net.named_parameters():
        if array.dtype != dtype:
            raise TypeError(
                f"every parameter must have one dtype: {name} is {array.dtype}, "
                f"the first is {dtype}"
            )
    for before, after in zip(linears[:-1], linears[1:], strict=True):
        if before.num_outputs != after.num_inputs:
            raise ValueError(f"the Linear layers do not chain: {before!r} is followed by {after!r}")
    return dtype


def _exportable(cls: type) -> bool:
    """Whether the graph above can express a layer of class ``cls``."""
    if cls in (Linear, Softmax) or getattr(cls, "identity_at_inference", False):
        return True
    return issubclass(cls, Activation) and getattr(cls, "onnx_op", None) is not None


def _exportable_types() -> list[type]:
    from .functional import LAYERS

    return [cls for cls in LAYERS.values() if _exportable(cls)]


def _layer_summary(net: Module) -> str:
    sizes = [
        net.linear_layers()[0].num_inputs,
        *(layer.num_outputs for layer in net.linear_layers()),
    ]
    return "-".join(map(str, sizes)) + f" ({net.dtype})"
