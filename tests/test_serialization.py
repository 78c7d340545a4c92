"""fcnn.serialization: round trips, the format as NumPy sees it, bad files, interrupted saves."""

import hashlib
import io
import json
import os
import pathlib
import struct
import sys
import time
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest

from fcnn import serialization
from fcnn.functional import CrossEntropyLoss, Layer, Linear, ReLU, Softmax
from fcnn.nn import Module
from fcnn.optim import SGD, ExponentialScheduler
from fcnn.serialization import META_KEY, load, load_checkpoint, restore_optimizer, save


def trained_net(dtype=np.float32, seed=0, steps=3):
    """A small net after a few SGD steps (so weights and step count are not the initial ones)."""
    net = Module(
        Linear(12, 9, dtype=dtype, rng=seed),
        ReLU(),
        Linear(9, 4, dtype=dtype, rng=seed + 1),
        Softmax(),
    )
    optimizer = SGD(net, lr=0.3, lr_scheduler=ExponentialScheduler, decay=1e-4)
    criterion = CrossEntropyLoss(net)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        images = rng.standard_normal((8, 12)).astype(dtype)
        labels = rng.integers(0, 4, 8)
        criterion(net(images), labels).backward()
        optimizer.step()
    return net, optimizer


def probe_batch(dtype):
    return np.random.default_rng(99).standard_normal((5, 12)).astype(dtype)


def layer_list(net):
    return [
        (
            type(layer).__name__,
            getattr(layer, "num_inputs", None),
            getattr(layer, "num_outputs", None),
        )
        for layer in net.layers
    ]


def read_archive(path):
    """Every array and the parsed JSON, with NumPy and json alone."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(arrays.pop(META_KEY).tobytes().decode("utf-8"))
    return arrays, meta


def write_archive(path, arrays, meta):
    """Writes an .npz the way save does, but with whatever arrays and JSON the test wants."""
    entries = dict(arrays)
    entries[META_KEY] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    with open(path, "wb") as file:
        np.savez(file, **entries)


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_keeps_predictions_dtype_layers_optimizer_and_metadata(tmp_path, dtype):
    net, optimizer = trained_net(dtype)
    metadata = {
        "history": {"loss": [2.5, 1.25], "accuracy": [np.float32(0.5), 0.75]},
        "hyperparameters": {"lr": 0.3, "hidden_size": 9, "sizes": (12, 9, 4)},
        "note": "héllo",
    }
    path = tmp_path / "model.npz"
    assert save(net, path, optimizer=optimizer, metadata=metadata) == path

    checkpoint = load_checkpoint(path)
    restored = checkpoint.net
    assert restored is not net
    assert restored.dtype == dtype
    assert all(array.dtype == dtype for array in restored.parameters())
    assert layer_list(restored) == layer_list(net)
    x = probe_batch(dtype)
    assert np.array_equal(restored(x), net(x))  # bitwise: same weights, same kernels
    for (name, saved), (_, loaded) in zip(
        net.named_parameters(), restored.named_parameters(), strict=True
    ):
        assert np.array_equal(saved, loaded), name
    assert checkpoint.optimizer_state == optimizer.state_dict()
    assert checkpoint.optimizer_state["step_count"] == 3
    assert checkpoint.metadata == {
        "history": {"loss": [2.5, 1.25], "accuracy": [0.5, 0.75]},
        "hyperparameters": {"lr": 0.3, "hidden_size": 9, "sizes": [12, 9, 4]},
        "note": "héllo",
    }
    assert np.array_equal(load(path)(x), net(x))


def test_restore_optimizer_continues_at_the_saved_step(tmp_path):
    net, optimizer = trained_net()
    save(net, tmp_path / "model.npz", optimizer=optimizer)
    checkpoint = load_checkpoint(tmp_path / "model.npz")
    resumed = SGD(checkpoint.net, lr=0.3, lr_scheduler=ExponentialScheduler, decay=0.0)
    restore_optimizer(resumed, checkpoint)
    assert resumed.step_count == 3
    assert resumed.weight_decay == 1e-4
    assert resumed.lr == optimizer.lr

    with pytest.raises(ValueError, match="another net"):
        restore_optimizer(SGD(trained_net()[0], lr=0.3), checkpoint)
    save(net, tmp_path / "bare.npz")
    with pytest.raises(ValueError, match="no optimizer state"):
        restore_optimizer(resumed, load_checkpoint(tmp_path / "bare.npz"))


def test_net_without_optimizer_or_metadata(tmp_path):
    net, _ = trained_net()
    save(net, tmp_path / "model.npz")
    checkpoint = load_checkpoint(tmp_path / "model.npz")
    assert checkpoint.optimizer_state is None
    assert checkpoint.metadata == {}


def test_path_is_used_exactly_as_given(tmp_path):
    net, _ = trained_net()
    for name in ["model", "model.bin", "model.npz"]:
        returned = save(net, str(tmp_path / name))
        assert returned == tmp_path / name
        assert returned.is_file()
        assert np.array_equal(
            load(str(tmp_path / name))(probe_batch(np.float32)), net(probe_batch(np.float32))
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "model.bin", "model.npz"]


def test_overwriting_replaces_the_old_model(tmp_path):
    path = tmp_path / "model.npz"
    save(trained_net(seed=0)[0], path)
    new_net, _ = trained_net(seed=5)
    save(new_net, path)
    x = probe_batch(np.float32)
    assert np.array_equal(load(path)(x), new_net(x))
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_new_file_gets_ordinary_permissions_not_the_temp_files_0600(tmp_path):
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    save(trained_net()[0], tmp_path / "model.npz")
    assert (os.stat(tmp_path / "model.npz").st_mode & 0o777) == (os.stat(plain).st_mode & 0o777)


# ---------------------------------------------------------------------------- the format


def test_numpy_alone_reads_the_file_and_its_json(tmp_path):
    net, optimizer = trained_net(np.float64)
    path = tmp_path / "model.npz"
    save(net, path, optimizer=optimizer, metadata={"epochs": 2})

    with np.load(path, allow_pickle=False) as archive:
        assert set(archive.files) == {
            META_KEY,
            "layers.0.weight",
            "layers.0.bias",
            "layers.2.weight",
            "layers.2.bias",
        }
        raw = archive[META_KEY]
    assert raw.dtype == np.uint8 and raw.ndim == 1
    arrays, meta = read_archive(path)
    assert meta["format"] == "fcnn-model"
    assert meta["version"] == 1
    assert meta["dtype"] == "float64"
    assert meta["layers"] == [
        {"type": "Linear", "num_inputs": 12, "num_outputs": 9},
        {"type": "ReLU"},
        {"type": "Linear", "num_inputs": 9, "num_outputs": 4},
        {"type": "Softmax"},
    ]
    assert meta["optimizer"] == optimizer.state_dict()
    assert meta["metadata"] == {"epochs": 2}
    for name, array in net.state_dict().items():
        assert arrays[name].dtype == np.float64
        assert np.array_equal(arrays[name], array)

    # The checksum recipe of the module docstring, written out independently.
    digest = hashlib.sha256()
    for name in sorted(arrays):
        header = json.dumps([name, arrays[name].dtype.str, list(arrays[name].shape)])
        digest.update(header.encode("utf-8") + b"\n" + arrays[name].tobytes())
    assert meta["sha256"] == digest.hexdigest()


# ---------------------------------------------------------------------------- bad files


@pytest.fixture
def saved(tmp_path):
    """A valid model file and the net it holds."""
    net, optimizer = trained_net()
    path = tmp_path / "model.npz"
    save(net, path, optimizer=optimizer, metadata={"epochs": 1})
    return path, net


def assert_rejected(path, match):
    with pytest.raises(ValueError, match=match) as info:
        load(path)
    assert str(path) in str(info.value)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "absent.npz")


def test_truncated_file(saved):
    path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_rejected(path, "not a NumPy .npz archive")


@pytest.mark.parametrize(
    "content",
    [b"", np.random.default_rng(0).bytes(4096), b"PK\x03\x04" + bytes(100)],
    ids=["empty", "random-bytes", "zip-magic-then-zeros"],
)
def test_not_an_npz(tmp_path, content):
    path = tmp_path / "model.npz"
    path.write_bytes(content)
    assert_rejected(path, "not a NumPy .npz archive")


def test_single_npy_array(tmp_path):
    path = tmp_path / "model.npy"
    np.save(path, np.zeros(3))
    assert_rejected(path, "single .npy array")


def test_foreign_npz_without_meta(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.ones((3, 3)))
    assert_rejected(path, "no '__fcnn_meta__' entry")


def test_byte_flipped_inside_a_weight_on_disk(saved):
    path, net = saved
    data = bytearray(path.read_bytes())
    weight_bytes = net.layers[0].weight.tobytes()
    start = data.find(weight_bytes)
    assert start > 0
    data[start + len(weight_bytes) // 2] ^= 0x40
    path.write_bytes(bytes(data))
    assert_rejected(path, "cannot be read")  # the zip's own CRC catches it


def test_tampered_weight_with_the_old_meta(saved):
    path, _ = saved
    arrays, meta = read_archive(path)
    arrays["layers.2.weight"] = arrays["layers.2.weight"].copy()
    arrays["layers.2.weight"][3, 1] += 1e-3
    write_archive(path, arrays, meta)
    assert_rejected(path, "sha256")


def change_meta(key, value):
    def edit(arrays, meta):
        meta[key] = value

    return edit


def drop_array(name):
    def edit(arrays, meta):
        del arrays[name]

    return edit


def add_array(arrays, meta):
    arrays["layers.1.weight"] = np.zeros((9, 9), np.float32)


def widen_layer(arrays, meta):
    meta["layers"][2]["num_outputs"] = 5


def change_dtype(arrays, meta):
    for name in arrays:
        arrays[name] = arrays[name].astype(np.float64)


def fortran_weight(arrays, meta):
    arrays["layers.0.weight"] = np.asfortranarray(arrays["layers.0.weight"])


@pytest.mark.parametrize(
    "edit, match",
    [
        (change_meta("format", "something-else"), "format 'something-else'"),
        (change_meta("version", serialization.FORMAT_VERSION + 1), "newer fcnn"),
        (change_meta("version", "1"), "version must be a positive integer"),
        (
            change_meta("dtype", "float64"),
            "layers.0.weight is float32, but the file says dtype float64",
        ),
        (change_meta("dtype", "int8"), "dtype must be one of"),
        (change_meta("layers", [{"type": "Conv2d"}]), "layers\\[0\\] must be one of"),
        (change_meta("layers", [{"type": ["Linear"]}]), "layers\\[0\\] must be one of"),
        (change_meta("layers", [{"type": {"a": 1}}]), "layers\\[0\\] must be one of"),
        (change_meta("metadata", [1, 2]), "'metadata' must be a JSON dict"),
        (change_meta("sha256", None), "'sha256' must be a JSON str"),
        (drop_array("layers.2.bias"), "missing \\['layers.2.bias'\\]"),
        (add_array, "unexpected \\['layers.1.weight'\\]"),
        (widen_layer, "layers.2.weight has shape \\(9, 4\\), but its layer needs \\(9, 5\\)"),
        (change_dtype, "is float64, but the file says dtype float32"),
    ],
    ids=[
        "format",
        "newer-version",
        "string-version",
        "dtype-mismatch",
        "unknown-dtype",
        "unknown-layer",
        "layer-type-list",
        "layer-type-dict",
        "metadata-not-dict",
        "no-checksum",
        "missing-array",
        "extra-array",
        "shape-mismatch",
        "arrays-in-other-dtype",
    ],
)
def test_inconsistent_archive(saved, edit, match):
    path, _ = saved
    arrays, meta = read_archive(path)
    edit(arrays, meta)
    write_archive(path, arrays, meta)
    assert_rejected(path, match)


def test_fortran_order_arrays_still_load(saved):
    # Same values, other memory order: the checksum is over C-order bytes, so this is fine.
    path, net = saved
    arrays, meta = read_archive(path)
    fortran_weight(arrays, meta)
    write_archive(path, arrays, meta)
    x = probe_batch(np.float32)
    assert np.array_equal(load(path)(x), net(x))


def test_meta_that_is_not_json(saved):
    path, _ = saved
    arrays, _ = read_archive(path)
    arrays[META_KEY] = np.frombuffer(b"{not json", np.uint8)
    with open(path, "wb") as file:
        np.savez(file, **arrays)
    assert_rejected(path, "not UTF-8 JSON")


# ---------------------------------------------------------------------------- interrupted saves


def fail_replace(monkeypatch):
    def replace(source, target):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(serialization.os, "replace", replace)


def fail_midway_through_arrays(monkeypatch):
    def savez(file, **arrays):
        file.write(b"PK\x03\x04 half an archive")
        raise OSError("simulated disk full")

    monkeypatch.setattr(serialization.np, "savez", savez)


def interrupt_midway(monkeypatch):
    def savez(file, **arrays):
        file.write(b"PK\x03\x04")
        raise KeyboardInterrupt

    monkeypatch.setattr(serialization.np, "savez", savez)


@pytest.mark.parametrize(
    "sabotage, error",
    [
        (fail_replace, OSError),
        (fail_midway_through_arrays, OSError),
        (interrupt_midway, KeyboardInterrupt),
    ],
    ids=["replace-fails", "write-fails", "ctrl-c"],
)
def test_interrupted_save_keeps_the_old_file_and_leaves_no_temp_file(
    tmp_path, monkeypatch, sabotage, error
):
    path = tmp_path / "model.npz"
    old_net, _ = trained_net(seed=0)
    save(old_net, path)
    new_net, _ = trained_net(seed=7)

    sabotage(monkeypatch)
    with pytest.raises(error):
        save(new_net, path)
    monkeypatch.undo()

    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]
    restored = load(path)
    for (name, old), (_, loaded) in zip(
        old_net.named_parameters(), restored.named_parameters(), strict=True
    ):
        assert np.array_equal(old, loaded), name


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    fail_replace(monkeypatch)
    with pytest.raises(OSError):
        save(trained_net()[0], tmp_path / "model.npz")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- what cannot be saved


class Tanh(Layer):
    def forward(self, x):
        return np.tanh(x)


class ScaledLinear(Linear):
    def forward(self, x):
        return 2 * super().forward(x)


class LoggingModule(Module):
    def forward(self, x):
        return super().forward(x) * 1


@pytest.mark.parametrize(
    "make_net, match",
    [
        (lambda: Module(Linear(3, 2), Tanh()), "net.layers\\[1\\] is a Tanh"),
        (lambda: Module(ScaledLinear(3, 2), Softmax()), "net.layers\\[0\\] is a ScaledLinear"),
        (lambda: LoggingModule(Linear(3, 2)), "LoggingModule overrides forward"),
        (lambda: [Linear(3, 2)], "net must be an fcnn.nn.Module"),
        (
            lambda: Module(Linear(3, 2, dtype=np.float64), Linear(2, 2, dtype=np.float32)),
            "layers.1.weight is float32 while layers.0.weight is float64",
        ),
    ],
    ids=["foreign-layer", "linear-subclass", "custom-forward", "not-a-module", "mixed-dtypes"],
)
def test_unsupported_net_raises_type_error_and_writes_nothing(tmp_path, make_net, match):
    with pytest.raises(TypeError, match=match):
        save(make_net(), tmp_path / "model.npz")
    assert list(tmp_path.iterdir()) == []


def test_subclass_that_only_sets_layers_is_saved(tmp_path):
    class Net(Module):  # the original project's way of building a net
        def __init__(self):
            super().__init__(Linear(3, 2, rng=0), Softmax())

    save(Net(), tmp_path / "model.npz")
    assert layer_list(load(tmp_path / "model.npz")) == [("Linear", 3, 2), ("Softmax", None, None)]


def test_linear_with_replaced_weight_of_wrong_shape(tmp_path):
    net = Module(Linear(3, 2))
    net.layers[0].weight = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="net.layers\\[0\\].weight must have shape \\(3, 2\\)"):
        save(net, tmp_path / "model.npz")


@pytest.mark.parametrize(
    "metadata, match",
    [
        ({"callback": print}, "metadata\\['callback'\\] is a builtin_function_or_method"),
        (
            {"history": {"loss": [1.0, np.ones(2)]}},
            "metadata\\['history'\\]\\['loss'\\]\\[1\\] is a ndarray.*tolist",
        ),
        (
            {"history": {"loss": [float("nan")]}},
            "metadata\\['history'\\]\\['loss'\\]\\[0\\] is nan",
        ),
        ({"by_epoch": {1: 0.5}}, "metadata\\['by_epoch'\\] has the key 1 of type int"),
        ([("epochs", 3)], "metadata must be a dict"),
    ],
    ids=["function", "array", "nan", "int-key", "not-a-dict"],
)
def test_metadata_that_is_not_json_raises_type_error(tmp_path, metadata, match):
    with pytest.raises(TypeError, match=match):
        save(trained_net()[0], tmp_path / "model.npz", metadata=metadata)
    assert list(tmp_path.iterdir()) == []


def test_self_containing_metadata(tmp_path):
    loop = []
    loop.append(loop)
    with pytest.raises(TypeError, match="contains itself"):
        save(trained_net()[0], tmp_path / "model.npz", metadata={"loop": loop})


def test_optimizer_of_another_net(tmp_path):
    net, _ = trained_net()
    _, other_optimizer = trained_net(seed=3)
    with pytest.raises(ValueError, match="trains another net"):
        save(net, tmp_path / "model.npz", optimizer=other_optimizer)


def test_resume_with_momentum_continues_exactly(tmp_path):
    """Saved velocities and schedule: 3 + 3 steps after a reload equal 6 steps in one go."""
    from fcnn.dataloader import DataLoader

    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (6 * 16, 12), dtype=np.uint8), rng.integers(0, 3, 96)
    batches = list(DataLoader((images, labels), batch_size=16, shuffle=False))

    def steps(net, optimizer, part):
        criterion = CrossEntropyLoss(net)
        for x, y in part:
            criterion(net(x), y).backward()
            optimizer.step()

    def fresh():
        net = Module(Linear(12, 8, rng=0), ReLU(), Linear(8, 3, rng=1), Softmax())
        return net, SGD(
            net,
            lr_scheduler=ExponentialScheduler(0.1, stage_length=2),
            decay=1e-3,
            momentum=0.9,
            nesterov=True,
        )

    straight_net, straight_optimizer = fresh()
    steps(straight_net, straight_optimizer, batches)
    net, optimizer = fresh()
    steps(net, optimizer, batches[:3])
    save(net, tmp_path / "half.npz", optimizer=optimizer)
    checkpoint = load_checkpoint(tmp_path / "half.npz")
    assert sorted(checkpoint.velocities) == sorted(optimizer.velocities)
    resumed = SGD(checkpoint.net, lr=0.5)  # settings come back from the checkpoint
    restore_optimizer(resumed, checkpoint)
    assert resumed.step_count == 3 and resumed.momentum == 0.9 and resumed.nesterov
    steps(checkpoint.net, resumed, batches[3:])
    for (name, value), (_, expected) in zip(
        checkpoint.net.named_parameters(), straight_net.named_parameters(), strict=True
    ):
        np.testing.assert_array_equal(value, expected, err_msg=name)


# ---------------------------------------------------------------------------- hostile files
# Each is refused with a ValueError naming the file, before any large allocation, and
# without running anything (no pickle is ever loaded).


def npy_bytes(array, header_shape=None):
    """``array`` as .npy bytes; ``header_shape`` makes the header lie about the shape."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=True)
    data = buffer.getvalue()
    if header_shape is not None:
        header = {
            "descr": np.lib.format.dtype_to_descr(array.dtype),
            "fortran_order": False,
            "shape": header_shape,
        }
        head = io.BytesIO()
        np.lib.format.write_array_header_1_0(head, header)
        data = head.getvalue() + data[len(data) - array.nbytes :]
    return data


def write_members(path, members, compression=zipfile.ZIP_STORED):
    """A zip of ``name -> bytes`` members, in order (duplicates allowed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "w", compression) as archive:
            for name, data in members:
                archive.writestr(name, data)


def saved_members(path):
    """The members of a saved model as (name, bytes), and its JSON."""
    with zipfile.ZipFile(path) as archive:
        members = [(name, archive.read(name)) for name in archive.namelist()]
    return members, read_archive(path)[1]


class Touch:
    """Pickled, it is a call to Path.touch: loading the pickle would create the file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_pickled_object_arrays_are_refused_unexecuted(saved, tmp_path):
    path, _ = saved
    marker = tmp_path / "pickle-ran"
    arrays, meta = read_archive(path)
    evil = np.empty(arrays["layers.0.weight"].shape, object)
    evil[...] = Touch(marker)
    arrays["layers.0.weight"] = evil
    with open(path, "wb") as file:
        np.savez(file, **arrays, **{META_KEY: np.frombuffer(json.dumps(meta).encode(), np.uint8)})
    assert_rejected(path, "layers.0.weight is object, but the file says dtype float32")
    assert not marker.exists()
    # The JSON entry as a pickled object, too.
    with open(path, "wb") as file:
        np.savez(file, **{META_KEY: np.array([Touch(marker)], object)})
    assert_rejected(path, f"{META_KEY!r} must be 1-D uint8")
    assert not marker.exists()


@pytest.mark.parametrize(
    "rename, match",
    [
        (lambda name: name[:-4], "is not named <array>.npy"),
        (lambda name: "../" + name, "is not named <array>.npy"),
        (lambda name: "sub/" + name, "is not named <array>.npy"),
        (lambda name: name.replace(".npy", "\0.npy"), "is not named <array>.npy"),
        (lambda name: name.replace("layers", "Layers"), "missing"),
    ],
    ids=["no-suffix", "dot-dot", "folder", "nul", "upper-case"],
)
def test_member_name_tricks(saved, rename, match):
    path, _ = saved
    members, _ = saved_members(path)
    members = [
        (rename(name) if name.startswith("layers.0.weight") else name, data)
        for name, data in members
    ]
    write_members(path, members)
    assert_rejected(path, match)


def test_member_twice_under_one_name(saved):
    """Two readers could pick different copies: refused rather than guessed."""
    path, _ = saved
    members, _ = saved_members(path)
    weight = next(data for name, data in members if name == "layers.0.weight.npy")
    write_members(path, members + [("layers.0.weight.npy", weight)])
    assert_rejected(path, "'layers.0.weight.npy' appears twice")


def test_compressed_archive_is_refused(saved):
    path, _ = saved
    members, _ = saved_members(path)
    write_members(path, members, zipfile.ZIP_DEFLATED)
    assert_rejected(path, "is compressed")


def test_zip_bomb_is_refused_in_bounded_time_and_memory(saved):
    """64 MiB of zeros deflate to 64 KiB: refused from the zip directory alone."""
    path, _ = saved
    members, meta = saved_members(path)
    meta["layers"][0]["num_inputs"] = 2**24
    bomb = npy_bytes(np.zeros(1, np.float32), header_shape=(2**24, 9)) + bytes(2**26)
    members = [(name, bomb if name == "layers.0.weight.npy" else data) for name, data in members]
    write_members(path, members, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 2**20
    tracemalloc.start()
    started = time.perf_counter()
    try:
        assert_rejected(path, "is compressed")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 1.0
    assert peak < 2**20


def test_member_claiming_more_than_the_file_holds(saved):
    path, _ = saved
    data = bytearray(path.read_bytes())
    # Patch the uncompressed and compressed sizes of the first central directory entry.
    at = data.find(b"PK\x01\x02")
    data[at + 20 : at + 28] = struct.pack("<II", 2**31, 2**31)
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=str(path).replace("\\", "\\\\")):
        load(path)


@pytest.mark.parametrize(
    "convert, match",
    [
        (lambda a: a.astype(">f4"), ">f4, but the file says dtype float32"),
        (lambda a: a.astype(np.int32), "int32, but the file says dtype float32"),
        (lambda a: a.astype(np.float16), "float16, but the file says dtype float32"),
        (lambda a: a.astype(np.complex64), "complex64, but the file says dtype float32"),
        (lambda a: a[:, :4], r"shape \(12, 4\), but its layer needs \(12, 9\)"),
        (lambda a: a.reshape(-1), r"shape \(108,\), but its layer needs \(12, 9\)"),
        (lambda a: a[np.newaxis], r"shape \(1, 12, 9\), but its layer needs \(12, 9\)"),
    ],
    ids=["big-endian", "int32", "float16", "complex", "narrower", "flat", "3-d"],
)
def test_wrong_dtypes_and_shapes(saved, convert, match):
    path, _ = saved
    arrays, meta = read_archive(path)
    arrays["layers.0.weight"] = convert(arrays["layers.0.weight"])
    write_archive(path, arrays, meta)
    assert_rejected(path, match)


def test_header_that_lies_about_the_shape(saved):
    """A header promising a 2 GiB weight over 432 real bytes: refused, nothing allocated."""
    path, _ = saved
    members, meta = saved_members(path)
    meta["layers"][0]["num_inputs"] = 2**27
    weight = read_archive(path)[0]["layers.0.weight"]
    members = [
        (
            name,
            npy_bytes(weight, header_shape=(2**27, 9))
            if name.startswith("layers.0.weight")
            else data,
        )
        for name, data in members
        if name != f"{META_KEY}.npy"
    ]
    members.append(
        (f"{META_KEY}.npy", npy_bytes(np.frombuffer(json.dumps(meta).encode(), np.uint8)))
    )
    write_members(path, members)
    tracemalloc.start()
    try:
        assert_rejected(path, "it holds 432 bytes of data, its header says 4831838208")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20  # an np.empty of 4.5 GiB would show here


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", ["layers.0.weight", "layers.2.bias"])
def test_non_finite_weights_refused_even_with_a_recomputed_checksum(saved, value, name):
    path, _ = saved
    arrays, meta = read_archive(path)
    arrays[name] = arrays[name].copy()
    arrays[name].flat[1] = value
    meta["sha256"] = serialization._checksum({key: array for key, array in arrays.items()})
    write_archive(path, arrays, meta)
    assert_rejected(path, f"{name} holds NaN or infinite values")


def test_save_refuses_non_finite_weights(tmp_path):
    net, _ = trained_net()
    net.layers[2].bias[0] = np.nan
    with pytest.raises(ValueError, match="layers.2.bias holds NaN"):
        save(net, tmp_path / "model.npz")
    assert list(tmp_path.iterdir()) == []


def raw_meta(path, text):
    arrays, _ = read_archive(path)
    arrays[META_KEY] = np.frombuffer(text.encode(), np.uint8)
    with open(path, "wb") as file:
        np.savez(file, **arrays)


def test_deeply_nested_metadata(saved):
    path, _ = saved
    _, meta = read_archive(path)
    text = json.dumps(meta)
    raw_meta(path, text[:-1] + ', "deep": ' + "[" * 200_000 + "]" * 200_000 + "}")
    started = time.perf_counter()
    assert_rejected(path, "is not UTF-8 JSON")
    assert time.perf_counter() - started < 2.0


def test_json_constants_nan_and_infinity_are_refused(saved):
    path, _ = saved
    _, meta = read_archive(path)
    raw_meta(path, json.dumps(meta)[:-1] + ', "x": NaN}')
    assert_rejected(path, "NaN is not valid JSON")


def test_huge_metadata(saved, monkeypatch):
    path, _ = saved
    monkeypatch.setattr(serialization, "MAX_META_BYTES", 1000)
    _, meta = read_archive(path)
    raw_meta(path, json.dumps({**meta, "metadata": {"pad": "x" * 2000}}))
    assert_rejected(path, "must be 1-D uint8 of at most 1000 bytes")  # from its .npy header
    raw_meta(path, json.dumps({**meta, "metadata": {"pad": "x" * 10_000}}))
    assert_rejected(path, "entry has .* bytes; fcnn writes at most 1000")  # from the zip's
    net, _ = trained_net()
    with pytest.raises(ValueError, match="at most 1000"):
        save(net, path, metadata={"pad": "x" * 2000})


def test_meta_header_claiming_gigabytes(saved):
    path, _ = saved
    members, _ = saved_members(path)
    members = [
        (
            name,
            npy_bytes(np.zeros(16, np.uint8), header_shape=(2**31,))
            if name == f"{META_KEY}.npy"
            else data,
        )
        for name, data in members
    ]
    write_members(path, members)
    assert_rejected(path, "must be 1-D uint8 of at most")


def test_velocity_names_that_are_not_strings(saved):
    path, _ = saved
    arrays, meta = read_archive(path)
    meta["optimizer"] = {"velocities": [{"a": 1}]}
    write_archive(path, arrays, meta)
    assert_rejected(path, "velocities name no parameter")


def test_layers_that_do_not_chain(saved, tmp_path):
    path, _ = saved
    arrays, meta = read_archive(path)
    meta["layers"][2]["num_inputs"] = 5
    arrays["layers.2.weight"] = np.zeros((5, 4), np.float32)
    meta["sha256"] = serialization._checksum(arrays)
    write_archive(path, arrays, meta)
    assert_rejected(path, r"layers\[2\] takes 5 inputs, but the layer before it gives 9")
    broken = Module(Linear(3, 4), ReLU(), Linear(5, 2))
    with pytest.raises(ValueError, match=r"net.layers\[2\] takes 5 inputs"):
        save(broken, tmp_path / "broken.npz")


def test_meta_without_optimizer_field_reads_as_none(saved):
    """Found by tests/fuzz/fuzz_load.py: a missing 'optimizer' raised KeyError."""
    path, net = saved
    arrays, meta = read_archive(path)
    del meta["optimizer"]
    for name in [name for name in arrays if name.startswith("optimizer.")]:
        del arrays[name]
    meta["sha256"] = serialization._checksum(arrays)
    write_archive(path, arrays, meta)
    checkpoint = load_checkpoint(path)
    assert checkpoint.optimizer_state is None
