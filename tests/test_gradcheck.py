"""Backward kernels against central finite differences of the forward kernels, in float64.

Each check builds a scalar from a forward kernel (the output weighted by a fixed
random upstream gradient, or the loss itself), differentiates it numerically
entry by entry, and compares with the backward kernel. The checks run on the
reference first, since the kernel comparison tests trust it, and on ``_core``.
"""

import numpy as np
import pytest

import fcnn._core as core
from fcnn import reference

BACKENDS = [pytest.param(reference, id="reference"), pytest.param(core, id="core")]
B, C, OC = 3, 4, 5
STEP = 1e-6
# Central differences of a smooth function err by O(STEP**2) plus rounding of
# O(eps * |f| / STEP); both stay far below this.
ATOL = 1e-7


def numerical_gradient(function, array, step=STEP):
    """d function() / d array by central differences, perturbing ``array`` in place."""
    gradient = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + step
        above = function()
        array[index] = saved - step
        below = function()
        array[index] = saved
        gradient[index] = (above - below) / (2 * step)
    return gradient


@pytest.fixture
def rng():
    return np.random.default_rng(2024)


@pytest.mark.parametrize("backend", BACKENDS)
def test_linear_backward(backend, rng):
    x, weight, bias = (
        rng.standard_normal((B, C)),
        rng.standard_normal((C, OC)),
        rng.standard_normal(OC),
    )
    dout = rng.standard_normal((B, OC))

    def weighted_output():
        return float(np.sum(backend.linear_forward(x, weight, bias) * dout))

    dweight, dbias, dx = backend.linear_backward(dout, x, weight)
    np.testing.assert_allclose(dx, numerical_gradient(weighted_output, x), atol=ATOL, rtol=0)
    np.testing.assert_allclose(
        dweight, numerical_gradient(weighted_output, weight), atol=ATOL, rtol=0
    )
    np.testing.assert_allclose(dbias, numerical_gradient(weighted_output, bias), atol=ATOL, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_relu_backward(backend, rng):
    # |x| >= 0.1, far from the kink compared with the step
    x = rng.uniform(0.1, 2.0, (B, C)) * rng.choice([-1.0, 1.0], (B, C))
    dout = rng.standard_normal((B, C))

    def weighted_output():
        return float(np.sum(backend.relu_forward(x) * dout))

    expected = numerical_gradient(weighted_output, x)
    np.testing.assert_allclose(backend.relu_backward(dout, x), expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_output_saving_activation_backward(backend, rng, name, scale):
    """sigmoid and tanh: the backward takes the forward's output, not its input."""
    forward = getattr(backend, f"{name}_forward")
    backward = getattr(backend, f"{name}_backward")
    x = rng.standard_normal((B, C)) * scale
    dout = rng.standard_normal((B, C))

    def weighted_output():
        return float(np.sum(forward(x) * dout))

    expected = numerical_gradient(weighted_output, x)
    np.testing.assert_allclose(backward(dout, forward(x)), expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_backward_is_the_vjp(backend, rng):
    x = rng.standard_normal((B, C)) * 3
    dout = rng.standard_normal((B, C))

    def weighted_output():
        return float(np.sum(backend.softmax_forward(x) * dout))

    expected = numerical_gradient(weighted_output, x)
    actual = backend.softmax_backward(dout, backend.softmax_forward(x))
    np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_softmax_cross_entropy_backward_is_the_loss_gradient(backend, rng, scale):
    logits = rng.standard_normal((B, OC)) * scale
    labels = rng.integers(0, OC, B)

    def loss():
        return backend.softmax_cross_entropy_forward(logits, labels)

    expected = numerical_gradient(loss, logits)
    actual = backend.softmax_cross_entropy_backward(logits, labels)
    np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_composed_network_gradient(backend, rng):
    """linear -> relu -> linear -> loss: the backward kernels chain with the right transposes."""
    x = rng.standard_normal((B, C))
    weight1, bias1 = rng.standard_normal((C, 6)), rng.standard_normal(6)
    weight2, bias2 = rng.standard_normal((6, OC)), rng.standard_normal(OC)
    labels = rng.integers(0, OC, B)

    def loss():
        hidden = backend.relu_forward(backend.linear_forward(x, weight1, bias1))
        return backend.softmax_cross_entropy_forward(
            backend.linear_forward(hidden, weight2, bias2), labels
        )

    hidden_pre = backend.linear_forward(x, weight1, bias1)
    hidden = backend.relu_forward(hidden_pre)
    dlogits = backend.softmax_cross_entropy_backward(
        backend.linear_forward(hidden, weight2, bias2), labels
    )
    dweight2, dbias2, dhidden = backend.linear_backward(dlogits, hidden, weight2)
    dweight1, dbias1, dx = backend.linear_backward(
        backend.relu_backward(dhidden, hidden_pre), x, weight1
    )
    assert np.all(np.abs(hidden_pre) > 1e-3), "a unit sits on the ReLU kink: pick another seed"
    for analytic, array in (
        (dweight1, weight1),
        (dbias1, bias1),
        (dweight2, weight2),
        (dbias2, bias2),
        (dx, x),
    ):
        np.testing.assert_allclose(analytic, numerical_gradient(loss, array), atol=ATOL, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("p", [0.0, 0.5])
def test_dropout_backward(backend, rng, p):
    """With (p, seed, step) fixed the mask is fixed: dropout is linear, and its backward
    is the derivative of its forward."""
    x = rng.standard_normal((B, C))
    dout = rng.standard_normal((B, C))

    def weighted_output():
        return float(np.sum(backend.dropout_forward(x, p, 17, 3) * dout))

    expected = numerical_gradient(weighted_output, x)
    actual = backend.dropout_backward(dout, p, 17, 3)
    np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=0)
