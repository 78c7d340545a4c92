"""Memory and reference leaks of the _core bindings, each called many times on small arrays.

The fast tier calls each binding 1,000 times and watches NumPy's allocations with
tracemalloc (NumPy reports its data buffers to it) besides the reference counts;
the slow tier calls it 100,000 times and watches the resident memory, which also
shows memory that C code allocates directly.

In both, every tenth call takes arguments that fail validation after the binding has
already converted some of them (a strided input copied, labels cast to int64),
so the error paths must release what the success path releases. Memory may not
grow after a warm-up beyond a small allowance, and no argument, dtype or ``None``
may gain or lose references.
"""

import gc
import os
import sys
import tracemalloc

import numpy as np
import pytest

import fcnn._core as core
from fcnn.reference import KERNELS

WARM_UP_CALLS = 2_000
FAILING_EVERY = 10
# 100,000 calls leaking even one 8x4 float32 result each would add 12 MiB.
RSS_LIMIT = 4 * 2**20
# 1,000 calls leaking one 8x4 float32 result each would add about 250 KiB of traced memory.
TRACED_LIMIT = 64 * 2**10
STATM = "/proc/self/statm"


def resident_bytes():
    with open(STATM) as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def strided(array):
    """The values of ``array`` as every other column of a wider array: the binding must copy it."""
    wide = np.zeros(array.shape[:-1] + (2 * array.shape[-1],), array.dtype)
    wide[..., ::2] = array
    return wide[..., ::2]


def arguments(kernel):
    """(valid arguments, arguments that fail after a conversion) of one kernel."""
    rng = np.random.default_rng(0)
    B, C, OC = 8, 16, 4

    def floats(*shape):
        return rng.standard_normal(shape)

    x, weight, bias, dout = strided(floats(B, C)), floats(C, OC), floats(OC), strided(floats(B, OC))
    # A longer batch for the loss, so that a leaked int64 copy of the labels shows.
    logits = floats(96, OC)
    labels = rng.integers(0, OC, 96).astype(np.int32)
    bad_labels = labels.copy()
    bad_labels[-1] = OC
    param = floats(C, OC)
    return {
        "linear_forward": ([x, weight, bias], [x, weight, floats(OC + 1)]),
        "linear_backward": ([dout, x, weight, False], [dout, x, floats(C + 1, OC)]),
        "relu_forward": ([x], [[1.0, -1.0]]),
        "relu_backward": ([x, x.T.copy().T], [x, floats(B, C + 1)]),
        "sigmoid_forward": ([x], [x[0]]),
        "sigmoid_backward": ([x, x.T.copy().T], [x, floats(B + 1, C)]),
        "tanh_forward": ([x], [[1.0, -1.0]]),
        "tanh_backward": ([x, x.T.copy().T], [x, floats(B, C + 1)]),
        "softmax_forward": ([x], [x[0]]),
        "softmax_backward": ([x, x.T.copy().T], [x, floats(B + 1, C)]),
        "dropout_forward": ([x, 0.5, 2**64 - 1, 3], [x, 0.5, 2**64, 3]),
        "dropout_backward": ([x, 0.25, 7, 2**40], [x, 1.0, 7, 3]),
        "softmax_cross_entropy_forward": ([logits, labels], [logits, bad_labels]),
        "softmax_cross_entropy_backward": ([logits, labels], [logits, bad_labels]),
        "sgd_step": (
            [param, strided(floats(C, OC)), 1e-7, 1e-4, 0.9, floats(C, OC), True],
            [param, strided(floats(C, OC)), 1e-7, 1e-4, 0.9, floats(C, OC + 1)],
        ),
        "exponential_lr": ([0.1, 1234, 500, 0.5, False], [0.1, 1234, 0]),
    }[kernel]


def run(function, valid, failing, calls):
    for call in range(calls):
        if call % FAILING_EVERY == 0:
            try:
                function(*failing)
            except (TypeError, ValueError):
                pass
            else:
                raise AssertionError("the failing arguments did not fail")
        else:
            function(*valid)


@pytest.mark.parametrize(
    "calls",
    [
        pytest.param(1_000, id="1k-tracemalloc"),
        pytest.param(
            100_000,
            id="100k-rss",
            marks=[
                pytest.mark.slow,
                pytest.mark.skipif(not os.path.exists(STATM), reason="needs /proc/self/statm"),
            ],
        ),
    ],
)
@pytest.mark.parametrize("kernel", KERNELS)
def test_binding_does_not_leak(kernel, calls):
    function = getattr(core, kernel)
    valid, failing = arguments(kernel)
    watched = [
        *valid,
        *failing,
        None,
        np.dtype(np.float32),
        np.dtype(np.float64),
        np.dtype(np.int64),
    ]

    # A fresh result is referenced by the caller alone, its items by the tuple alone
    # (getrefcount adds one for its argument). Counted outside the asserts, whose
    # rewriting by pytest keeps references of its own.
    result = function(*valid)
    result_references = None if result is None else sys.getrefcount(result)
    items = result if isinstance(result, tuple) else ()
    item_references = [sys.getrefcount(items[i]) for i in range(len(items)) if items[i] is not None]
    del result, items
    assert result_references in (None, 2), f"{kernel}: result over-referenced"
    assert all(count == 2 for count in item_references), f"{kernel}: {item_references}"
    run(function, valid, failing, WARM_UP_CALLS)
    gc.collect()
    # What the rest of the suite left on the heap is not this test's: frozen, the two
    # collections below walk only what the calls create.
    gc.freeze()
    traced = calls < 10_000
    references_before = [sys.getrefcount(item) for item in watched]
    if traced:
        tracemalloc.start()
        memory_before = tracemalloc.get_traced_memory()[0]
    else:
        memory_before = resident_bytes()

    try:
        run(function, valid, failing, calls)
        gc.collect()
        memory_after = tracemalloc.get_traced_memory()[0] if traced else resident_bytes()
    finally:
        tracemalloc.stop()
        gc.unfreeze()
    references_after = [sys.getrefcount(item) for item in watched]

    growth = memory_after - memory_before
    limit, what = (TRACED_LIMIT, "traced") if traced else (RSS_LIMIT, "resident")
    assert growth < limit, (
        f"{kernel}: {what} memory grew by {growth / 2**10:.0f} KiB over {calls} calls"
    )
    for item, before, after in zip(watched, references_before, references_after, strict=True):
        # A reference leaked (or stolen) per call would show as a change of ~calls.
        assert abs(after - before) < calls // 100, (
            f"{kernel}: references to {type(item).__name__} went from {before} to {after}"
        )
