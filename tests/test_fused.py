"""The fused C epoch: against its NumPy twin and the Module API path, sparse against dense,
threads, reproducibility, divergence, Ctrl-C, and bad input."""

import os
import signal

import numpy as np
import pytest
import scipy_openblas32
import threadpoolctl
from synthetic import assert_matches_twin, assert_same_training, fused_epoch, parameters

import fcnn
from fcnn import _core, reference
from fcnn.dataloader import DataLoader
from fcnn.functional import Linear, ReLU, Softmax
from fcnn.nn import Module
from fcnn.optim import SGD, ExponentialScheduler
from fcnn.training import DivergenceError, fused_eligible, train

CLASSES = 7


def digits_like(n=300, features=60, density=0.2, seed=0):
    """uint8 images with the given share of non-zero pixels, like MNIST's ~19%."""
    rng = np.random.default_rng(seed)
    images = rng.integers(1, 256, (n, features)).astype(np.uint8)
    images[rng.random((n, features)) >= density] = 0
    return images, rng.integers(0, CLASSES, n)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("hidden", [(20,), (70, 13), (130,)])
@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
@pytest.mark.parametrize("sparse_threshold", [0.0, 1.0])
def test_fused_epoch_matches_twin(dtype, rtol, hidden, momentum, nesterov, sparse_threshold):
    images, labels = digits_like()
    sizes = [images.shape[1], *hidden, CLASSES]
    result = fused_epoch(
        _core,
        images,
        labels,
        sizes,
        dtype,
        momentum=momentum,
        nesterov=nesterov,
        sparse_threshold=sparse_threshold,
    )
    twin_result = fused_epoch(
        reference, images, labels, sizes, dtype, momentum=momentum, nesterov=nesterov
    )
    assert_matches_twin(result, twin_result, 10, dtype, rtol)


@pytest.mark.parametrize("density", [0.05, 0.2, 0.6, 1.0])
def test_sparse_and_dense_first_layer_agree(density):
    # 0.0 sends uint8 batches through the BLAS layer kernels: the same sums in another order.
    images, labels = digits_like(density=density)
    sizes = [images.shape[1], 64, CLASSES]
    _, sparse = fused_epoch(_core, images, labels, sizes, np.float64, sparse_threshold=1.0)
    _, dense = fused_epoch(_core, images, labels, sizes, np.float64, sparse_threshold=0.0)
    for a, b in zip(sparse, dense, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 5e-4)])
@pytest.mark.parametrize("density", [0.02, 0.2, 0.6, 1.0])
def test_first_layer_paths_give_the_same_bits(dtype, momentum, weight_decay, density):
    # The panel kernels, sparse or dense, sum in one order: the cost model's choice per batch
    # cannot change a result, whatever its timings (1e-9: every batch dense; None: chosen).
    images, labels = digits_like(n=230, features=70, density=density)
    sizes = [images.shape[1], 90, CLASSES]
    results = [
        fused_epoch(
            _core,
            images,
            labels,
            sizes,
            dtype,
            momentum=momentum,
            nesterov=momentum > 0,
            weight_decay=weight_decay,
            sparse_threshold=threshold,
        )
        for threshold in (1.0, 1e-9, None)
    ]
    for outcome, params in results[1:]:
        assert outcome == results[0][0]
        for a, b in zip(params, results[0][1], strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("batch_size", [7, 8, 9, 10, 11, 12])
@pytest.mark.parametrize("features", [61, 64, 65])
def test_dense_tiles_of_every_remainder_match_sparse_and_twin(batch_size, features):
    # The dense kernels tile 6 batch rows (forward) or 6 inputs (gradient) at a time, and the
    # last 1 to 5 get a tile of their own size: each must sum as the sparse path and the twin.
    images, labels = digits_like(n=3 * batch_size + 5, features=features, density=0.9)
    sizes = [features, 70, CLASSES]
    settings = dict(batch_size=batch_size, momentum=0.9, weight_decay=5e-4)
    dense = fused_epoch(_core, images, labels, sizes, np.float64, sparse_threshold=1e-9, **settings)
    sparse = fused_epoch(_core, images, labels, sizes, np.float64, sparse_threshold=1.0, **settings)
    twin = fused_epoch(reference, images, labels, sizes, np.float64, **settings)
    assert dense[0] == sparse[0]
    for a, b in zip(dense[1], sparse[1], strict=True):
        np.testing.assert_array_equal(a, b)
    assert_matches_twin(dense, twin, -(-len(labels) // batch_size), np.float64, 1e-10)


@pytest.mark.parametrize("batch_size", [600, 700])
def test_large_batches_gathered_one_at_a_time_match_twin(batch_size):
    # The next batch is gathered during this one's update into a second slot, unless a slot
    # would pass 4 MB: 600 x 784 float64 inputs take two slots, 700 x 784 one.
    images, labels = digits_like(n=2 * batch_size + 50, features=784, density=0.3)
    sizes = [784, 12, CLASSES]
    settings = dict(batch_size=batch_size, momentum=0.9, weight_decay=5e-4)
    result = fused_epoch(
        _core, images, labels, sizes, np.float64, sparse_threshold=None, **settings
    )
    twin = fused_epoch(reference, images, labels, sizes, np.float64, **settings)
    assert_matches_twin(result, twin, 3, np.float64, 1e-10)


def test_fused_chunk_shrinks_with_the_work_per_batch():
    # Per-call costs (repacking, the lazy rows' catch-up) want long calls; Ctrl-C wants short
    # ones: the batches per call follow the multiply-adds per batch, never the clock.
    def shaped(*shapes):
        return [np.broadcast_to(np.float32(0), shape) for shape in shapes]

    mnist = shaped((784, 1024), (1024, 10))
    assert fcnn.training.fused_chunk(mnist, 64) == fcnn.training.FUSED_CHUNK == 256
    assert fcnn.training.fused_chunk(mnist, 1024) == 16
    assert fcnn.training.fused_chunk(shaped((784, 4096), (4096, 10)), 256) == 16
    assert fcnn.training.fused_chunk(shaped((100_000, 100_000)), 1) == 1


def test_float_images_are_not_rescaled():
    images, labels = digits_like()
    floats = images / 255.0
    _, from_bytes = fused_epoch(_core, images, labels, [60, 16, CLASSES], np.float64)
    _, from_floats = fused_epoch(_core, floats, labels, [60, 16, CLASSES], np.float64)
    for a, b in zip(from_bytes, from_floats, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def mlp(dtype=np.float64, hidden=(24,), features=60, seed=0):
    sizes = [features, *hidden, CLASSES]
    layers = []
    for index, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(Linear(a, b, dtype=dtype, rng=seed + index))
        layers.append(ReLU() if index < len(sizes) - 2 else Softmax())
    return Module(layers)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_train_fused_equals_module_path_in_float64(momentum):
    images, labels = digits_like(n=500)
    finals = []
    for fused in (True, False):
        net = mlp()
        optimizer = SGD(
            net,
            lr_scheduler=ExponentialScheduler(0.3, stage_length=7),
            decay=1e-4,
            momentum=momentum,
        )
        loader = DataLoader((images, labels), batch_size=40, seed=3, dtype=np.float64)
        history = train(net, optimizer, loader, epochs=2, progress=False, fused=fused)
        finals.append((net.state_dict(), history, optimizer.step_count))
    (fused_state, fused_history, fused_steps), (module_state, module_history, module_steps) = finals
    assert fused_steps == module_steps == 2 * 13
    assert_same_training((fused_state, fused_history), (module_state, module_history))


def test_fused_training_is_bitwise_reproducible():
    images, labels = digits_like(n=400)
    runs = []
    for _ in range(2):
        net = mlp(np.float32, hidden=(200,))
        optimizer = SGD(net, lr=0.1, momentum=0.5)
        train(
            net,
            optimizer,
            DataLoader((images, labels), seed=5),
            epochs=2,
            progress=False,
            fused=True,
        )
        runs.append(net.state_dict())
    for key in runs[0]:
        np.testing.assert_array_equal(runs[0][key], runs[1][key])


def test_sparse_path_does_not_depend_on_thread_count():
    images, labels = digits_like(n=200)
    results = []
    previous = _core.get_num_threads()
    try:
        for threads in (1, 2):
            fcnn.set_num_threads(threads)
            assert _core.get_num_threads() == threads
            results.append(
                fused_epoch(
                    _core, images, labels, [60, 256, CLASSES], np.float32, sparse_threshold=1.0
                )[1]
            )
    finally:
        fcnn.set_num_threads(previous)
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


def fcnn_blas_info():
    """threadpoolctl's entry for fcnn's own OpenBLAS: scipy_openblas32's, not NumPy's 64-bit
    copy nor the one SciPy bundles (loaded once a test imports scikit-learn)."""
    home = os.path.realpath(scipy_openblas32.get_lib_dir())
    blas = [
        info
        for info in threadpoolctl.threadpool_info()
        if os.path.realpath(info["filepath"]).startswith(home + os.sep)
    ]
    assert len(blas) == 1
    return blas[0]


def fcnn_blas_threads():
    """Threads of fcnn's own OpenBLAS."""
    return fcnn_blas_info()["num_threads"]


def test_one_thread_setting_reaches_openmp_and_blas():
    previous = _core.get_num_threads()
    try:
        fcnn.set_num_threads(1)
        assert _core.get_num_threads() == 1
        assert fcnn_blas_threads() == 1
    finally:
        fcnn.set_num_threads(previous)
    libraries = {info["user_api"] for info in threadpoolctl.threadpool_info()}
    assert {"openmp", "blas"} <= libraries


def test_divergence_on_fused_path_names_the_step():
    images, labels = digits_like()
    net = mlp(np.float32)
    optimizer = SGD(net, lr=1e30, lr_scheduler=None)
    with pytest.raises(DivergenceError, match=r"diverged at epoch 1, step \d+: the loss is not"):
        train(
            net,
            optimizer,
            DataLoader((images, labels), seed=0),
            epochs=1,
            progress=False,
            fused=True,
        )
    assert all(np.isfinite(p).all() for p in net.parameters())


def test_ctrl_c_on_fused_path_stops_between_chunks(monkeypatch):
    import fcnn.training

    monkeypatch.setattr(fcnn.training, "FUSED_CHUNK", 2)
    calls = []
    real = _core.train_epoch

    def interrupted_after_first_call(*args):
        calls.append(1)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGINT)
        return real(*args)

    monkeypatch.setattr(fcnn.training._core, "train_epoch", interrupted_after_first_call)
    images, labels = digits_like(n=400)
    net = mlp(np.float32)
    optimizer = SGD(net, lr=0.1)
    history = train(
        net,
        optimizer,
        DataLoader((images, labels), batch_size=32, seed=0),
        epochs=3,
        progress=False,
        fused=True,
    )
    assert history["interrupted"] is True and history["epoch"] == []
    assert optimizer.step_count == 2 and len(calls) == 1


def test_fused_eligibility():
    images, labels = digits_like()
    net = mlp(np.float32)
    loader = DataLoader((images, labels))
    assert fused_eligible(net, SGD(net, lr=0.1), loader) is None
    assert fused_eligible(Module(Linear(60, CLASSES)), SGD(net, lr=0.1), loader) is None
    odd = Module(Linear(60, 10), ReLU())
    assert "not Linear, (ReLU, [Dropout], Linear)*" in fused_eligible(odd, SGD(odd, lr=0.1), loader)
    float64_loader = DataLoader((images / 255.0, labels))
    assert "float64" in fused_eligible(net, SGD(net, lr=0.1), float64_loader)

    class MyLoader(DataLoader):
        def __iter__(self):
            yield from super().__iter__()

    assert "plain fcnn DataLoader" in fused_eligible(
        net, SGD(net, lr=0.1), MyLoader((images, labels))
    )
    fcnn.set_backend("numpy")
    try:
        assert "NumPy backend" in fused_eligible(net, SGD(net, lr=0.1), loader)
    finally:
        fcnn.set_backend("c")
    with pytest.raises(ValueError, match="fused=True, but the fused epoch cannot train this"):
        train(odd, SGD(odd, lr=0.1), loader, epochs=1, progress=False, fused=True)


def bad_cases():
    images, labels = digits_like(n=64)
    weights, biases = parameters([60, 16, CLASSES], np.float32)
    order = np.arange(64)
    lrs = np.full(2, 0.1)

    def call(**changes):
        arguments = dict(
            images=images,
            labels=labels,
            order=order,
            weights=weights,
            biases=biases,
            lrs=lrs,
            batch_size=32,
        )
        arguments.update(changes)
        return arguments

    read_only = weights[0].copy()
    read_only.flags.writeable = False
    return [
        (call(lrs=np.full(3, 0.1)), ValueError, r"^lrs must hold one rate per batch, 2"),
        (call(lrs=np.array([0.1, np.nan])), ValueError, r"^lrs must be finite and >= 0"),
        (call(labels=labels + CLASSES), ValueError, r"^labels must be in \[0, 7\)"),
        (call(order=np.array([0, 64])), ValueError, r"^order must be in \[0, 64\)"),
        (call(order=order[:0]), ValueError, r"^order must be a non-empty 1-D array"),
        (call(weights=[weights[0], weights[0]]), ValueError, r"^weights\[1\] must have shape"),
        (call(weights=weights[0]), TypeError, r"^weights must be a list"),
        (call(biases=biases[:1]), ValueError, r"^biases must hold 2 arrays"),
        (call(weights=[read_only, weights[1]]), TypeError, r"^weights\[0\] must be a writable"),
        (
            call(biases=[biases[0].astype(np.float64), biases[1]]),
            TypeError,
            r"^biases\[0\] must have dtype float32",
        ),
        (call(images=images.astype(np.int16)), TypeError, r"^images must have dtype uint8"),
        (call(images=images[:, :50].copy()), ValueError, r"^images must have shape"),
        (call(batch_size=0), ValueError, r"^batch_size must be an integer >= 1"),
        (call(momentum=0.9), ValueError, r"^weight_velocities and bias_velocities must be"),
        (call(nesterov=True), ValueError, r"^nesterov needs momentum > 0"),
        (call(sparse_threshold=2.0), ValueError, r"^sparse_threshold must be None or in \[0, 1\]"),
        (call(labels=labels[:10]), ValueError, r"^labels must have shape \(64,\)"),
    ]


@pytest.mark.parametrize("arguments, error, pattern", bad_cases())
def test_train_epoch_bad_input(arguments, error, pattern):
    with pytest.raises(error, match=pattern):
        _core.train_epoch(**arguments)
    with pytest.raises((TypeError, ValueError)):
        reference.train_epoch(**arguments)


def test_set_num_threads_rejects_zero():
    with pytest.raises(ValueError, match=r"^num_threads must be an integer >= 1"):
        fcnn.set_num_threads(0)


# ----------------------------------------------------------------------------
# lazy first-layer updates


def mixed_density_images(n=320, features=60, seed=2):
    """Very sparse images (most pixels absent from most batches), with a run of dense ones in
    the middle, so that with the samples in order some batches go dense between sparse ones."""
    images, labels = digits_like(n=n, features=features, density=0.03, seed=seed)
    dense, _ = digits_like(n=n // 4, features=features, density=0.9, seed=seed + 1)
    images[n // 2 : n // 2 + n // 4] = dense
    return images, labels


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
@pytest.mark.parametrize("weight_decay", [0.0, 5e-3])
@pytest.mark.parametrize("sparse_threshold", [1.0, 0.5, None])
def test_lazy_first_layer_matches_eager_twin(momentum, nesterov, weight_decay, sparse_threshold):
    # float64 over a whole epoch with a varying rate per step: the rows caught up in closed
    # form agree with the twin's step-by-step rule to rounding.
    images, labels = mixed_density_images()
    sizes = [images.shape[1], 40, CLASSES]
    (outcome, params), (twin_outcome, twin_params) = [
        fused_epoch(
            backend,
            images,
            labels,
            sizes,
            np.float64,
            batch_size=16,
            momentum=momentum,
            nesterov=nesterov,
            sparse_threshold=sparse_threshold,
            weight_decay=weight_decay,
            order_seed=None,
            lr_range=(0.3, 0.02),
        )
        for backend in (_core, reference)
    ]
    assert outcome[0] == twin_outcome[0] == 20
    assert outcome[1] == pytest.approx(twin_outcome[1], rel=1e-10)
    for value, expected in zip(params, twin_params, strict=True):
        scale = np.abs(expected).max() + 1e-300
        np.testing.assert_allclose(value / scale, expected / scale, rtol=0, atol=1e-10)


def test_lazy_rows_absent_all_call_are_caught_up_at_the_end():
    # Pixels 0-9 are zero in every image: their rows only ever decay, in the final catch-up.
    images, labels = digits_like(n=128, density=0.3)
    images[:, :10] = 0
    sizes = [images.shape[1], 24, CLASSES]
    weights, biases = parameters(sizes, np.float64)
    start = weights[0][:10].copy()
    velocities = ([np.zeros_like(w) for w in weights], [np.zeros_like(b) for b in biases])
    lrs = np.linspace(0.2, 0.1, 4)
    _core.train_epoch(
        images, labels, np.arange(128), weights, biases, lrs, 32, 0.01, 0.5, *velocities, False, 1.0
    )
    np.testing.assert_allclose(weights[0][:10], start * np.prod(1 - 0.01 * lrs), rtol=1e-14)
    assert not velocities[0][0][:10].any()


def test_lazy_path_is_bitwise_reproducible_across_runs():
    images, labels = mixed_density_images()
    runs = [
        fused_epoch(
            _core,
            images,
            labels,
            [60, 130, CLASSES],
            np.float32,
            batch_size=16,
            momentum=0.9,
            nesterov=True,
            sparse_threshold=None,
        )[1]
        for _ in range(2)
    ]
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------
# subnormals


def test_fcnn_calls_leave_the_callers_subnormals_alone():
    tiny = np.float32(1e-38) * np.float32(1e-3)
    assert tiny != 0  # NumPy makes subnormals before...
    images, labels = digits_like()
    fused_epoch(_core, images, labels, [60, 32, CLASSES], np.float32, momentum=0.9)
    x = np.full((4, 3), 1e-39, np.float32)
    _core.linear_forward(x, np.ones((3, 300), np.float32), np.zeros(300, np.float32))
    _core.sgd_step(np.ones(3, np.float32), np.ones(3, np.float32), 0.1)
    assert np.float32(1e-38) * np.float32(1e-3) == tiny  # ...and after fcnn's calls
    assert (np.full(8, 1e-38, np.float32) * np.float32(1e-3) != 0).all()


def test_fcnn_kernels_flush_subnormals():
    # What FTZ/DAZ changes: a subnormal input counts as 0 inside fcnn (the twin keeps it, a
    # difference of 1e-38 absolute at most: below every tolerance of the parity tests).
    x = np.full((2, 3), 1e-39, np.float32)
    out = _core.linear_forward(x, np.ones((3, 2), np.float32), np.zeros(2, np.float32))
    assert (out == 0).all()
    assert (
        reference.linear_forward(x, np.ones((3, 2), np.float32), np.zeros(2, np.float32)) != 0
    ).all()


# ----------------------------------------------------------------------------
# threads


def test_thread_count_is_clamped_for_the_workspace():
    images, labels = digits_like(n=64)
    for threads in (2**32, 2**31 - 1, 300):
        weights, biases = parameters([60, 32, CLASSES], np.float32)
        assert (
            _core.train_epoch(
                images,
                labels,
                np.arange(64),
                weights,
                biases,
                np.full(2, 0.1),
                32,
                num_threads=threads,
            )[0]
            == 2
        )


def test_omp_num_threads_beyond_the_cap_trains(tmp_path):
    import os
    import subprocess
    import sys

    script = (
        "import numpy as np, fcnn\n"
        "from fcnn import _core\n"
        "assert _core.get_num_threads() == 256, _core.get_num_threads()\n"
        "x = np.random.default_rng(0).integers(0, 256, (64, 30)).astype(np.uint8)\n"
        "y = np.arange(64) % 3\n"
        "w = [np.zeros((30, 300), np.float32), np.zeros((300, 3), np.float32)]\n"
        "b = [np.zeros(300, np.float32), np.zeros(3, np.float32)]\n"
        "print(_core.train_epoch(x, y, np.arange(64), w, b, np.full(2, 0.1), 32)[0])\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "100000", "OMP_WAIT_POLICY": "passive"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"


def train_small(seed_offset=0):
    images, labels = digits_like(n=400, density=0.3)
    net = mlp(np.float32, hidden=(200,))
    optimizer = SGD(net, lr=0.1, momentum=0.9, nesterov=True, decay=5e-4)
    train(
        net, optimizer, DataLoader((images, labels), seed=5), epochs=2, progress=False, fused=True
    )
    return net.state_dict()


def test_two_trainings_in_two_threads_match_one_at_a_time():
    import threading

    threads_before = _core.get_num_threads()
    blas_before = fcnn_blas_threads()
    expected = train_small()
    results = [None, None]

    def work(index):
        results[index] = train_small()

    threads = [threading.Thread(target=work, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        for key in expected:
            np.testing.assert_array_equal(result[key], expected[key])
    assert fcnn_blas_threads() == blas_before  # not left at 1 by the overlapping calls
    assert _core.get_num_threads() == threads_before
    assert train_small()["layers.0.weight"].tobytes() == expected["layers.0.weight"].tobytes()


def test_set_num_threads_from_another_thread_takes_effect():
    import threading

    previous = _core.get_num_threads()
    images, labels = digits_like(n=2000, density=0.3)
    stop = threading.Event()
    errors = []

    def flip():
        count = 1
        while not stop.is_set():
            fcnn.set_num_threads(count)
            count = 3 - count

    flipper = threading.Thread(target=flip)
    try:
        flipper.start()
        try:
            for _ in range(3):
                fused_epoch(
                    _core,
                    images,
                    labels,
                    [60, 256, CLASSES],
                    np.float32,
                    momentum=0.9,
                    sparse_threshold=None,
                )
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        stop.set()
        flipper.join()
        assert not errors
        setter = threading.Thread(target=fcnn.set_num_threads, args=(1,))
        setter.start()
        setter.join()
        assert _core.get_num_threads() == 1  # set in another thread, seen in this one
        assert fcnn_blas_threads() == 1
        one = fused_epoch(
            _core, images, labels, [60, 256, CLASSES], np.float32, sparse_threshold=1.0
        )
        fcnn.set_num_threads(2)
        assert _core.get_num_threads() == 2 and fcnn_blas_threads() == 2
        two = fused_epoch(
            _core, images, labels, [60, 256, CLASSES], np.float32, sparse_threshold=1.0
        )
        for a, b in zip(one[1], two[1], strict=True):
            np.testing.assert_array_equal(a, b)
    finally:
        stop.set()
        fcnn.set_num_threads(previous)


def test_list_items_replaced_during_training_stay_alive():
    import gc
    import threading

    images, labels = digits_like(n=3000, density=0.3)
    weights, biases = parameters([60, 256, CLASSES], np.float32)
    weight_list, bias_list = list(weights), list(biases)
    lrs = np.full(-(-3000 // 32), 0.01)
    worker = threading.Thread(
        target=_core.train_epoch,
        args=(images, labels, np.arange(3000), weight_list, bias_list, lrs, 32),
    )
    worker.start()
    del weights, biases
    for index in range(2):  # the caller's only other references go away mid-call
        weight_list[index] = None
        bias_list[index] = None
    gc.collect()
    worker.join()
    assert weight_list == [None, None]
