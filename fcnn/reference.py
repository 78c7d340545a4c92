"""Pure-NumPy twin of every kernel in ``fcnn._core``.

Each function here has the name, signature, return types and error rules of
the C kernel it mirrors (see ``fcnn/_core.pyi``, the contract): same results up
to rounding, same exception classes, messages that start with the argument
name. The tests run both on one zoo of inputs and compare them, so this file
favours plain NumPy that is easy to check by eye over speed. Like the C core,
``sgd_step`` updates ``param`` in place.

Size letters: B = batch size, C = input features, OC = output features
(classes for the loss), H = hidden units (dropout's input).
"""

import functools
import math

import numpy as np

from ._checks import INT32_MAX, INT64_MAX, check_dropout_rate, check_int, check_real

# The per-batch kernels of the stub, in its order; the tests' zoo runs each of them. The
# C module exports these, train_epoch (twinned below, tested in tests/test_fused.py), augment
# (twinned below, tested in tests/test_augment.py) and the thread setting (set_num_threads,
# get_num_threads), which has nothing to twin.
KERNELS = (
    "linear_forward",
    "linear_backward",
    "relu_forward",
    "relu_backward",
    "sigmoid_forward",
    "sigmoid_backward",
    "tanh_forward",
    "tanh_backward",
    "softmax_forward",
    "softmax_backward",
    "dropout_forward",
    "dropout_backward",
    "softmax_cross_entropy_forward",
    "softmax_cross_entropy_backward",
    "sgd_step",
    "exponential_lr",
)
__all__ = [
    "KERNELS",
    "dropout_backward",
    "dropout_forward",
    "dropout_keep",
    "MAX_ELASTIC_SIGMA",
    "augment",
    "exponential_lr",
    "linear_backward",
    "linear_forward",
    "random_bits",
    "random_key",
    "random_uniform",
    "relu_backward",
    "relu_forward",
    "sgd_step",
    "sigmoid_backward",
    "sigmoid_forward",
    "softmax_backward",
    "softmax_cross_entropy_backward",
    "softmax_cross_entropy_forward",
    "softmax_forward",
    "tanh_backward",
    "tanh_forward",
    "train_epoch",
]

# Scalar types rather than dtypes, so that inputs of either byte order are accepted.
_FLOAT_TYPES = (np.float32, np.float64)
# The C core hands every dimension to a BLAS with 32-bit indices, and steps to int64.
_BLAS_MAX_SIZE = INT32_MAX

# ----------------------------------------------------------------------------
# counter-based random numbers (csrc/random.h): the same uint64 arithmetic, wrapping

_GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_INDEX_OFFSET = np.uint64(0x632BE59BD9B4E019)


def _mix64(z):
    """splitmix64's finaliser of ``z + golden gamma``, elementwise on uint64 arrays."""
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps, as in C
        z = np.asarray(z, dtype=np.uint64) + _GOLDEN_GAMMA
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def random_key(seed, stream):
    """The key of stream ``stream`` under ``seed`` (uint64; arrays broadcast)."""
    return _mix64(np.asarray(seed, dtype=np.uint64) ^ _mix64(stream))


def random_bits(key, index):
    """64 random bits, the ``index``-th number of the stream ``key`` (arrays broadcast)."""
    with np.errstate(over="ignore"):
        return _mix64(
            np.asarray(key, dtype=np.uint64) ^ _mix64(np.asarray(index, np.uint64) + _INDEX_OFFSET)
        )


def random_uniform(key, index):
    """Doubles uniform in [0, 1): the top 53 of :func:`random_bits`, times 2**-53."""
    return (random_bits(key, index) >> np.uint64(11)).astype(np.float64) * 2.0**-53


# ----------------------------------------------------------------------------
# argument checks, shared by all kernels so every message has one wording; each
# array is checked whole (type, dtype, ndim, emptiness, size) before the next


def _require_array(name, value):
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(value).__name__}")


def _require_float(name, array, ndim=None, lead_name=None, lead=None):
    """A float input of ``ndim`` dimensions (None: any), non-empty, within BLAS sizes.

    Without ``lead`` the array decides the dtype of the call (float32 or float64);
    with it, the array must have the dtype of ``lead``. Returns it as a plain
    ndarray view, so that subclasses such as np.matrix keep NumPy's semantics.
    """
    _require_array(name, array)
    if lead is None:
        if array.dtype.type not in _FLOAT_TYPES:
            raise TypeError(f"{name} must have dtype float32 or float64, got {array.dtype}")
    elif array.dtype.type is not lead.dtype.type:
        raise TypeError(
            f"{name} must have dtype {lead.dtype} (the dtype of {lead_name}), got {array.dtype}"
        )
    if ndim is not None and array.ndim != ndim:
        raise ValueError(
            f"{name} must be {ndim}-D, got {array.ndim}-D array of shape {array.shape}"
        )
    if array.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    for axis, size in enumerate(array.shape):
        if size > _BLAS_MAX_SIZE:
            raise ValueError(
                f"{name} is too large: dimension {axis} has {size} entries, "
                f"the BLAS takes at most {_BLAS_MAX_SIZE}"
            )
    return np.asarray(array)


def _format_shape(sizes):
    """(784, None) -> '(784, *)'; (10,) -> '(10,)'."""
    parts = ["*" if size is None else str(size) for size in sizes]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def _require_shape(name, array, expected, lead_name, lead):
    """``expected`` holds one size or None (any size) per dimension."""
    if len(expected) != array.ndim or any(
        want is not None and want != got for want, got in zip(expected, array.shape, strict=True)
    ):
        raise ValueError(
            f"{name} must have shape {_format_shape(expected)} to match {lead_name} "
            f"with shape {lead.shape}, got {array.shape}"
        )


def _ieee(kernel):
    """Runs ``kernel`` with NumPy's floating-point warnings off: like the C core, NaN
    and inf inputs give NaN and inf outputs, silently."""

    @functools.wraps(kernel)
    def quiet_kernel(*args, **kwargs):
        with np.errstate(all="ignore"):
            return kernel(*args, **kwargs)

    return quiet_kernel


# ----------------------------------------------------------------------------
# linear layer


@_ieee
def linear_forward(x, weight, bias):
    """``x @ weight + bias``; x (B, C), weight (C, OC), bias (OC,) -> (B, OC). See the stub."""
    x = _require_float("x", x, 2)
    weight = _require_float("weight", weight, 2, "x", x)
    bias = _require_float("bias", bias, 1, "x", x)
    _require_shape("weight", weight, (x.shape[1], None), "x", x)
    _require_shape("bias", bias, (weight.shape[1],), "weight", weight)
    out = x @ weight
    out += bias
    return out


@_ieee
def linear_backward(dout, x, weight, compute_dx=True):
    """(dweight (C, OC), dbias (OC,), dx (B, C) or None) from dout (B, OC). See the stub."""
    dout = _require_float("dout", dout, 2)
    x = _require_float("x", x, 2, "dout", dout)
    weight = _require_float("weight", weight, 2, "dout", dout)
    _require_shape("x", x, (dout.shape[0], None), "dout", dout)
    _require_shape("weight", weight, (x.shape[1], dout.shape[1]), "x", x)
    dweight = x.T @ dout
    dbias = dout.sum(axis=0)
    dx = dout @ weight.T if compute_dx else None
    return dweight, dbias, dx


def _require_no_overlap(arrays):
    """``arrays``: (name, array or None) pairs, outputs first; no output may share memory
    with a later array of the list."""
    for index, (name, array) in enumerate(arrays):
        for other_name, other in arrays[index + 1 :]:
            if array is not None and other is not None and np.shares_memory(array, other):
                raise ValueError(f"{name} must not share memory with {other_name}")


@_ieee
def _linear_backward_out(dx, dweight, dbias, dout, x, weight):
    """:func:`linear_backward` into preallocated ``dweight``, ``dbias`` and ``dx`` (None
    skips it), each writable, C-contiguous, of the dtype of ``dout`` and sharing no memory
    with another argument; returns None.

    Twin of the private ``fcnn._core._linear_backward_out``, the helper through which
    ``fcnn.functional.Linear`` reuses its gradient arrays step after step (not a stub
    kernel: tests/test_api.py compares the two)."""
    dout = _require_float("dout", dout, 2)
    x = _require_float("x", x, 2, "dout", dout)
    weight = _require_float("weight", weight, 2, "dout", dout)
    _require_shape("x", x, (dout.shape[0], None), "dout", dout)
    _require_shape("weight", weight, (x.shape[1], dout.shape[1]), "x", x)
    dweight = _require_in_place("dweight", dweight, "dout", dout)
    dbias = _require_in_place("dbias", dbias, "dout", dout)
    _require_shape("dweight", dweight, weight.shape, "weight", weight)
    _require_shape("dbias", dbias, (dout.shape[1],), "dout", dout)
    if dx is not None:
        dx = _require_in_place("dx", dx, "dout", dout)
        _require_shape("dx", dx, x.shape, "x", x)
    _require_no_overlap(
        [
            ("dweight", dweight),
            ("dbias", dbias),
            ("dx", dx),
            ("dout", dout),
            ("x", x),
            ("weight", weight),
        ]
    )
    np.matmul(x.T, dout, out=dweight)
    np.sum(dout, axis=0, out=dbias)
    if dx is not None:
        np.matmul(dout, weight.T, out=dx)


# ----------------------------------------------------------------------------
# activations


def _require_pair(first_name, first, second_name, second):
    """Checks for a (B, C) backward kernel: dout and the array saved by the forward pass."""
    first = _require_float(first_name, first, 2)
    second = _require_float(second_name, second, 2, first_name, first)
    _require_shape(second_name, second, first.shape, first_name, first)
    return first, second


@_ieee
def relu_forward(x):
    """``max(x, 0)`` elementwise, NaN kept; x (B, C) -> (B, C). See the stub."""
    x = _require_float("x", x, 2)
    return np.maximum(x, x.dtype.type(0))


@_ieee
def relu_backward(dout, x):
    """``dout`` where ``x > 0``, else 0; dout, x (B, C) -> (B, C). See the stub."""
    dout, x = _require_pair("dout", dout, "x", x)
    return np.where(x > 0, dout, dout.dtype.type(0))


@_ieee
def sigmoid_forward(x):
    """``1 / (1 + exp(-x))`` from ``exp(-|x|)``, never overflowing; x (B, C) -> (B, C).

    See the stub."""
    x = _require_float("x", x, 2)
    one = x.dtype.type(1)
    e = np.exp(-np.abs(x))
    return np.where(x < 0, e / (one + e), one / (one + e))


@_ieee
def sigmoid_backward(dout, out):
    """``dout * out * (1 - out)``; dout, out (B, C) -> (B, C). See the stub."""
    dout, out = _require_pair("dout", dout, "out", out)
    return dout * out * (out.dtype.type(1) - out)


@_ieee
def tanh_forward(x):
    """``tanh(x)`` elementwise; x (B, C) -> (B, C). See the stub."""
    x = _require_float("x", x, 2)
    return np.tanh(x)


@_ieee
def tanh_backward(dout, out):
    """``dout * (1 - out**2)``; dout, out (B, C) -> (B, C). See the stub."""
    dout, out = _require_pair("dout", dout, "out", out)
    return dout * (out.dtype.type(1) - out * out)


def _softmax(x):
    shifted = x - x.max(axis=1, keepdims=True)
    exps = np.exp(shifted)
    return exps / exps.sum(axis=1, keepdims=True)


@_ieee
def softmax_forward(x):
    """Row-wise softmax from the row maximum; x (B, C) -> (B, C). See the stub."""
    x = _require_float("x", x, 2)
    return _softmax(x)


@_ieee
def softmax_backward(dout, probs):
    """VJP of softmax given its output; dout, probs (B, C) -> (B, C). See the stub."""
    dout, probs = _require_pair("dout", dout, "probs", probs)
    return probs * (dout - (dout * probs).sum(axis=1, keepdims=True))


# ----------------------------------------------------------------------------
# dropout: unit i = b * H + j of a (B, H) batch kept iff random_uniform(key, i) >= p


def dropout_keep(shape, p, seed, step):
    """The keep mask (bool, ``shape``) of dropout at rate ``p`` in training step ``step``
    under ``seed``: unit ``i`` of the flattened batch is kept iff
    ``random_uniform(random_key(seed, step), i) >= p``."""
    key = random_key(np.uint64(seed), np.uint64(step))
    return random_uniform(key, np.arange(math.prod(shape), dtype=np.uint64)).reshape(shape) >= p


def _dropout(name, x, p, seed, step):
    x = _require_float(name, x, 2)
    p = check_dropout_rate(p, "p")
    seed = check_int(seed, "seed", 0, 2**64 - 1)
    step = check_int(step, "step", 0, INT64_MAX)
    # 1 / (1 - p) in double, rounded once to the dtype, as the C kernel does
    scale = x.dtype.type(1.0 / (1.0 - p))
    return np.where(dropout_keep(x.shape, p, seed, step), x * scale, x.dtype.type(0))


@_ieee
def dropout_forward(x, p, seed, step):
    """``x / (1 - p)`` where kept (:func:`dropout_keep`), else 0; x (B, H) -> (B, H).

    See the stub."""
    return _dropout("x", x, p, seed, step)


@_ieee
def dropout_backward(dout, p, seed, step):
    """``dout / (1 - p)`` where :func:`dropout_forward` kept, else 0; dout (B, H) -> (B, H).

    See the stub."""
    return _dropout("dout", dout, p, seed, step)


# ----------------------------------------------------------------------------
# loss


def _require_logits_labels(logits, labels):
    """Checks for the loss kernels; returns both as plain ndarrays."""
    logits = _require_float("logits", logits, 2)
    _require_array("labels", labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must have an integer dtype, got {labels.dtype}")
    labels = np.asarray(labels)
    _require_shape("labels", labels, (logits.shape[0],), "logits", logits)
    classes = logits.shape[1]
    outside = np.flatnonzero((labels < 0) | (labels >= classes))
    if outside.size:
        index = int(outside[0])
        raise ValueError(f"labels must be in [0, {classes}), got {labels[index]} at index {index}")
    return logits, labels


@_ieee
def softmax_cross_entropy_forward(logits, labels):
    """Mean of ``logsumexp(logits[i]) - logits[i, labels[i]]`` as a Python float. See the stub."""
    logits, labels = _require_logits_labels(logits, labels)
    # Double precision whatever the dtype, and log-sum-exp of the shifted row,
    # so logits of 1e4 neither overflow nor lose the small terms.
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    log_sum_exp = np.log(np.exp(shifted).sum(axis=1))
    true_logit = shifted[np.arange(logits.shape[0]), labels]
    return float(np.mean(log_sum_exp - true_logit))


@_ieee
def softmax_cross_entropy_backward(logits, labels):
    """``(softmax(logits) - onehot(labels)) / B`` in the dtype of logits. See the stub."""
    logits, labels = _require_logits_labels(logits, labels)
    batch_size = logits.shape[0]
    dlogits = _softmax(logits)
    dlogits[np.arange(batch_size), labels] -= 1
    dlogits /= batch_size
    return dlogits


# ----------------------------------------------------------------------------
# optimisation


def _require_in_place(name, array, lead_name=None, lead=None):
    """An array updated in place: a copy would be updated and thrown away, so it must be
    usable as it is (writable, aligned, C-contiguous, native byte order). Returns a
    plain ndarray view of it."""
    array = _require_float(name, array, None, lead_name, lead)
    flags = array.flags
    flaws = [
        word
        for word, flaw in (
            ("read-only", not flags.writeable),
            ("non-contiguous", not flags.c_contiguous),
            ("unaligned", not flags.aligned),
            ("byte-swapped", not array.dtype.isnative),
        )
        if flaw
    ]
    if flaws:
        article = "an" if flaws[0][0] in "aeiou" else "a"
        raise TypeError(
            f"{name} must be a writable, aligned, C-contiguous array in native byte order "
            f"(it is updated in place), got {article} {', '.join(flaws)} array"
        )
    return array


@_ieee
def sgd_step(param, grad, lr, weight_decay=0.0, momentum=0.0, velocity=None, nesterov=False):
    """``param <- (1 - weight_decay * lr) * param - lr * step`` in place, with optional
    (Nesterov) momentum through ``velocity``, also in place; returns None. See the stub."""
    param = _require_in_place("param", param)
    grad = _require_float("grad", grad, None, "param", param)
    _require_shape("grad", grad, param.shape, "param", param)
    lr = check_real(lr, "lr", minimum=0)
    weight_decay = check_real(weight_decay, "weight_decay", minimum=0)
    momentum_value = check_real(momentum, "momentum", minimum=0)
    if momentum_value >= 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    if nesterov and momentum_value == 0.0:
        raise ValueError("nesterov needs momentum > 0, got momentum 0")
    if velocity is not None:  # checked even when momentum is 0 and it goes unused
        velocity = _require_in_place("velocity", velocity, "param", param)
        _require_shape("velocity", velocity, param.shape, "param", param)
    elif momentum_value > 0.0:
        raise ValueError("velocity must be an array like param when momentum > 0, got None")
    # The rates are rounded to the dtype of param before use, as in the C kernel.
    real = param.dtype.type
    keep = real(1) - real(weight_decay) * real(lr)
    step = grad
    if momentum_value > 0.0:
        np.add(real(momentum_value) * velocity, grad, out=velocity)
        step = grad + real(momentum_value) * velocity if nesterov else velocity
    np.subtract(keep * param, real(lr) * step, out=param)


def exponential_lr(initial_lr, step, stage_length=500, decay=0.5, staircase=True):
    """``initial_lr * decay ** (step / stage_length)``, the exponent floored when staircase.

    See the stub."""
    initial_lr = check_real(initial_lr, "initial_lr", minimum=0)
    step = check_int(step, "step", 0, INT64_MAX)
    stage_length = check_int(stage_length, "stage_length", 1, INT64_MAX)
    decay_value = check_real(decay, "decay", minimum=0)
    if not 0.0 < decay_value <= 1.0:
        raise ValueError(f"decay must be in (0, 1], got {decay!r}")
    exponent = step // stage_length if staircase else step / stage_length
    return initial_lr * decay_value ** float(exponent)


# ----------------------------------------------------------------------------
# data augmentation (csrc/augment.c): the same numbers in the same order, so the same bytes

#: Largest elastic_sigma accepted (csrc/kernels.h FCNN_MAX_ELASTIC_SIGMA).
MAX_ELASTIC_SIGMA = 1000.0
# Draw indices of an image's stream: five affine numbers, then the fields dx, dy (a cell each).
_DRAW_TRANSLATE_X, _DRAW_TRANSLATE_Y, _DRAW_ROTATE, _DRAW_SCALE, _DRAW_SHEAR = range(5)
_ELASTIC_FIRST = 8
#: Smallest elastic_sigma whose fields are drawn on cells of 2 x 2 pixels (augment.c).
COARSE_SIGMA = 4.0
_STRENGTHS = ("translate", "rotate", "scale", "shear", "elastic_alpha", "elastic_sigma")


def _augment_strengths(values):
    """The six strengths as floats, checked as the binding checks them."""
    strengths = {
        name: check_real(value, name, minimum=0)
        for name, value in zip(_STRENGTHS, values, strict=True)
    }
    if strengths["scale"] >= 1:
        raise ValueError(f"scale must be in [0, 1), got {values[2]!r}")
    if strengths["elastic_sigma"] > MAX_ELASTIC_SIGMA:
        raise ValueError(f"elastic_sigma must be in [0, {MAX_ELASTIC_SIGMA:g}], got {values[5]!r}")
    return strengths


def _gaussian_taps(applied, radius, sigma):
    """Taps 0..applied of the Gaussian of std sigma truncated at radius, normalised: float32
    from double."""
    total = 1.0
    for t in range(1, radius + 1):
        total += 2 * math.exp(-float(t * t) / (2 * sigma * sigma))
    taps = [1 / total] + [
        math.exp(-float(t * t) / (2 * sigma * sigma)) / total for t in range(1, applied + 1)
    ]
    return [np.float32(tap) for tap in taps]


def _field_step(sigma):
    """Pixels a cell of the elastic fields' grid spans along each axis."""
    return 2 if sigma >= COARSE_SIGMA else 1


def _blend_table(n, m, step):
    """For n pixels along an axis of m cells: the cells that bracket each pixel and the second
    one's float32 weight (augment.c blend_table)."""
    first, second, weight = [], [], []
    for i in range(n):
        u = (i - (step - 1) / 2) / step
        low = min(max(math.floor(u), 0), m - 1)
        inner = low + 1 < m and u > low
        first.append(low)
        second.append(low + 1 if inner else low)
        weight.append(u - low if inner else 0.0)
    return np.array(first), np.array(second), np.array(weight, np.float32)


def _smooth(field, taps):
    """field (B, H, W) float32 smoothed along rows then columns by the symmetric taps, zero
    outside, in float32."""
    P = len(taps) - 1
    B, H, W = field.shape
    padded = np.zeros((B, H, W + 2 * P), np.float32)
    padded[:, :, P : P + W] = field
    across = taps[0] * padded[:, :, P : P + W]
    for t in range(1, P + 1):
        across = across + taps[t] * (
            padded[:, :, P - t : P - t + W] + padded[:, :, P + t : P + t + W]
        )
    padded = np.zeros((B, H + 2 * P, W), np.float32)
    padded[:, P : P + H] = across
    smooth = taps[0] * padded[:, P : P + H]
    for t in range(1, P + 1):
        smooth = smooth + taps[t] * (padded[:, P - t : P - t + H] + padded[:, P + t : P + t + H])
    return smooth


def _elastic_displacements(keys, H, W, alpha, sigma):
    """The elastic displacements (dx, dy), float32 (B, H, W) each, of the streams keys (B);
    alpha, sigma > 0 (see augment)."""
    f32 = np.float32
    B = keys.shape[0]
    step = _field_step(sigma)
    Hc, Wc = -(-H // step), -(-W // step)
    radius = math.ceil(3 * sigma / step)
    taps = _gaussian_taps(min(radius, max(Hc, Wc) - 1), radius, sigma / step)
    row_first, row_second, row_weight = _blend_table(H, Hc, step)
    column_first, column_second, column_weight = _blend_table(W, Wc, step)
    row_weight = row_weight.reshape(1, H, 1)
    draws = np.arange(Hc * Wc, dtype=np.uint64) + np.uint64(_ELASTIC_FIRST)
    bits = random_bits(keys[:, None], draws)
    displacements = []
    for shift in (40, 16):
        # 24 bits a number: exact in float32, as 2 u - 1 is
        numbers = (bits >> np.uint64(shift)) & np.uint64(0xFFFFFF)
        field = f32(2) * (numbers.astype(f32) * f32(2.0**-24))
        field = field - f32(1)
        smooth = _smooth(field.reshape(B, Hc, Wc), taps)
        wide = (f32(1) - column_weight) * smooth[:, :, column_first]
        wide = wide + column_weight * smooth[:, :, column_second]
        blended = (f32(1) - row_weight) * wide[:, row_first]
        blended = blended + row_weight * wide[:, row_second]
        # a cell's draw stands for the mean of step x step pixels' draws
        displacements.append(f32(alpha / step) * blended)
    return displacements


@_ieee
def augment(
    images,
    indices,
    seed,
    first_stream,
    translate,
    rotate,
    scale,
    shear,
    elastic_alpha,
    elastic_sigma,
):
    """images (N, H, W) uint8, indices (B) -> (B, H, W) uint8: image ``indices[b]`` warped.

    Image b draws from ``random_key(seed, first_stream + b)``: number 0 and 1 the
    translation (x, y), 2 the rotation, 3 the scale, 4 the shear, from 8 on one
    number per pixel (H * W), whose bits 40-63 give the displacement field dx there
    and bits 16-39 the field dy. The digit is moved by ``(tx, ty)``,
    rotated by ``theta``, scaled by ``s`` and sheared by ``k`` (``x += k y``) about
    the image centre ((W - 1) / 2, (H - 1) / 2); output pixel q samples the source at
    ``centre + A (q - centre - t) + elastic_alpha * (smoothed dx, dy)(q)``, A the
    inverse of the linear part, bilinearly with zeros outside, rounded half up and
    clamped to [0, 255]. The fields are float32, uniform in [-1, 1) on a grid of
    2**-23, smoothed in float32 by a normalised Gaussian of std ``elastic_sigma``
    truncated at ceil(3 sigma), zeros outside. From ``elastic_sigma`` =
    ``COARSE_SIGMA`` on, the fields are drawn at cells of 2 x 2 pixels instead (draw
    8 + the cell's index, row-major over ceil(H / 2) x ceil(W / 2) cells), smoothed
    there by the Gaussian of std sigma / 2 (truncated at ceil(3 sigma / 2) cells),
    blended bilinearly to the pixels, first along rows, then along columns (cell c's
    centre at pixel 2 c + 1/2, the end cells beyond), and scaled by
    ``elastic_alpha / 2``: a cell's draw stands for the mean of its four pixels'.
    The affine numbers are drawn and composed in double, then rounded to float32;
    the coordinates and the sampling are float32.
    """
    _require_array("images", images)
    if images.dtype != np.uint8:
        raise TypeError(f"images must have dtype uint8, got {images.dtype}")
    if images.ndim != 3 or images.size == 0:
        raise ValueError(
            "images must be a non-empty 3-D array (images, height, width), "
            f"got shape {_format_shape(images.shape)}"
        )
    N, H, W = images.shape
    indices = _index_array("indices", indices, None, N)
    B = indices.shape[0]
    seed = check_int(seed, "seed", 0, 2**64 - 1)
    first_stream = check_int(first_stream, "first_stream", 0, INT64_MAX - (B - 1))
    strengths = _augment_strengths((translate, rotate, scale, shear, elastic_alpha, elastic_sigma))
    keys = random_key(seed, np.uint64(first_stream) + np.arange(B, dtype=np.uint64))

    def signed(index):  # (B, 1, 1) draws of ``index``, uniform in [-1, 1)
        return (2 * random_uniform(keys, index) - 1).reshape(B, 1, 1)

    tx = strengths["translate"] * signed(_DRAW_TRANSLATE_X)
    ty = strengths["translate"] * signed(_DRAW_TRANSLATE_Y)
    theta = strengths["rotate"] * signed(_DRAW_ROTATE) * (math.pi / 180)
    s = 1 + strengths["scale"] * signed(_DRAW_SCALE)
    k = strengths["shear"] * signed(_DRAW_SHEAR)
    # Python's math calls the C library's sin and cos, as the kernel does.
    cosine = np.array([math.cos(value) for value in theta.ravel()]).reshape(B, 1, 1)
    sine = np.array([math.sin(value) for value in theta.ravel()]).reshape(B, 1, 1)
    # float32 from here on (a strength beyond float's range gives inf, as in C)
    f32 = np.float32
    a00, a01 = ((cosine + k * sine) / s).astype(f32), ((sine - k * cosine) / s).astype(f32)
    a10, a11 = (-sine / s).astype(f32), (cosine / s).astype(f32)
    tx, ty = tx.astype(f32), ty.astype(f32)
    cx, cy = f32((W - 1) / 2), f32((H - 1) / 2)
    ry = (np.arange(H, dtype=f32).reshape(1, H, 1) - cy) - ty
    rx = (np.arange(W, dtype=f32).reshape(1, 1, W) - cx) - tx
    xs = cx + (a00 * rx + a01 * ry)
    ys = cy + (a10 * rx + a11 * ry)
    alpha, sigma = strengths["elastic_alpha"], strengths["elastic_sigma"]
    if alpha > 0 and sigma > 0:
        dx, dy = _elastic_displacements(keys, H, W, alpha, sigma)
        xs, ys = xs + dx, ys + dy
    inside = (xs > -1) & (xs < f32(W)) & (ys > -1) & (ys < f32(H))
    xs, ys = np.where(inside, xs, f32(0)), np.where(inside, ys, f32(0))
    x0, y0 = np.floor(xs), np.floor(ys)
    fx, fy = xs - x0, ys - y0
    # Indices into the images padded by one zero pixel on every side.
    ix, iy = x0.astype(np.int64) + 1, y0.astype(np.int64) + 1
    padded = np.zeros((B, H + 2, W + 2), f32)
    padded[:, 1 : H + 1, 1 : W + 1] = images[indices]
    b = np.arange(B).reshape(B, 1, 1)
    top = (1 - fx) * padded[b, iy, ix] + fx * padded[b, iy, ix + 1]
    bottom = (1 - fx) * padded[b, iy + 1, ix] + fx * padded[b, iy + 1, ix + 1]
    rounded = np.floor((1 - fy) * top + fy * bottom + f32(0.5))
    return np.where(inside, np.clip(rounded, 0, 255), 0).astype(np.uint8)


# ----------------------------------------------------------------------------
# the fused epoch, batch by batch with the kernels above


def train_epoch(
    images,
    labels,
    order,
    weights,
    biases,
    lrs,
    batch_size,
    weight_decay=0.0,
    momentum=0.0,
    weight_velocities=None,
    bias_velocities=None,
    nesterov=False,
    sparse_threshold=None,
    num_threads=0,
    dropout=None,
    augment=None,
    image_shape=None,
    augment_seed=0,
    first_stream=0,
):
    """One SGD epoch of the MLP ``weights``/``biases`` over ``images[order]``; see the stub.

    ``sparse_threshold`` and ``num_threads`` only steer how the C kernel computes:
    the twin checks them and computes densely on one thread. With ``augment``, each
    batch's images go through :func:`augment` first.
    """
    if sparse_threshold is not None:
        threshold = check_real(sparse_threshold, "sparse_threshold", minimum=0)
        if threshold > 1:
            raise ValueError(
                f"sparse_threshold must be None or in [0, 1], got {sparse_threshold!r}"
            )
    check_int(num_threads, "num_threads", 0, INT64_MAX)
    for name, value in (("weights", weights), ("biases", biases)):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{name} must be a list of numpy arrays, got {type(value).__name__}")
    if not 1 <= len(weights) <= 64 or len(biases) != len(weights):
        raise ValueError(
            f"weights and biases must hold 1 to 64 arrays each, got "
            f"{len(weights)} and {len(biases)}"
        )
    for index, weight in enumerate(weights):
        _require_in_place(f"weights[{index}]", weight)
        if weight.ndim != 2 or weight.dtype != weights[0].dtype:
            raise ValueError(f"weights[{index}] must be 2-D of the dtype of weights[0]")
        if index > 0 and weight.shape[0] != weights[index - 1].shape[1]:
            raise ValueError(f"weights[{index}] must have {weights[index - 1].shape[1]} rows")
        _require_in_place(f"biases[{index}]", biases[index])
        if biases[index].shape != (weight.shape[1],):
            raise ValueError(f"biases[{index}] must have shape ({weight.shape[1]},)")
    dtype = weights[0].dtype
    _require_array("images", images)
    if images.dtype != np.uint8 and images.dtype != dtype:
        raise TypeError(
            f"images must have dtype uint8 or {dtype} (the dtype of the weights), "
            f"got {images.dtype}"
        )
    if images.ndim != 2 or images.shape[1] != weights[0].shape[0] or images.shape[0] == 0:
        raise ValueError(f"images must have shape (*, {weights[0].shape[0]}), got {images.shape}")
    labels = _index_array("labels", labels, images.shape[0], weights[-1].shape[1])
    order = _index_array("order", order, None, images.shape[0])
    if augment is not None:
        warp = _epoch_augmentation(
            images, augment, image_shape, augment_seed, first_stream, order.shape[0]
        )
    batch_size = check_int(batch_size, "batch_size", 1, INT64_MAX)
    momentum_value = check_real(momentum, "momentum", minimum=0)
    if momentum_value > 0 and (weight_velocities is None or bias_velocities is None):
        raise ValueError(
            "weight_velocities and bias_velocities must be lists like weights "
            "and biases when momentum > 0, got None"
        )
    dropout = _dropout_list(dropout, len(weights) - 1)
    batches = -(-order.shape[0] // batch_size)
    lrs = np.asarray(lrs, np.float64)
    if lrs.shape != (batches,):
        raise ValueError(f"lrs must hold one rate per batch, {batches}, got {lrs.size}")
    if not np.all(np.isfinite(lrs) & (lrs >= 0)):
        raise ValueError("lrs must be finite and >= 0")
    loss_sum, correct = 0.0, 0
    for step in range(batches):
        indices = order[step * batch_size : (step + 1) * batch_size]
        x = (images[indices] if augment is None else warp(indices, step * batch_size)).astype(dtype)
        if images.dtype == np.uint8:
            x /= dtype.type(255)
        activations = [x]
        for index, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
            out = linear_forward(activations[-1], weight, bias)
            if index + 1 < len(weights):
                out = relu_forward(out)
                if dropout[index] is not None:
                    p, seed, first_step = dropout[index]
                    out = dropout_forward(out, p, seed, first_step + step)
            activations.append(out)
        logits, batch_labels = activations[-1], labels[indices]
        batch_loss = softmax_cross_entropy_forward(logits, batch_labels) * indices.shape[0]
        if not math.isfinite(batch_loss):
            return step, loss_sum, correct
        loss_sum += batch_loss
        correct += int((logits.argmax(axis=1) == batch_labels).sum())
        dout = softmax_cross_entropy_backward(logits, batch_labels)
        for index in range(len(weights) - 1, -1, -1):
            dweight, dbias, dx = linear_backward(
                dout, activations[index], weights[index], compute_dx=index > 0
            )
            if index > 0:
                if dropout[index - 1] is not None:
                    p, seed, first_step = dropout[index - 1]
                    dx = dropout_backward(dx, p, seed, first_step + step)
                # activations[index] > 0 where the ReLU passed and dropout kept
                dout = relu_backward(dx, activations[index])
            for param, grad, velocities in (
                (weights[index], dweight, weight_velocities),
                (biases[index], dbias, bias_velocities),
            ):
                velocity = velocities[index] if momentum_value > 0 else None
                sgd_step(param, grad, float(lrs[step]), weight_decay, momentum, velocity, nesterov)
    return batches, loss_sum, correct


def _dropout_list(dropout, hidden):
    """train_epoch's ``dropout``: ``hidden`` entries, each None or checked (p, seed, step)."""
    if dropout is None:
        return [None] * hidden
    if not isinstance(dropout, (list, tuple)):
        raise TypeError(f"dropout must be None or a list, got {type(dropout).__name__}")
    if len(dropout) != hidden:
        raise ValueError(
            f"dropout must hold {hidden} entries (one per hidden layer), got {len(dropout)}"
        )
    checked = []
    for index, item in enumerate(dropout):
        if item is not None and (not isinstance(item, tuple) or len(item) != 3):
            raise TypeError(f"dropout[{index}] must be None or a tuple (p, seed, step)")
        checked.append(
            None
            if item is None
            else (
                check_dropout_rate(item[0], "p"),
                check_int(item[1], "seed", 0, 2**64 - 1),
                check_int(item[2], "step", 0, INT64_MAX),
            )
        )
    return checked


def _epoch_augmentation(images, settings, image_shape, seed, first_stream, num_samples):
    """warp(indices, position) -> the rows ``indices`` of ``images`` augmented as the fused
    epoch does it, the first with the stream ``first_stream + position``."""
    if images.dtype != np.uint8:
        raise TypeError("images must have dtype uint8 to be augmented")
    if not isinstance(settings, (list, tuple)):
        raise TypeError(
            f"augment must be None or a sequence of 6 strengths, got {type(settings).__name__}"
        )
    if len(settings) != 6:
        raise ValueError(
            "augment must hold 6 strengths (translate, rotate, scale, shear, elastic_alpha, "
            f"elastic_sigma), got {len(settings)}"
        )
    strengths = tuple(_augment_strengths(settings).values())
    C = images.shape[1]
    if image_shape is None:
        height = width = math.isqrt(C)
    else:
        if not isinstance(image_shape, (list, tuple)) or len(image_shape) != 2:
            raise ValueError("image_shape must be None or a pair (height, width)")
        height = check_int(image_shape[0], "image_shape[0]", 1)
        width = check_int(image_shape[1], "image_shape[1]", 1)
    if height * width != C:
        raise ValueError(
            f"image_shape must be (height, width) with height * width = {C} (the inputs of "
            f"weights[0]), got {image_shape!r}"
        )
    seed = check_int(seed, "augment_seed", 0, 2**64 - 1)
    first_stream_value = check_int(first_stream, "first_stream", 0)
    if first_stream_value > INT64_MAX - (num_samples - 1):
        raise ValueError(
            f"first_stream must be at most 2**63 - {num_samples} for {num_samples} samples, "
            f"got {first_stream!r}"
        )
    stack = images.reshape(-1, height, width)

    def warp(indices, position):
        out = augment(stack, indices, seed, first_stream_value + position, *strengths)
        return out.reshape(indices.shape[0], C)

    return warp


def _index_array(name, values, length, upper):
    """A 1-D integer array (of ``length`` entries, unless None) with values in [0, upper)."""
    _require_array(name, values)
    if values.dtype.kind not in "iu":
        raise TypeError(f"{name} must have an integer dtype, got {values.dtype}")
    if (
        values.ndim != 1
        or values.shape[0] == 0
        or (length is not None and values.shape[0] != length)
    ):
        raise ValueError(
            f"{name} must be a 1-D array of {length or 'some'} entries, got shape {values.shape}"
        )
    bad = np.flatnonzero((values < 0) | (values >= upper))
    if bad.size:
        raise ValueError(f"{name} must be in [0, {upper}), got {values[bad[0]]} at index {bad[0]}")
    return values.astype(np.int64)
