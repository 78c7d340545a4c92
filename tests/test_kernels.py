"""Every C kernel against its NumPy twin in fcnn.reference, on a generated zoo of inputs.

Each case builds the same arguments twice (same seed, same memory layout) and
calls ``fcnn._core.<kernel>`` on one set and ``fcnn.reference.<kernel>`` on the
other. Results must agree in structure, dtype, shape and value; ``param`` and
``velocity`` of sgd_step must be updated alike; no other input may change. When
both raise the same exception class the case passes; when only one raises it
fails. Valid zoo cases must not raise in the reference, invalid ones must, so
that a broken zoo cannot hide behind "both raised".
"""

import ast
import inspect
import math
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

import fcnn._core as core
from fcnn import reference
from fcnn.reference import KERNELS

STUB = Path(reference.__file__).with_name("_core.pyi")
DTYPES = (np.float32, np.float64)
# Relative tolerances; the absolute tolerance is the same number times the
# magnitude of the case (largest finite input or output, at least 1), since
# sums of many products lose digits relative to their terms, not to the result.
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}

# (B, C, OC): batch size, input features, output features or classes.
SIZES = {"batch1": (1, 5, 3), "odd": (7, 13, 5), "typical": (64, 784, 10)}
LAYOUTS = (
    "c",
    "fortran",
    "strided",
    "transposed",
    "sliced",
    "reversed",
    "broadcast",
    "unaligned",
    "readonly",
    "byteswapped",
    "subclass",
)
# Positions of the arrays a kernel updates in place: sgd_step's param and velocity.
IN_PLACE = {"sgd_step": (0, 5)}
LABEL_DTYPES = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)
# Zoo cases where _core is known to be wrong, with why; strict, so a fix shows as XPASS.
CORE_BUGS: dict[str, str] = {}


# ----------------------------------------------------------------------------
# the zoo


class NdarraySubclass(np.ndarray):
    """An ndarray subclass that changes nothing."""


def arrange(array, layout):
    """The values of ``array`` in the memory layout named ``layout`` ("broadcast" repeats
    the first row instead: a stride-0 view)."""
    if array.ndim == 0:  # np.ascontiguousarray would make it 1-D
        return array.copy()
    if layout == "c":
        return np.ascontiguousarray(array)
    if layout == "fortran":
        return np.asfortranarray(array)
    if layout == "strided":  # every other column of an array twice as wide
        wide = np.zeros(array.shape[:-1] + (2 * array.shape[-1],), array.dtype)
        wide[..., ::2] = array
        return wide[..., ::2]
    if layout == "transposed":  # .T of a contiguous array; a reversed view in 1-D
        if array.ndim == 1:
            return np.ascontiguousarray(array[::-1])[::-1]
        return np.ascontiguousarray(array.T).T
    if layout == "sliced":  # the odd rows and columns of a padded array: offset and strided
        padded = np.zeros(tuple(2 * size + 1 for size in array.shape), array.dtype)
        view = padded[(slice(1, None, 2),) * array.ndim]
        view[...] = array
        return view
    if layout == "reversed":  # negative strides on every axis
        flip = (slice(None, None, -1),) * array.ndim
        return np.ascontiguousarray(array[flip])[flip]
    if layout == "broadcast":
        return np.broadcast_to(array[:1], array.shape)
    if layout == "unaligned":  # C-contiguous at an odd byte offset
        buffer = np.zeros(array.nbytes + 1, np.uint8)
        view = buffer[1:].view(array.dtype).reshape(array.shape)
        view[...] = array
        return view
    if layout == "readonly":
        frozen = array.copy()
        frozen.flags.writeable = False
        return frozen
    if layout == "byteswapped":  # same values, non-native byte order
        return array.astype(array.dtype.newbyteorder())
    if layout == "subclass":  # np.matrix, whose * is a matrix product, or a plain subclass
        if array.ndim != 2:
            return array.view(NdarraySubclass)
        with warnings.catch_warnings():  # np.matrix is discouraged, and still accepted
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            return np.asmatrix(array)
    raise AssertionError(f"unknown layout {layout}")


def make_values(rng, shape, values):
    """float64 test values of one kind: normal, large (±1e4), spread, nonfinite."""
    if values == "normal":
        return rng.standard_normal(shape)
    if values == "large":
        return rng.uniform(-1e4, 1e4, shape)
    if values == "spread":  # rows whose scales span seven decades, one row at both extremes
        array = rng.standard_normal(shape) * 10.0 ** rng.uniform(
            -3, 4, shape[:1] + (1,) * (len(shape) - 1)
        )
        if len(shape) == 2 and shape[1] >= 2:
            array[0, :] = -1e4
            array[0, 0] = 1e4
        return array
    if values == "nonfinite":
        array = rng.standard_normal(shape)
        flat = array.reshape(-1)
        flat[0], flat[flat.size // 2], flat[-1] = np.nan, np.inf, -np.inf
        return array
    raise AssertionError(f"unknown values {values}")


def canonical_args(kernel, rng, dtype, sizes, values="normal"):
    """Valid C-contiguous arguments of ``kernel`` for sizes (B, C, OC)."""
    B, C, OC = sizes

    def floats(*shape):
        return make_values(rng, shape, values).astype(dtype)

    if kernel == "linear_forward":
        return [floats(B, C), floats(C, OC), floats(OC)]
    if kernel == "linear_backward":
        return [floats(B, OC), floats(B, C), floats(C, OC), True]
    if kernel in ("relu_forward", "relu_backward"):
        x = floats(B, C)
        x.reshape(-1)[1::5] = 0.0  # the kink itself, both signs of zero
        x.reshape(-1)[3::10] = -0.0
        return [x] if kernel == "relu_forward" else [floats(B, C), x]
    if kernel in ("softmax_forward", "sigmoid_forward", "tanh_forward"):
        return [floats(B, C)]
    if kernel in ("softmax_backward", "sigmoid_backward", "tanh_backward"):
        # the second array is the forward's output, so it is what backward will be given
        forward = getattr(reference, kernel.replace("_backward", "_forward"))
        dout = floats(B, C)
        return [dout, forward(make_values(rng, (B, C), values).astype(dtype))]
    if kernel in ("softmax_cross_entropy_forward", "softmax_cross_entropy_backward"):
        return [floats(B, OC), rng.integers(0, OC, B)]
    if kernel == "sgd_step":
        return [floats(C, OC), floats(C, OC), 0.1, 1e-4]
    if kernel in ("dropout_forward", "dropout_backward"):  # x or dout (B, H), p, seed, step
        return [floats(B, C), 0.5, 12345, 7]
    raise AssertionError(f"no arguments for {kernel}")


def with_layout(kernel, args, layout):
    """Every array argument in ``layout``, except those updated in place (kept C-contiguous)."""
    return [
        arg
        if not isinstance(arg, np.ndarray) or index in IN_PLACE.get(kernel, ())
        else arrange(arg, layout)
        for index, arg in enumerate(args)
    ]


def _replace(args, index, value):
    return args[:index] + [value] + args[index + 1 :]


def _other_dtype(dtype):
    return np.float64 if np.dtype(dtype) == np.float32 else np.float32


# Cases that must raise in both: name -> function(kernel, args, dtype) -> args.
INVALID = {
    "empty-batch": lambda kernel, args, dtype: _replace(
        args, 0, args[0][:0] if args[0].ndim else args[0]
    ),
    "zero-d": lambda kernel, args, dtype: _replace(args, 0, args[0].reshape(-1)[:1].reshape(())),
    "numpy-scalar": lambda kernel, args, dtype: _replace(args, 0, args[0].reshape(-1)[0]),
    "three-d": lambda kernel, args, dtype: _replace(args, 0, args[0][np.newaxis]),
    "int64": lambda kernel, args, dtype: _replace(args, 0, args[0].astype(np.int64)),
    "float16": lambda kernel, args, dtype: _replace(args, 0, args[0].astype(np.float16)),
    "mixed-dtype": lambda kernel, args, dtype: _replace(
        args, 1, args[1].astype(_other_dtype(dtype))
    ),
    "list": lambda kernel, args, dtype: _replace(args, 0, args[0].tolist()),
    # the labels of the loss kernels
    "label-too-large": lambda kernel, args, dtype: _replace(args, 1, args[1] + args[0].shape[1]),
    "label-negative": lambda kernel, args, dtype: _replace(args, 1, args[1] - args[0].shape[1]),
    "label-float": lambda kernel, args, dtype: _replace(args, 1, args[1].astype(dtype)),
    "label-2d": lambda kernel, args, dtype: _replace(args, 1, args[1][:, np.newaxis]),
}
LABEL_CASES = {"label-too-large", "label-negative", "label-float", "label-2d"}
# Invalid cases that are not invalid (or do not exist) for a kernel: sgd_step takes
# any shape; the forward activations have no second array to mismatch.
NOT_INVALID_FOR = {
    "sgd_step": {"zero-d", "three-d"},
    "relu_forward": {"mixed-dtype"},
    "sigmoid_forward": {"mixed-dtype"},
    "tanh_forward": {"mixed-dtype"},
    "softmax_forward": {"mixed-dtype"},
    "dropout_forward": {"mixed-dtype"},
    "dropout_backward": {"mixed-dtype"},
}


def build(kernel, dtype, case):
    """(args, valid) for one zoo case; the same call always gives the same arrays."""
    rng = np.random.default_rng(zlib.crc32(f"{kernel}-{np.dtype(dtype).name}-{case}".encode()))
    kind, _, detail = case.partition(":")
    if kind == "grid":  # "grid:<size>:<layout>"
        size, layout = detail.split(":")
        args = canonical_args(kernel, rng, dtype, SIZES[size])
        return with_layout(kernel, args, layout), True
    if kind == "values":  # "values:<kind>:<size>:<layout>"
        values, size, layout = detail.split(":")
        args = canonical_args(kernel, rng, dtype, SIZES[size], values)
        return with_layout(kernel, args, layout), True
    if kind == "labels":  # "labels:<integer dtype>:<layout>"
        label_dtype, layout = detail.split(":")
        args = canonical_args(kernel, rng, dtype, SIZES["odd"])
        args[1] = args[1].astype(label_dtype)
        return with_layout(kernel, args, layout), True
    if kind == "no-dx":  # linear_backward with compute_dx false
        args = canonical_args(kernel, rng, dtype, SIZES[detail])
        return args[:3] + [False], True
    if kind == "sgd":  # "sgd:<param shape>:<lr>[:<weight decay>[:<momentum>:<nesterov>]]"
        shape, *rates = detail.split(":")
        shape = tuple(int(size) for size in shape.split("x") if size)
        param, grad, velocity = (rng.standard_normal(shape).astype(dtype) for _ in range(3))
        args = [param, arrange(grad, "strided" if grad.ndim else "c")] + [
            float(r) for r in rates[:3]
        ]
        if len(rates) > 3:  # velocity and nesterov
            args += [velocity, rates[3] == "nesterov"]
        return args, True
    if kind in ("param", "velocity"):  # sgd_step with an array that cannot be updated in place
        args = canonical_args(kernel, rng, dtype, SIZES["odd"]) + [0.9, None, False]
        args[5] = rng.standard_normal(args[0].shape).astype(dtype)
        index = IN_PLACE[kernel][kind == "velocity"]
        return _replace(args, index, arrange(args[index], detail)), False
    if kind == "momentum":  # sgd_step: "momentum:<momentum>:<velocity given>:<nesterov>"
        momentum, given, nesterov = detail.split(":")
        args = canonical_args(kernel, rng, dtype, SIZES["odd"])
        velocity = rng.standard_normal(args[0].shape).astype(dtype) if given == "velocity" else None
        valid = 0 <= float(momentum) < 1 and (given == "velocity" or float(momentum) == 0)
        valid = valid and not (nesterov == "nesterov" and float(momentum) == 0)
        return args + [float(momentum), velocity, nesterov == "nesterov"], valid
    if kind == "invalid":
        args = canonical_args(kernel, rng, dtype, SIZES["odd"])
        return INVALID[detail](kernel, args, dtype), False
    if kind == "dropout":  # "dropout:<valid|invalid>:<index>": (p, seed, step) of DROPOUT_*
        validity, index = detail.split(":")
        settings = (DROPOUT_VALID if validity == "valid" else DROPOUT_INVALID)[int(index)]
        args = canonical_args(kernel, rng, dtype, SIZES["odd"])
        return args[:1] + list(settings), validity == "valid"
    if kind == "lr":  # exponential_lr: "lr:<valid|invalid>:<index>"
        validity, index = detail.split(":")
        args = list((LR_VALID if validity == "valid" else LR_INVALID)[int(index)])
        if isinstance(args[0], float):  # the dtype decides the type of initial_lr
            args[0] = np.dtype(dtype).type(args[0])
        return args, validity == "valid"
    raise AssertionError(f"unknown case {case}")


# exponential_lr(initial_lr, step, stage_length, decay, staircase)
LR_VALID = [
    (0.1, 0),
    (0.1, 499),
    (0.1, 500),
    (0.1, 1234),
    (0.1, 1234, 500, 0.5, False),
    (0.01, 7, 3, 0.9, True),
    (0.01, 7, 3, 0.9, False),
    (0.5, 10**6, 1, 0.5),  # underflows to 0
    (0.0, 5),
    (0.1, 5, 1, 1.0),
    (0.1, np.int64(700), np.int32(300)),
    (0.1, 2**62, 1, 0.999999, False),
]
LR_INVALID = [
    (0.1, 3, 0),  # stage_length 0
    (0.1, 3, -5),
    (0.1, 3, 10, 0.0),  # decay 0
    (0.1, 3, 10, 1.5),  # decay > 1
    (0.1, 3, 10, -0.5),
    (0.1, 3, 10, float("nan")),
    (0.1, -1),  # negative step
    (-0.1, 3),
    (float("nan"), 3),
    (float("inf"), 3),
    (0.1, 2**63),  # does not fit int64
    (0.1, 1.5),  # not an integer
    ("0.1", 3),
    (None, 3),
    (0.1, 3, 2.0),
]


# dropout_forward / dropout_backward (p, seed, step)
DROPOUT_VALID = [
    (0.0, 0, 0),
    (0.1, 1, 1),
    (0.999, 2**64 - 1, 2**63 - 1),
    (np.float32(0.25), np.uint64(2**63), np.int32(3)),
    (0, 5, 5),
]
DROPOUT_INVALID = [
    (1.0, 0, 0),
    (-0.1, 0, 0),
    (float("nan"), 0, 0),
    (float("inf"), 0, 0),
    ("0.5", 0, 0),
    (None, 0, 0),
    (0.5, -1, 0),
    (0.5, 2**64, 0),
    (0.5, 1.5, 0),
    (0.5, 0, -1),
    (0.5, 0, 2**63),
    (0.5, 0, 2.0),
]


def zoo():
    """Every (kernel, dtype, case) of the zoo, as pytest params."""
    cases = []
    for kernel in KERNELS:
        names = []
        if kernel == "exponential_lr":
            names += [f"lr:valid:{i}" for i in range(len(LR_VALID))]
            names += [f"lr:invalid:{i}" for i in range(len(LR_INVALID))]
        else:
            names += [f"grid:{size}:{layout}" for size in SIZES for layout in LAYOUTS]
            names += [
                f"values:{values}:{size}:{layout}"
                for values in ("large", "spread")
                for size in ("odd", "typical")
                for layout in ("c", "transposed")
            ]
            names += ["values:nonfinite:odd:c"]
            names += [
                f"invalid:{name}"
                for name in INVALID
                if name not in NOT_INVALID_FOR.get(kernel, ())
                and (name not in LABEL_CASES or kernel.startswith("softmax_cross_entropy"))
            ]
        if kernel.startswith("softmax_cross_entropy"):
            names += [
                f"labels:{np.dtype(t).name}:{layout}"
                for t in LABEL_DTYPES
                for layout in ("c", "strided")
            ]
        if kernel == "linear_backward":
            names += [f"no-dx:{size}" for size in SIZES]
        if kernel.startswith("dropout_"):
            names += [f"dropout:valid:{i}" for i in range(len(DROPOUT_VALID))]
            names += [f"dropout:invalid:{i}" for i in range(len(DROPOUT_INVALID))]
        if kernel == "sgd_step":
            names += [
                "sgd::0.1:0.01",  # 0-d param
                "sgd:5:0.1:0.0",
                "sgd:2x3x4:0.05:0.001",
                "sgd:7x13:0.1",  # weight_decay left at its default
                "sgd:7x13:0.0:0.5",
                "sgd:7x13:3.0:0.2",
                "sgd:7x13:0.1:0.001:0.9:plain",
                "sgd:7x13:0.1:0.001:0.9:nesterov",
                "sgd::0.1:0.0:0.5:nesterov",
                "sgd:2x3x4:0.05:0.0:0.99:plain",
                "sgd:64x10:0.1:0.0001:0.0:plain",  # a velocity given but unused
            ]
            names += [
                f"{array}:{layout}"
                for array in ("param", "velocity")
                for layout in ("fortran", "strided", "sliced", "readonly", "byteswapped")
            ]
            names += [
                "momentum:1.0:velocity:plain",
                "momentum:0.9:none:plain",
                "momentum:0.0:none:nesterov",
                "momentum:0.0:velocity:nesterov",
                "momentum:-0.5:velocity:plain",
                "momentum:nan:velocity:plain",
            ]
        for dtype in DTYPES:
            for name in names:
                bug = CORE_BUGS.get(f"{kernel}-{name}")
                marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
                case_id = f"{kernel}-{np.dtype(dtype).name}-{name}"
                cases.append(pytest.param(kernel, dtype, name, id=case_id, marks=marks))
    return cases


# ----------------------------------------------------------------------------
# comparison


def call(function, args):
    """(result, None) or (None, the exception) of function(*args)."""
    try:
        return function(*args), None
    except Exception as error:  # noqa: BLE001 - any exception is compared with the twin's
        return None, error


def magnitude(values):
    """Largest finite absolute value among arrays and floats, at least 1."""
    largest = 1.0
    for value in values:
        array = (
            np.asarray(value, dtype=np.float64) if isinstance(value, (np.ndarray, float)) else None
        )
        if array is not None and array.size:
            finite = np.abs(array[np.isfinite(array)])
            if finite.size:
                largest = max(largest, float(finite.max()))
    return largest


def assert_same(actual, desired, tolerance, scale, where="result"):
    """Same structure, types, dtypes, shapes and values (NaN equal to NaN)."""
    if desired is None:
        assert actual is None, f"{where}: expected None, got {type(actual).__name__}"
    elif isinstance(desired, tuple):
        assert isinstance(actual, tuple), f"{where}: expected a tuple, got {type(actual).__name__}"
        assert len(actual) == len(desired), (
            f"{where}: expected {len(desired)} items, got {len(actual)}"
        )
        for index, (got, want) in enumerate(zip(actual, desired, strict=True)):
            assert_same(got, want, tolerance, scale, f"{where}[{index}]")
    elif isinstance(desired, float):
        assert type(actual) is float, (
            f"{where}: expected a Python float, got {type(actual).__name__}"
        )
        assert type(desired) is float, f"{where}: the reference gave a {type(desired).__name__}"
        assert (math.isnan(actual) and math.isnan(desired)) or math.isclose(
            actual, desired, rel_tol=tolerance, abs_tol=tolerance * scale
        ), f"{where}: {actual!r} != {desired!r}"
    else:
        assert type(actual) is np.ndarray, (
            f"{where}: expected an ndarray, got {type(actual).__name__}"
        )
        assert actual.dtype == desired.dtype, f"{where}: dtype {actual.dtype} != {desired.dtype}"
        assert actual.shape == desired.shape, f"{where}: shape {actual.shape} != {desired.shape}"
        np.testing.assert_allclose(
            actual, desired, rtol=tolerance, atol=tolerance * scale, err_msg=where
        )


def tolerance_for(args):
    """float32 tolerance when any float array of the call is float32."""
    types = {
        arg.dtype.type for arg in args if isinstance(arg, np.ndarray) and arg.dtype.kind == "f"
    }
    return max((TOLERANCE.get(scalar_type, 1e-12) for scalar_type in types), default=1e-12)


@pytest.mark.parametrize(("kernel", "dtype", "case"), zoo())
def test_kernel_matches_reference(kernel, dtype, case):
    core_args, valid = build(kernel, dtype, case)
    reference_args, _ = build(kernel, dtype, case)
    core_result, core_error = call(getattr(core, kernel), core_args)
    reference_result, reference_error = call(getattr(reference, kernel), reference_args)

    # The zoo itself: valid cases must pass the reference, invalid ones must not.
    if valid:
        assert reference_error is None, f"valid case rejected by the reference: {reference_error!r}"
    else:
        assert reference_error is not None, "invalid case accepted by the reference"
    if core_error is not None or reference_error is not None:
        assert core_error is not None, f"only the reference raised: {reference_error!r}"
        assert reference_error is not None, f"only _core raised: {core_error!r}"
        assert type(core_error) is type(reference_error), (
            f"_core raised {core_error!r}, the reference {reference_error!r}"
        )
        return

    tolerance = tolerance_for(reference_args)
    scale = magnitude(
        [
            *reference_args,
            *(reference_result if isinstance(reference_result, tuple) else [reference_result]),
        ]
    )
    assert_same(core_result, reference_result, tolerance, scale)
    untouched, _ = build(kernel, dtype, case)
    for index, (core_arg, reference_arg, original) in enumerate(
        zip(core_args, reference_args, untouched, strict=True)
    ):
        if index in IN_PLACE.get(kernel, ()):  # updated alike by both (or left alike)
            assert_same(core_arg, reference_arg, tolerance, scale, f"in-place argument {index}")
        elif isinstance(original, np.ndarray):  # every other input: unchanged
            np.testing.assert_array_equal(
                core_arg, original, err_msg=f"_core changed argument {index}"
            )
            np.testing.assert_array_equal(
                reference_arg, original, err_msg=f"reference changed argument {index}"
            )


# ----------------------------------------------------------------------------
# the module against the contract


def stub_functions():
    """{name: ast.FunctionDef} of every function in fcnn/_core.pyi."""
    tree = ast.parse(STUB.read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


# Functions of the stub beyond the per-batch kernels: the fused epoch (compared with its
# twin in tests/test_fused.py), augment (tests/test_augment.py) and the thread setting,
# which has no twin.
EXTRA_FUNCTIONS = ("train_epoch", "augment", "set_num_threads", "get_num_threads")


def test_kernels_are_the_functions_of_the_stub():
    assert KERNELS + EXTRA_FUNCTIONS == tuple(stub_functions())


def test_core_exports_exactly_the_kernels():
    public = {
        name for name in dir(core) if not name.startswith("_") and callable(getattr(core, name))
    }
    assert public == set(KERNELS) | set(EXTRA_FUNCTIONS)


@pytest.mark.parametrize("kernel", KERNELS)
def test_reference_signature_is_the_stub_signature(kernel):
    stub = stub_functions()[kernel].args
    defaults = [None] * (len(stub.args) - len(stub.defaults)) + [
        ast.literal_eval(default) for default in stub.defaults
    ]
    expected = [(arg.arg, default) for arg, default in zip(stub.args, defaults, strict=True)]
    parameters = inspect.signature(getattr(reference, kernel)).parameters.values()
    actual = [
        (
            parameter.name,
            None if parameter.default is inspect.Parameter.empty else parameter.default,
        )
        for parameter in parameters
    ]
    assert actual == expected


def every_argument(kernel):
    """Arguments for every parameter of the stub, defaults included."""
    rng = np.random.default_rng(7)
    if kernel == "exponential_lr":
        return [0.1, 1234, 500, 0.5, False]
    args = canonical_args(kernel, rng, np.float64, SIZES["odd"])
    if kernel == "sgd_step":
        return args + [0.9, rng.standard_normal(args[0].shape), True]
    return args


@pytest.mark.parametrize("kernel", KERNELS)
def test_core_takes_the_stub_keywords(kernel):
    names = [arg.arg for arg in stub_functions()[kernel].args.args]
    args = every_argument(kernel)
    assert len(args) == len(names)
    keywords = dict(zip(names, args, strict=True))
    reference_args = [arg.copy() if isinstance(arg, np.ndarray) else arg for arg in args]
    expected = getattr(reference, kernel)(*reference_args)
    result = getattr(core, kernel)(**keywords)
    assert_same(result, expected, 1e-12, magnitude(args))
    for index in IN_PLACE.get(kernel, ()):
        assert_same(args[index], reference_args[index], 1e-12, magnitude(args), names[index])


# ----------------------------------------------------------------------------
# numerics against hand-computed values, for both backends


BACKENDS = [pytest.param(core, id="core"), pytest.param(reference, id="reference")]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_of_huge_logits_is_finite_and_exact(backend, dtype):
    logits = np.array(
        [[1e4, -1e4, 0.0], [1e4, -1e4, 0.0], [1e4, -1e4, 0.0], [1e4, 1e4, -1e4]], dtype=dtype
    )
    labels = np.array([0, 1, 2, 0])
    # Per row: log(1 + e^-1e4 + e^-2e4) = 0, then 2e4, then 1e4, then log(2) for the tie.
    expected = (0.0 + 2e4 + 1e4 + math.log(2.0)) / 4
    loss = backend.softmax_cross_entropy_forward(logits, labels)
    assert type(loss) is float
    assert math.isclose(loss, expected, rel_tol=1e-12)
    dlogits = backend.softmax_cross_entropy_backward(logits, labels)
    expected_dlogits = (
        np.array([[0.0, 0.0, 0.0], [1.0, -1.0, 0.0], [1.0, 0.0, -1.0], [-0.5, 0.5, 0.0]]) / 4
    )
    assert dlogits.dtype == dtype
    np.testing.assert_allclose(dlogits, expected_dlogits, rtol=0, atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("values", ["normal", "large", "spread"])
def test_softmax_rows_are_distributions(backend, dtype, values):
    B, C, _ = SIZES["typical"]
    x = make_values(np.random.default_rng(3), (B, C), values).astype(dtype)
    probs = backend.softmax_forward(x)
    assert probs.dtype == dtype
    assert np.all((probs >= 0) & (probs <= 1))
    np.testing.assert_allclose(
        probs.sum(axis=1, dtype=np.float64), 1.0, rtol=0, atol=C * np.finfo(dtype).eps
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_step_rule_by_hand(backend, dtype):
    param = np.array([1.0, -2.0, 0.5], dtype=dtype)
    grad = np.array([0.5, 0.25, -1.0], dtype=dtype)
    assert backend.sgd_step(param, grad, 0.5, 0.1) is None
    # (1 - 0.1 * 0.5) * param - 0.5 * grad
    np.testing.assert_allclose(param, [0.95 - 0.25, -1.9 - 0.125, 0.475 + 0.5], rtol=1e-6)
    velocity = np.array([1.0, 0.0, -1.0], dtype=dtype)
    param = np.array([1.0, -2.0, 0.5], dtype=dtype)
    backend.sgd_step(param, grad, 0.5, 0.0, momentum=0.5, velocity=velocity)
    # velocity <- 0.5 * velocity + grad, then param <- param - 0.5 * velocity
    np.testing.assert_allclose(velocity, [1.0, 0.25, -1.5], rtol=1e-6)
    np.testing.assert_allclose(param, [0.5, -2.125, 1.25], rtol=1e-6)
    backend.sgd_step(param, grad, 0.5, 0.0, momentum=0.5, velocity=velocity, nesterov=True)
    # velocity <- [1.0, 0.375, -1.75]; step = grad + 0.5 * velocity = [1.0, 0.4375, -1.875]
    np.testing.assert_allclose(velocity, [1.0, 0.375, -1.75], rtol=1e-6)
    np.testing.assert_allclose(param, [0.0, -2.34375, 2.1875], rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_exponential_lr_by_hand(backend):
    assert backend.exponential_lr(0.1, 1499) == 0.1 * 0.5**2
    assert backend.exponential_lr(0.1, 750, staircase=False) == pytest.approx(
        0.1 * 0.5**1.5, rel=1e-15
    )
    assert backend.exponential_lr(1.0, 9, stage_length=3, decay=0.1) == pytest.approx(
        1e-3, rel=1e-15
    )


# ----------------------------------------------------------------------------
# a whole training run: the kernels composed, C against NumPy


def train_mlp(backend, dtype, momentum=0.0, nesterov=False, steps=100):
    """A 20-16-3 MLP trained by the kernels alone; returns its final parameters and losses."""
    rng = np.random.default_rng(11)
    inputs = rng.standard_normal((32, 20)).astype(dtype)
    labels = rng.integers(0, 3, 32)
    params = [
        (rng.standard_normal((20, 16)) * np.sqrt(2 / 20)).astype(dtype),
        np.zeros(16, dtype),
        (rng.standard_normal((16, 3)) * np.sqrt(2 / 16)).astype(dtype),
        np.zeros(3, dtype),
    ]
    weight1, bias1, weight2, bias2 = params
    velocities = [np.zeros_like(param) for param in params]
    losses = []
    for step in range(steps):
        lr = backend.exponential_lr(0.1, step, stage_length=25, decay=0.5)
        hidden_pre = backend.linear_forward(inputs, weight1, bias1)
        hidden = backend.relu_forward(hidden_pre)
        logits = backend.linear_forward(hidden, weight2, bias2)
        losses.append(backend.softmax_cross_entropy_forward(logits, labels))
        dlogits = backend.softmax_cross_entropy_backward(logits, labels)
        dweight2, dbias2, dhidden = backend.linear_backward(dlogits, hidden, weight2)
        dhidden_pre = backend.relu_backward(dhidden, hidden_pre)
        dweight1, dbias1, dinputs = backend.linear_backward(
            dhidden_pre, inputs, weight1, compute_dx=False
        )
        assert dinputs is None
        for param, grad, velocity in zip(
            params, (dweight1, dbias1, dweight2, dbias2), velocities, strict=True
        ):
            backend.sgd_step(param, grad, lr, 1e-4, momentum, velocity, nesterov)
    return params, losses


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("momentum", "nesterov"),
    [(0.0, False), (0.9, False), (0.9, True)],
    ids=["sgd", "momentum", "nesterov"],
)
def test_training_run_matches_reference(dtype, momentum, nesterov):
    core_params, core_losses = train_mlp(core, dtype, momentum, nesterov)
    reference_params, reference_losses = train_mlp(reference, dtype, momentum, nesterov)
    assert reference_losses[-1] < 0.8 * reference_losses[0], "the run should learn something"
    tolerance = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(core_losses, reference_losses, rtol=tolerance)
    for core_param, reference_param in zip(core_params, reference_params, strict=True):
        assert core_param.dtype == dtype
        scale = float(np.abs(reference_param).max())
        np.testing.assert_allclose(
            core_param, reference_param, rtol=tolerance, atol=tolerance * scale
        )
