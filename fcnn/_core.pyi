"""Type stubs for ``fcnn._core``, the C kernels of fcnn.

Every kernel takes NumPy arrays of dtype float32 or float64. The dtype of the
first array argument decides the dtype of the call; every other floating array
must have that same dtype (``TypeError`` otherwise). Read-only inputs of any
memory layout (strided, transposed, Fortran order) are accepted and converted;
the one array updated in place (``param`` of :func:`sgd_step`) must already be
writable, C-contiguous and of the right dtype, since a silent copy would lose
the update.

Size letters used below: B = batch size, C = input features, OC = output
features (classes for the loss), H = hidden units (dropout's input).

Errors: ``TypeError`` for a non-array argument or a wrong dtype, ``ValueError``
for a wrong number of dimensions, a shape mismatch, an empty array, a label out
of range, a non-finite or negative rate, or a size too large for the BLAS's
32-bit indices. Every message names the argument, what was expected and what
arrived.

``fcnn.reference`` holds a pure-NumPy twin of each function, same name, same
signature, same results.
"""

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.floating]
IntArray = npt.NDArray[np.integer]

def linear_forward(x: FloatArray, weight: FloatArray, bias: FloatArray) -> FloatArray:
    """Affine map ``x @ weight + bias``.

    Shape: x (B, C), weight (C, OC), bias (OC,) -> (B, OC).
    """

def linear_backward(
    dout: FloatArray, x: FloatArray, weight: FloatArray, compute_dx: bool = True
) -> tuple[FloatArray, FloatArray, FloatArray | None]:
    """Gradients of :func:`linear_forward` given the upstream gradient ``dout``.

    Shape: dout (B, OC), x (B, C), weight (C, OC) ->
    (dweight (C, OC) = x.T @ dout, dbias (OC,) = dout summed over the batch,
    dx (B, C) = dout @ weight.T, or None when ``compute_dx`` is false).
    """

def relu_forward(x: FloatArray) -> FloatArray:
    """``max(x, 0)`` elementwise. Shape: x (B, C) -> (B, C)."""

def relu_backward(dout: FloatArray, x: FloatArray) -> FloatArray:
    """``dout`` where ``x > 0``, else 0. Shape: dout (B, C), x (B, C) -> (B, C)."""

def sigmoid_forward(x: FloatArray) -> FloatArray:
    """``1 / (1 + exp(-x))`` elementwise, computed from ``exp(-|x|)`` so that it never
    overflows (0 and 1 at the extremes, NaN kept). Shape: x (B, C) -> (B, C)."""

def sigmoid_backward(dout: FloatArray, out: FloatArray) -> FloatArray:
    """``dout * out * (1 - out)`` given the forward's output ``out = sigmoid_forward(x)``.

    Shape: dout (B, C), out (B, C) -> (B, C).
    """

def tanh_forward(x: FloatArray) -> FloatArray:
    """``tanh(x)`` elementwise (±1 at the extremes, NaN kept). Shape: x (B, C) -> (B, C)."""

def tanh_backward(dout: FloatArray, out: FloatArray) -> FloatArray:
    """``dout * (1 - out**2)`` given the forward's output ``out = tanh_forward(x)``.

    Shape: dout (B, C), out (B, C) -> (B, C).
    """

def softmax_forward(x: FloatArray) -> FloatArray:
    """Row-wise softmax, computed from the row maximum. Shape: x (B, C) -> (B, C)."""

def softmax_backward(dout: FloatArray, probs: FloatArray) -> FloatArray:
    """Vector-Jacobian product of softmax given its output ``probs``.

    ``dx = probs * (dout - sum(dout * probs, axis=1, keepdims=True))``.
    Shape: dout (B, C), probs (B, C) -> (B, C).
    """

def dropout_forward(x: FloatArray, p: float, seed: int, step: int) -> FloatArray:
    """Inverted dropout: ``x / (1 - p)`` where kept, else 0, for ``p`` in [0, 1).

    Unit ``i`` of the flattened batch (``i = b * H + j``) is kept iff
    ``random_uniform(random_key(seed, step), i) >= p`` (``fcnn.reference``'s
    counter-based draws, csrc/random.h): the mask depends on (seed, step, i) only,
    never on the thread count. ``seed`` in [0, 2**64), ``step`` >= 0 (one per
    training step). Shape: x (B, H) -> (B, H).
    """

def dropout_backward(dout: FloatArray, p: float, seed: int, step: int) -> FloatArray:
    """Gradient of :func:`dropout_forward` with the same (p, seed, step): ``dout / (1 - p)``
    where that forward kept the unit, else 0. Shape: dout (B, H) -> (B, H).
    """

def softmax_cross_entropy_forward(logits: FloatArray, labels: IntArray) -> float:
    """Mean over the batch of ``logsumexp(logits[i]) - logits[i, labels[i]]``.

    Accumulated in double precision whatever the dtype; stable for logits of
    any finite size. Labels may have any integer dtype and must lie in [0, C).
    Shape: logits (B, C), labels (B,) -> Python float.
    """

def softmax_cross_entropy_backward(logits: FloatArray, labels: IntArray) -> FloatArray:
    """Gradient of :func:`softmax_cross_entropy_forward` w.r.t. ``logits``.

    ``(softmax(logits) - onehot(labels)) / B``.
    Shape: logits (B, C), labels (B,) -> (B, C).
    """

def sgd_step(
    param: FloatArray,
    grad: FloatArray,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    velocity: FloatArray | None = None,
    nesterov: bool = False,
) -> None:
    """In-place SGD step with the original project's weight decay rule.

    ``param <- (1 - weight_decay * lr) * param - lr * step`` where ``step`` is
    ``grad`` without momentum; with ``momentum > 0``, ``velocity <- momentum *
    velocity + grad`` (in place) and ``step`` is ``velocity``, or ``grad +
    momentum * velocity`` when ``nesterov``. ``param`` and ``velocity`` must be
    writable and C-contiguous (TypeError otherwise); ``grad`` and ``velocity``
    must have ``param``'s shape and dtype. ``lr``, ``weight_decay`` must be
    finite and >= 0; ``momentum`` in [0, 1); ``velocity`` is required when
    ``momentum > 0`` and ignored when it is 0; ``nesterov`` needs
    ``momentum > 0`` (ValueError otherwise). Any shape.
    """

def exponential_lr(
    initial_lr: float,
    step: int,
    stage_length: int = 500,
    decay: float = 0.5,
    staircase: bool = True,
) -> float:
    """Learning rate of the exponential schedule at ``step``.

    ``initial_lr * decay ** floor(step / stage_length)`` when ``staircase``,
    else ``initial_lr * decay ** (step / stage_length)``. Requires
    ``initial_lr >= 0`` finite, ``step >= 0``, ``stage_length >= 1`` and
    ``0 < decay <= 1``.
    """

def train_epoch(
    images: npt.NDArray[np.uint8] | FloatArray,
    labels: IntArray,
    order: IntArray,
    weights: list[FloatArray],
    biases: list[FloatArray],
    lrs: npt.ArrayLike,
    batch_size: int,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    weight_velocities: list[FloatArray] | None = None,
    bias_velocities: list[FloatArray] | None = None,
    nesterov: bool = False,
    sparse_threshold: float | None = None,
    num_threads: int = 0,
    dropout: list[tuple[float, int, int] | None] | None = None,
    augment: tuple[float, float, float, float, float, float] | None = None,
    image_shape: tuple[int, int] | None = None,
    augment_seed: int = 0,
    first_stream: int = 0,
) -> tuple[int, float, int]:
    """One fused SGD epoch of a plain MLP, in place; returns (steps, loss_sum, correct).

    The net is ``Linear(weights[0], biases[0])``, then ReLU + Linear for each
    further layer, trained with softmax cross-entropy. Batches are
    ``images[order[s*batch_size:(s+1)*batch_size]]`` (the last may be smaller):
    uint8 images are divided by 255, float images (of the weights' dtype) taken
    as they are. Step ``s`` uses the rate ``lrs[s]`` and :func:`sgd_step`'s rule
    with ``weight_decay``, ``momentum`` and ``nesterov`` (the velocity lists are
    required when momentum > 0 and updated in place). For uint8 images the first
    layer runs on a batch's non-zeros only when that is cheaper: by default
    (``sparse_threshold=None``) a cost model timed on this machine at the first
    call of each shape decides per batch; a number in [0, 1] forces the rule
    "sparse when the share of non-zero pixels is below it" (0: always dense).
    With momentum or weight decay, first-layer rows whose pixel is absent from a
    batch are updated lazily (their missed steps composed in closed form), which
    agrees with the step-by-step rule to rounding. ``num_threads`` 0 means
    :func:`get_num_threads`; larger counts are clamped to 256. Runs with
    flush-to-zero / denormals-are-zero, restored on return.

    ``dropout``: None, or one entry per hidden layer (``len(weights) - 1``), None
    or ``(p, seed, step)``: :func:`dropout_forward` after that layer's ReLU, batch
    ``s`` drawing the mask of step ``step + s`` (and its backward before the ReLU's),
    as ``fcnn.functional.Dropout`` does step after step.
    ``augment``, the six strengths of :func:`augment` (uint8 images only), warps
    each batch before it is used: the sample at position p of ``order`` with the
    stream ``first_stream + p`` of ``augment_seed``, images seen as ``image_shape``
    (height, width), by default square.

    Returns the steps done (fewer than the batches when a batch's loss was not
    finite; that batch's update is not applied), the sum of the per-sample losses
    and the number of samples whose largest logit was their label.
    Shape: images (N, C), labels (N,), order (M,) in [0, N), weights[l]
    (sizes[l], sizes[l+1]), biases[l] (sizes[l+1],), lrs (ceil(M / batch_size),).
    """

def augment(
    images: npt.NDArray[np.uint8],
    indices: IntArray,
    seed: int,
    first_stream: int,
    translate: float,
    rotate: float,
    scale: float,
    shear: float,
    elastic_alpha: float,
    elastic_sigma: float,
) -> npt.NDArray[np.uint8]:
    """Randomly warped copies of ``images[indices]``, bitwise reproducible.

    Image b is warped with the random stream ``first_stream + b`` of ``seed``
    (csrc/random.h), so its bytes depend on (seed, stream) only, never on the
    thread count or on which call it came in. The warp: a translation uniform in
    +-``translate`` pixels (x and y), a rotation uniform in +-``rotate`` degrees,
    a scale 1 + uniform +-``scale`` and a shear factor uniform in +-``shear``, all
    about the image centre, plus an elastic distortion (Simard et al. 2003): float32
    fields uniform in [-1, 1) smoothed by a normalised Gaussian of std ``elastic_sigma``
    (truncated at ceil(3 sigma), zeros outside the image), times ``elastic_alpha``
    pixels. Pixels are sampled bilinearly (zeros outside), rounded half up and
    clamped to [0, 255]. A strength of 0 turns its transform off (the elastic one
    when either of its two is 0); all 0 copies. Strengths must be finite and >= 0,
    ``scale`` < 1, ``elastic_sigma`` <= 1000; ``seed`` in [0, 2**64),
    ``first_stream`` >= 0. fcnn.reference.augment gives the same bytes.
    Shape: images (N, H, W), indices (B,) in [0, N) -> (B, H, W).
    """

def set_num_threads(num_threads: int) -> None:
    """Threads of every fcnn kernel, one process-wide setting (any Python thread may
    change it; the next kernel call uses it), clamped to [1, 256]. fcnn splits its
    matrix products across its own OpenMP threads and keeps its BLAS at 1 thread."""

def get_num_threads() -> int:
    """Threads fcnn's kernels use now: the set_num_threads count, or until it is
    called, OpenMP's default of the calling thread (OMP_NUM_THREADS, threadpoolctl's
    limits), clamped to [1, 256]."""
