"""Bad arguments to every kernel: the exception class, and a message led by the argument name.

The same cases run on ``fcnn._core`` and on ``fcnn.reference``. Messages are
matched on the argument name plus the key words ("must have dtype", "must not be
empty", ...), not on the full sentence. After a rejected call no array argument
may have changed, so a failed ``sgd_step`` leaves ``param`` alone.
"""

import ast
from pathlib import Path

import numpy as np
import pytest

import fcnn._core as core
from fcnn import reference
from fcnn.reference import KERNELS

BACKENDS = [pytest.param(core, id="core"), pytest.param(reference, id="reference")]
B, C, OC = 4, 3, 2
STUB = Path(reference.__file__).with_name("_core.pyi")
# kernel -> its parameter names, in order, from the stub
PARAMETERS = {
    node.name: [arg.arg for arg in node.args.args]
    for node in ast.parse(STUB.read_text()).body
    if isinstance(node, ast.FunctionDef)
}

# The float array arguments of each kernel and their number of dimensions (None: any).
FLOAT_ARGS = {
    "linear_forward": {"x": 2, "weight": 2, "bias": 1},
    "linear_backward": {"dout": 2, "x": 2, "weight": 2},
    "relu_forward": {"x": 2},
    "relu_backward": {"dout": 2, "x": 2},
    "sigmoid_forward": {"x": 2},
    "sigmoid_backward": {"dout": 2, "out": 2},
    "tanh_forward": {"x": 2},
    "tanh_backward": {"dout": 2, "out": 2},
    "softmax_forward": {"x": 2},
    "softmax_backward": {"dout": 2, "probs": 2},
    "dropout_forward": {"x": 2},
    "dropout_backward": {"dout": 2},
    "softmax_cross_entropy_forward": {"logits": 2},
    "softmax_cross_entropy_backward": {"logits": 2},
    "sgd_step": {"param": None, "grad": None, "velocity": None},
}
LOSS_KERNELS = ("softmax_cross_entropy_forward", "softmax_cross_entropy_backward")


def valid_args(kernel, dtype=np.float64):
    """Small valid arguments of an array kernel, fresh on every call."""
    rng = np.random.default_rng(5)

    def floats(*shape):
        return rng.standard_normal(shape).astype(dtype)

    return {
        "linear_forward": lambda: [floats(B, C), floats(C, OC), floats(OC)],
        "linear_backward": lambda: [floats(B, OC), floats(B, C), floats(C, OC)],
        "relu_forward": lambda: [floats(B, C)],
        "relu_backward": lambda: [floats(B, C), floats(B, C)],
        "sigmoid_forward": lambda: [floats(B, C)],
        "sigmoid_backward": lambda: [floats(B, C), np.full((B, C), 0.25, dtype)],
        "tanh_forward": lambda: [floats(B, C)],
        "tanh_backward": lambda: [floats(B, C), np.full((B, C), -0.5, dtype)],
        "softmax_forward": lambda: [floats(B, C)],
        "softmax_backward": lambda: [floats(B, C), np.full((B, C), 1 / C, dtype)],
        "dropout_forward": lambda: [floats(B, C), 0.5, 3, 1],
        "dropout_backward": lambda: [floats(B, C), 0.5, 3, 1],
        "softmax_cross_entropy_forward": lambda: [floats(B, OC), np.array([0, 1, 1, 0])],
        "softmax_cross_entropy_backward": lambda: [floats(B, OC), np.array([0, 1, 1, 0])],
        "sgd_step": lambda: [floats(C, OC), floats(C, OC), 0.1, 1e-4, 0.9, floats(C, OC), False],
    }[kernel]()


def replaced(kernel, index, change, dtype=np.float64):
    """A maker of valid arguments whose argument ``index`` goes through ``change``."""

    def make_args():
        args = valid_args(kernel, dtype)
        args[index] = change(args[index])
        return args

    return make_args


def frozen(array):
    array.flags.writeable = False
    return array


def unaligned(array):
    """The values of ``array`` at an odd byte offset: C-contiguous, writable, unaligned."""
    buffer = np.zeros(array.nbytes + 1, np.uint8)
    view = buffer[1:].view(array.dtype).reshape(array.shape)
    view[...] = array
    return view


# (kernel, maker of the arguments, exception class, message regex)
CASES = []


def case(case_id, kernel, make_args, error, pattern):
    CASES.append(pytest.param(kernel, make_args, error, pattern, id=f"{kernel}-{case_id}"))


# Cases that _core is known to get wrong, with why; strict, so a fix shows as XPASS.
CORE_BUGS: dict[str, str] = {}


# Per float argument: non-arrays, wrong dtypes, mismatched dtypes, wrong ndim.
for kernel, arguments in FLOAT_ARGS.items():
    for name, ndim in arguments.items():
        index = PARAMETERS[kernel].index(name)
        # velocity=None is allowed (without momentum): a ValueError here, see below
        not_arrays = (("list", [[1.0, 2.0]]), ("scalar", 1.5)) + (
            () if name == "velocity" else (("None", None),)
        )
        for label, value in not_arrays:
            case(
                f"{name}-{label}",
                kernel,
                replaced(kernel, index, lambda _, v=value: v),
                TypeError,
                rf"^{name} must be a numpy\.ndarray",
            )
        for bad in (np.int64, np.float16, np.complex128, np.bool_):
            case(
                f"{name}-{np.dtype(bad).name}",
                kernel,
                replaced(kernel, index, lambda array, t=bad: array.astype(t)),
                TypeError,
                rf"^{name} must have dtype",
            )
        if index > 0:  # the first array decides the dtype; the others must follow it
            case(
                f"{name}-float32-after-float64",
                kernel,
                replaced(kernel, index, lambda array: array.astype(np.float32)),
                TypeError,
                rf"^{name} must have dtype float64",
            )
            case(
                f"{name}-float64-after-float32",
                kernel,
                replaced(kernel, index, lambda array: array.astype(np.float64), np.float32),
                TypeError,
                rf"^{name} must have dtype float32",
            )
        if ndim is not None:
            for label, change in (
                ("0d", lambda array: array.reshape(-1)[:1].reshape(())),
                ("extra-axis", lambda array: array[np.newaxis]),
                (
                    "flattened" if ndim == 2 else "as-row",
                    lambda array, n=ndim: array.reshape(-1) if n == 2 else array[np.newaxis],
                ),
            ):
                case(
                    f"{name}-{label}",
                    kernel,
                    replaced(kernel, index, change),
                    ValueError,
                    rf"^{name} must be {ndim}-D",
                )

# Shape mismatches.
for kernel, index, name, change in (
    ("linear_forward", 1, "weight", lambda w: np.zeros((C + 1, OC))),
    ("linear_forward", 1, "weight", lambda w: w.T.copy()),
    ("linear_forward", 2, "bias", lambda b: np.zeros(OC + 1)),
    ("linear_backward", 1, "x", lambda x: np.zeros((B + 1, C))),
    ("linear_backward", 2, "weight", lambda w: np.zeros((C + 1, OC))),
    ("linear_backward", 2, "weight", lambda w: np.zeros((C, OC + 1))),
    ("relu_backward", 1, "x", lambda x: np.zeros((B, C + 1))),
    ("relu_backward", 1, "x", lambda x: x.T.copy()),
    ("softmax_backward", 1, "probs", lambda p: np.zeros((B + 1, C))),
    ("sigmoid_backward", 1, "out", lambda out: out.T.copy()),
    ("tanh_backward", 1, "out", lambda out: np.zeros((B, C + 1))),
    ("sgd_step", 1, "grad", lambda g: g.T.copy()),
    ("sgd_step", 1, "grad", lambda g: g.reshape(-1)),
    ("sgd_step", 1, "grad", lambda g: g[:, :1]),
    *((kernel, 1, "labels", lambda labels: np.zeros(B + 1, np.int64)) for kernel in LOSS_KERNELS),
    *((kernel, 1, "labels", lambda labels: labels[:, np.newaxis]) for kernel in LOSS_KERNELS),
):
    case(
        f"{name}-shape-{len(CASES)}",
        kernel,
        replaced(kernel, index, change),
        ValueError,
        rf"^{name} must have shape",
    )

# Empty arrays: any dimension 0.
for kernel, name, make_args in (
    ("linear_forward", "x", lambda: [np.zeros((0, C)), np.ones((C, OC)), np.ones(OC)]),
    ("linear_forward", "x", lambda: [np.zeros((B, 0)), np.ones((0, OC)), np.ones(OC)]),
    ("linear_forward", "weight", lambda: [np.ones((B, C)), np.ones((C, 0)), np.ones(0)]),
    ("linear_backward", "dout", lambda: [np.zeros((0, OC)), np.ones((0, C)), np.ones((C, OC))]),
    ("linear_backward", "x", lambda: [np.ones((B, OC)), np.ones((B, 0)), np.ones((0, OC))]),
    ("relu_forward", "x", lambda: [np.zeros((0, C))]),
    ("relu_forward", "x", lambda: [np.zeros((B, 0))]),
    ("relu_backward", "dout", lambda: [np.zeros((0, C)), np.zeros((0, C))]),
    ("softmax_forward", "x", lambda: [np.zeros((0, C))]),
    ("softmax_forward", "x", lambda: [np.zeros((B, 0))]),
    ("softmax_backward", "dout", lambda: [np.zeros((B, 0)), np.zeros((B, 0))]),
    *(
        (kernel, "logits", lambda: [np.zeros((0, OC)), np.zeros(0, np.int64)])
        for kernel in LOSS_KERNELS
    ),
    *(
        (kernel, "logits", lambda: [np.zeros((B, 0)), np.zeros(B, np.int64)])
        for kernel in LOSS_KERNELS
    ),
    ("dropout_forward", "x", lambda: [np.zeros((0, C)), 0.5, 0, 0]),
    ("dropout_backward", "dout", lambda: [np.zeros((B, 0)), 0.5, 0, 0]),
    ("sgd_step", "param", lambda: [np.zeros(0), np.zeros(0), 0.1]),
    ("sgd_step", "param", lambda: [np.zeros((C, 0)), np.zeros((C, 0)), 0.1]),
):
    case(f"{name}-empty-{len(CASES)}", kernel, make_args, ValueError, rf"^{name} must not be empty")


# Dropout's rate, seed and step: the rate in [0, 1), the seed in [0, 2**64), the step >= 0.
for kernel in ("dropout_forward", "dropout_backward"):
    for index, name, value, error, pattern in (
        (1, "p", 1.0, ValueError, r"^p must be in \[0, 1\), got 1\.0$"),
        (1, "p", -0.5, ValueError, r"^p must be in \[0, 1\), got -0\.5$"),
        (1, "p", float("nan"), ValueError, r"^p must be in \[0, 1\)"),
        (1, "p", "0.5", TypeError, r"^p must be a real number"),
        (1, "p", None, TypeError, r"^p must be a real number"),
        (2, "seed", -1, ValueError, r"^seed must be an integer >= 0"),
        (2, "seed", 2**64, ValueError, r"^seed must be an integer >= 0"),
        (2, "seed", 0.5, TypeError, r"^seed must be an integer"),
        (3, "step", -1, ValueError, r"^step must be an integer >= 0"),
        (3, "step", 2**63, ValueError, r"^step must be an integer"),
        (3, "step", "1", TypeError, r"^step must be an integer"),
    ):
        case(
            f"{name}-{value!r}",
            kernel,
            replaced(kernel, index, lambda _, v=value: v),
            error,
            pattern,
        )


# Labels: out of [0, C), not integers.
def zero_logits():
    return np.zeros((B, OC))


for kernel in LOSS_KERNELS:
    case(
        "labels-too-large",
        kernel,
        lambda: [zero_logits(), np.array([0, 1, 1, OC])],
        ValueError,
        rf"^labels must be in \[0, {OC}\), got {OC} at index 3",
    )
    case(
        "labels-negative",
        kernel,
        lambda: [zero_logits(), np.array([0, -1, 1, 0], np.int8)],
        ValueError,
        rf"^labels must be in \[0, {OC}\), got -1 at index 1",
    )
    case(
        "labels-huge-unsigned",
        kernel,
        lambda: [zero_logits(), np.array([0, 1, 255, 0], np.uint8)],
        ValueError,
        rf"^labels must be in \[0, {OC}\)",
    )
    # uint64 values past 2**63 once came out as negative numbers (cast to int64 first).
    case(
        "labels-uint64-max",
        kernel,
        lambda: [zero_logits(), np.array([0, 1, 2**64 - 1, 0], np.uint64)],
        ValueError,
        rf"^labels must be in \[0, {OC}\), got 18446744073709551615 at index 2$",
    )
    case(
        "labels-uint64-sign-bit",
        kernel,
        lambda: [zero_logits(), np.array([0, 2**63, 1, 0], np.uint64)],
        ValueError,
        rf"^labels must be in \[0, {OC}\), got 9223372036854775808 at index 1$",
    )
    for bad in (np.float64, np.float32, np.bool_):
        case(
            f"labels-{np.dtype(bad).name}",
            kernel,
            lambda t=bad: [zero_logits(), np.array([0, 1, 1, 0]).astype(t)],
            TypeError,
            r"^labels must have an integer dtype",
        )
    case(
        "labels-list",
        kernel,
        lambda: [zero_logits(), [0, 1, 1, 0]],
        TypeError,
        r"^labels must be a numpy\.ndarray",
    )

# sgd_step: a param or velocity that cannot be updated in place, and bad rates.
for label, change in (
    ("read-only", frozen),
    ("fortran", np.asfortranarray),
    ("strided", lambda param: np.repeat(param, 2, axis=1)[:, ::2]),
    ("transposed", lambda param: param.T),
    ("unaligned", unaligned),
    # a float64 in the other byte order: updating its bytes as native doubles corrupts it
    ("byteswapped", lambda param: param.astype(param.dtype.newbyteorder())),
):
    keyword = {"read-only": "writable", "unaligned": "aligned", "byteswapped": ""}.get(
        label, "C-contiguous"
    )
    for name, index in (("param", 0), ("velocity", 5)):
        case(
            f"{name}-{label}",
            "sgd_step",
            replaced("sgd_step", index, change),
            TypeError,
            rf"^{name} must be.*{keyword}",
        )


def sgd_with(**changes):
    """sgd_step arguments with some of them, by name, changed."""

    def make_args():
        args = valid_args("sgd_step")
        for name, value in changes.items():
            args[PARAMETERS["sgd_step"].index(name)] = value
        return args

    return make_args


for case_id, make_args, error, pattern in (
    ("momentum-1", sgd_with(momentum=1.0), ValueError, r"^momentum must be in \[0, 1\)"),
    ("momentum-1.5", sgd_with(momentum=1.5), ValueError, r"^momentum must be in \[0, 1\)"),
    (
        "nesterov-without-momentum",
        sgd_with(momentum=0.0, nesterov=True),
        ValueError,
        r"^nesterov needs momentum > 0",
    ),
    (
        "momentum-without-velocity",
        sgd_with(velocity=None),
        ValueError,
        r"^velocity must be an array",
    ),
    (
        "velocity-shape",
        sgd_with(velocity=np.zeros((OC, C))),
        ValueError,
        r"^velocity must have shape",
    ),
    # checked even when momentum is 0 and the velocity goes unused
    (
        "unused-velocity-read-only",
        sgd_with(momentum=0.0, velocity=frozen(np.zeros((C, OC)))),
        TypeError,
        r"^velocity must be.*writable",
    ),
):
    case(case_id, "sgd_step", make_args, error, pattern)
for name, index in (("lr", 2), ("weight_decay", 3), ("momentum", 4)):
    for value in (float("nan"), float("inf"), -0.1, -1e-300):
        case(
            f"{name}-{value}",
            "sgd_step",
            replaced("sgd_step", index, lambda _, v=value: v),
            ValueError,
            rf"^{name} must be finite and >= 0",
        )
    for value in ("0.1", None, [0.1]):
        case(
            f"{name}-{type(value).__name__}",
            "sgd_step",
            replaced("sgd_step", index, lambda _, v=value: v),
            TypeError,
            rf"^{name} must be a real number",
        )

# Dimensions beyond the BLAS's 32-bit indices, as stride-0 views (no memory behind them).
for kernel, name, make_args in (
    ("relu_forward", "x", lambda: [np.broadcast_to(np.zeros((1, 1)), (2**31, 8))]),
    (
        "linear_forward",
        "weight",
        lambda: [np.ones((B, C)), np.broadcast_to(np.zeros((1, 1)), (2**31, 8)), np.ones(8)],
    ),
):
    case(f"{name}-too-large", kernel, make_args, ValueError, rf"^{name} is too large")

# exponential_lr(initial_lr, step, stage_length, decay, staircase)
for args, error, pattern in (
    ((0.1, 3, 0), ValueError, r"^stage_length must be an integer >= 1"),
    ((0.1, 3, -2), ValueError, r"^stage_length must be an integer >= 1"),
    ((0.1, 3, 10, 0.0), ValueError, r"^decay must be in \(0, 1\]"),
    ((0.1, 3, 10, 1.5), ValueError, r"^decay must be in \(0, 1\]"),
    ((0.1, 3, 10, -0.5), ValueError, r"^decay must be"),
    ((0.1, 3, 10, float("nan")), ValueError, r"^decay must be"),
    ((0.1, -1), ValueError, r"^step must be an integer >= 0"),
    ((0.1, 2**63), ValueError, r"^step must be an integer >= 0"),
    ((-0.1, 3), ValueError, r"^initial_lr must be finite and >= 0"),
    ((float("nan"), 3), ValueError, r"^initial_lr must be finite and >= 0"),
    ((float("inf"), 3), ValueError, r"^initial_lr must be finite and >= 0"),
    ((0.1, 1.5), TypeError, r"^step must be an integer"),
    ((0.1, None), TypeError, r"^step must be an integer"),
    ((0.1, 3, 2.0), TypeError, r"^stage_length must be an integer"),
    (("0.1", 3), TypeError, r"^initial_lr must be a real number"),
    ((None, 3), TypeError, r"^initial_lr must be a real number"),
    ((0.1, 3, 10, "half"), TypeError, r"^decay must be a real number"),
):
    case(f"{'-'.join(map(str, args))}", "exponential_lr", lambda a=args: list(a), error, pattern)


# Shapes of NumPy's maximum of 64 dimensions: the message once overflowed a 96-byte buffer
# in the core (a stack-buffer-overflow under AddressSanitizer, garbage or a crash without).
ONES_64 = (1,) * 64
case(
    "grad-64-d-mismatch",
    "sgd_step",
    lambda: [np.zeros(ONES_64), np.zeros(ONES_64[:-1] + (2,)), 0.1],
    ValueError,
    r"^grad must have shape \(1(, 1){63}\) to match param with shape \(1(, 1){63}\), "
    r"got \(1(, 1){62}, 2\)$",
)
case(
    "velocity-64-d-mismatch",
    "sgd_step",
    lambda: [
        np.zeros(ONES_64),
        np.zeros(ONES_64),
        0.1,
        0.0,
        0.9,
        np.zeros((1,) * 62 + (2, 1)),
        False,
    ],
    ValueError,
    r"^velocity must have shape \(1(, 1){63}\) to match param with shape \(1(, 1){63}\), "
    r"got \(1(, 1){61}, 2, 1\)$",
)


def snapshot(args):
    """Copies of the writable arrays (read-only ones, like huge stride-0 views, cannot change)."""
    return [
        arg.copy() if isinstance(arg, np.ndarray) and arg.flags.writeable else None for arg in args
    ]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("kernel", "make_args", "error", "pattern"), CASES)
def test_bad_input_raises(backend, kernel, make_args, error, pattern, request):
    bug = CORE_BUGS.get(request.node.callspec.id.rsplit("-", 1)[0])
    if backend is core and bug:
        request.applymarker(pytest.mark.xfail(strict=True, reason=bug))
    args = make_args()
    before = snapshot(args)
    with pytest.raises(error, match=pattern):
        getattr(backend, kernel)(*args)
    for index, (arg, saved) in enumerate(zip(args, before, strict=True)):
        if saved is not None:
            np.testing.assert_array_equal(arg, saved, err_msg=f"argument {index} changed")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kernel", [name for name in KERNELS if name != "exponential_lr"])
def test_valid_arguments_of_the_cases_pass(backend, kernel):
    """The cases above differ from these arguments by one change only."""
    getattr(backend, kernel)(*valid_args(kernel))
    getattr(backend, kernel)(*valid_args(kernel, np.float32))


def test_every_kernel_has_bad_input_cases():
    assert {param.values[0] for param in CASES} == set(KERNELS)
