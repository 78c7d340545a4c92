"""Dropout: the kernels against their twin (exact masks, not just close values), the mask
rule written out by hand, the scaling, p = 0, and the share of units kept."""

import numpy as np
import pytest

import fcnn._core as core
from fcnn import reference

BACKENDS = [pytest.param(core, id="core"), pytest.param(reference, id="reference")]
DTYPES = (np.float32, np.float64)


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
