"""One leak check for bindings the generic loops of test_leaks.py do not cover."""

import gc
import sys
import tracemalloc


def assert_no_leak(run, calls, watched, warm_up=100, max_traced=64 * 2**10, max_references=6):
    """Calls ``run(calls)`` after ``run(warm_up)``: NumPy's traced memory may not grow by
    ``max_traced`` bytes, nor any of ``watched`` gain or lose ``max_references``
    references (a leak per call would show as about ``calls``)."""
    run(warm_up)
    gc.collect()
    before = [sys.getrefcount(item) for item in watched]
    tracemalloc.start()
    try:
        memory_before = tracemalloc.get_traced_memory()[0]
        run(calls)
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - memory_before
    finally:
        tracemalloc.stop()
    after = [sys.getrefcount(item) for item in watched]
    assert growth < max_traced, f"traced memory grew by {growth / 2**10:.0f} KiB"
    for item, count_before, count_after in zip(watched, before, after, strict=True):
        assert abs(count_after - count_before) < max_references, (
            repr(item)[:40],
            count_before,
            count_after,
        )
