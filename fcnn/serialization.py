"""Saving and loading trained nets: one ``.npz`` file that NumPy alone can read, written atomically.

The file is an ordinary NumPy ``.npz`` archive with no pickled objects in it:

- one array per parameter, under its :meth:`fcnn.nn.Module.state_dict` name
  (``layers.0.weight``, ``layers.0.bias``, ...), little-endian, C order;
- ``__fcnn_meta__``: a 1-D ``uint8`` array holding a UTF-8 JSON document::

    {"format": "fcnn-model", "version": 1, "dtype": "float32",
     "layers": [{"type": "Linear", "num_inputs": 784, "num_outputs": 1024},
                {"type": "ReLU"},
                {"type": "Linear", "num_inputs": 1024, "num_outputs": 10},
                {"type": "Softmax"}],
     "optimizer": <SGD.state_dict() or null>,
     "metadata": <the user's dict: history, hyperparameters, ...>,
     "sha256": "<hex digest of the parameter arrays>"}

Each layer is ``{"type": <class name>, <hyper-parameter>: <JSON value>, ...}``: the
layer class's ``hyperparams`` (see :class:`fcnn.functional.Layer`), any JSON type,
and its parameters are the arrays ``layers.<i>.<name>`` for the names of its
``params``. Version 1 knows Linear, ReLU and Softmax; version 2 adds every other
layer of :data:`fcnn.functional.LAYERS` (Sigmoid, Tanh, ...). A file is written with
the lowest version that holds its layers, so nets of version 1 layers stay readable
by fcnn 0.1.

Without fcnn::

    with np.load("model.npz", allow_pickle=False) as archive:
        meta = json.loads(archive["__fcnn_meta__"].tobytes().decode("utf-8"))
        weight = archive["layers.0.weight"]

``sha256`` is taken over the parameter arrays in sorted name order; for each,
the UTF-8 bytes of ``json.dumps([name, array.dtype.str, list(array.shape)])``,
a newline, then ``array.tobytes()`` (C order). It detects damaged or altered
weights; it is a checksum, not a signature: whoever can edit the file can
recompute it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ._checks import check_int
from ._io import write_atomically
from .functional import LAYERS, Layer
from .nn import Module

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "META_KEY",
    "Checkpoint",
    "load",
    "load_checkpoint",
    "restore_optimizer",
    "save",
]

#: The ``format`` field of every fcnn model file.
FORMAT = "fcnn-model"
#: The newest format version this module writes and reads.
FORMAT_VERSION = 2
#: The archive entry holding the JSON document.
META_KEY = "__fcnn_meta__"
#: The most bytes of JSON (layers, optimizer state, metadata) a model file may hold:
#: a file claiming more is refused before it is read, and :func:`save` refuses to write one.
MAX_META_BYTES = 16 * 2**20
# Arrays named this + a parameter's name hold the optimiser's velocity for it.
_VELOCITY_PREFIX = "optimizer.velocity."

PathLike = str | os.PathLike

_DTYPES = ("float32", "float64")
# The layer types of format version 1 (fcnn 0.1), whose records are the same in version 2.
_VERSION_1_LAYERS = frozenset({"Linear", "ReLU", "Softmax"})


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns: the net and what resuming its training needs.

    Attributes
    ----------
    net
        the rebuilt network.
    optimizer_state
        the saved ``optimizer.state_dict()``, or ``None``.
    metadata
        the user's dict given to :func:`save` (``{}`` if none).
    velocities
        the optimiser's momentum buffers by parameter name
        (``optimizer.velocities``), ``{}`` when there were none.
    """

    net: Module
    optimizer_state: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    velocities: dict[str, np.ndarray] = field(default_factory=dict)


# ---------------------------------------------------------------------------- saving


def save(
    net: Module, path: PathLike, optimizer: Any = None, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Writes ``net`` (and optionally its optimiser's state and a metadata dict) to ``path``.

    The file is written at exactly ``path``: unlike ``np.savez``, no ``.npz`` is
    appended, so ``save(net, "model")`` writes ``model``. It is written to a
    temporary file beside ``path`` and moved onto it only once complete, so an
    error or a crash midway leaves any previous file at ``path`` untouched.

    Parameters
    ----------
    net
        a :class:`~fcnn.nn.Module` (or a subclass that does not override
        ``forward``) made of the layers of :data:`fcnn.functional.LAYERS` (Linear,
        ReLU, Sigmoid, Tanh, Softmax and any registered there), all parameters of
        one dtype (float32 or float64).
    path
        the file to write; its folder must exist.
    optimizer
        an optimiser of ``net`` (e.g. :class:`~fcnn.optim.SGD`) whose
        ``state_dict()`` is stored for resuming training, or ``None``.
    metadata
        a JSON-serialisable dict (training history, hyperparameters...).
        Keys must be strings; NumPy scalars are stored as Python numbers,
        tuples as lists; NaN and infinity are refused (JSON has no such values).

    Returns
    -------
    pathlib.Path
        ``path`` as a :class:`~pathlib.Path`.

    Raises
    ------
    TypeError
        ``net`` is not a Module, holds a layer not in
        :data:`fcnn.functional.LAYERS`, or mixes dtypes; ``metadata``, a layer's
        hyper-parameters or the optimiser's state is not JSON-serialisable (the
        message names the offending key).
    ValueError
        a layer's arrays do not match its hyper-parameters, or
        ``optimizer`` trains another net.
    OSError
        the file cannot be written (the previous file, if any, is kept).

    Examples
    --------
    >>> fcnn.save(net, "mnist.npz", optimizer=optimizer,
    ...           metadata={"epochs": 10, "history": {"loss": losses}})
    PosixPath('mnist.npz')
    """
    path = Path(path)
    arrays, layers, dtype = _describe(net)
    optimizer_state = None
    if optimizer is not None:
        if getattr(optimizer, "net", net) is not net:
            raise ValueError("optimizer must be the optimiser of net, but it trains another net")
        if not callable(getattr(optimizer, "state_dict", None)):
            raise TypeError(
                f"optimizer must have a state_dict() method, got {type(optimizer).__name__}"
            )
        optimizer_state = _to_json(optimizer.state_dict(), "optimizer.state_dict()")
        if not isinstance(optimizer_state, dict):
            raise TypeError(
                f"optimizer.state_dict() must return a dict, got {type(optimizer_state).__name__}"
            )
        # Momentum buffers are arrays: stored beside the parameters, listed in the JSON.
        velocities = getattr(optimizer, "velocities", None) or {}
        for name, velocity in sorted(velocities.items()):
            if name not in arrays or np.shape(velocity) != arrays[name].shape:
                raise ValueError(f"optimizer.velocities[{name!r}] matches no parameter of net")
            arrays[_VELOCITY_PREFIX + name] = np.asarray(velocity, arrays[name].dtype)
        if velocities:
            optimizer_state["velocities"] = sorted(velocities)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    old_enough = all(layer["type"] in _VERSION_1_LAYERS for layer in layers)
    meta = {
        "format": FORMAT,
        "version": 1 if old_enough else FORMAT_VERSION,
        "dtype": dtype,
        "layers": layers,
        "optimizer": optimizer_state,
        "metadata": _to_json(metadata, "metadata"),
        "sha256": _checksum(arrays),
    }
    encoded = json.dumps(meta, ensure_ascii=False, allow_nan=False).encode("utf-8")
    if len(encoded) > MAX_META_BYTES:
        raise ValueError(
            f"metadata and optimizer state take {len(encoded)} bytes of JSON; a "
            f"model file holds at most {MAX_META_BYTES} (fcnn.serialization."
            "MAX_META_BYTES)"
        )
    for name, array in arrays.items():
        if not np.isfinite(array).all():
            raise ValueError(
                f"{name} holds NaN or infinite values: a diverged net is not "
                "saved, since load would refuse it"
            )
    arrays[META_KEY] = np.frombuffer(encoded, dtype=np.uint8)
    _write_archive(path, arrays)
    return path


def _describe(net: Module) -> tuple[dict[str, np.ndarray], list[dict[str, Any]], str]:
    """The arrays to store, the JSON layer list and the dtype name, after checking ``net``."""
    if not isinstance(net, Module):
        raise TypeError(f"net must be an fcnn.nn.Module, got {type(net).__name__}")
    if type(net).forward is not Module.forward or type(net).__call__ is not Module.__call__:
        # Only the layer list is stored: a custom forward would silently be lost.
        raise TypeError(
            f"{type(net).__name__} overrides forward; only plain layer stacks can be saved"
        )
    layers = []
    width = None  # the output width of the last layer that sets one
    for index, layer in enumerate(net.layers):
        cls = type(layer)
        if LAYERS.get(cls.__name__) is not cls:
            raise TypeError(
                f"net.layers[{index}] is a {cls.__name__}; only {', '.join(LAYERS)} layers "
                "can be saved (fcnn.functional.register_layer adds a layer class)"
            )
        config = _to_json(layer.config(), f"net.layers[{index}].config()")
        try:
            shapes = cls.param_shapes(config)
        except (TypeError, ValueError) as error:
            raise type(error)(f"net.layers[{index}]: {error}") from None
        layers.append({"type": cls.__name__, **config})
        width = _chain(config, width, f"net.layers[{index}]", ": the net cannot run")
        for name, shape in shapes.items():
            array = getattr(layer, name)
            if not isinstance(array, np.ndarray) or array.shape != shape:
                got = array.shape if isinstance(array, np.ndarray) else type(array).__name__
                raise ValueError(
                    f"net.layers[{index}].{name} must have shape {shape} for {layer!r}, got {got}"
                )
    params = dict(net.named_parameters())
    dtype = np.dtype(net.dtype)
    if dtype.name not in _DTYPES:
        raise TypeError(f"parameters must be float32 or float64, got {dtype}")
    for name, array in params.items():
        if array.dtype != dtype:
            raise TypeError(
                f"every parameter must have one dtype: {name} is {array.dtype} while "
                f"{next(iter(params))} is {dtype}"
            )
    # Little-endian and C order, so the file and its checksum are the same on every machine.
    little = dtype.newbyteorder("<")
    arrays = {name: np.ascontiguousarray(array, dtype=little) for name, array in params.items()}
    return arrays, layers, dtype.name


def _to_json(value: Any, where: str, _open: frozenset[int] = frozenset()) -> Any:
    """``value`` as plain JSON types, or a TypeError naming where the unserialisable part is."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        value = value.item()
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{where} is {value}, which JSON cannot hold; use None instead")
        return float(value)
    if isinstance(value, (Mapping, list, tuple)):
        if id(value) in _open:
            raise TypeError(f"{where} contains itself")
        inner = _open | {id(value)}
        if isinstance(value, Mapping):
            converted = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise TypeError(
                        f"{where} has the key {key!r} of type {type(key).__name__}; "
                        "JSON keys must be strings"
                    )
                converted[key] = _to_json(item, f"{where}[{key!r}]", inner)
            return converted
        return [_to_json(item, f"{where}[{i}]", inner) for i, item in enumerate(value)]
    hint = "; store array.tolist()" if isinstance(value, np.ndarray) else ""
    raise TypeError(f"{where} is a {type(value).__name__}, which is not JSON-serialisable{hint}")


def _checksum(arrays: Mapping[str, np.ndarray]) -> str:
    """The format's sha256 over names, dtypes, shapes and bytes (see the module docstring)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = arrays[name]
        header = json.dumps([name, array.dtype.str, list(array.shape)])
        digest.update(header.encode("utf-8") + b"\n")
        digest.update(array.tobytes())
    return digest.hexdigest()


def _write_archive(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Writes the archive atomically (see :func:`fcnn._io.write_atomically`)."""
    # A file object, not a name: np.savez would append ".npz" to a name.
    write_atomically(path, lambda file: np.savez(file, **arrays))


# ---------------------------------------------------------------------------- loading


def load(path: PathLike) -> Module:
    """Reads a net written by :func:`save`.

    Parameters
    ----------
    path
        the file, exactly as given to :func:`save` (no suffix is added).

    Returns
    -------
    fcnn.nn.Module
        A new net with the saved layers, dtype and parameters.

    Raises
    ------
    FileNotFoundError
        there is no file at ``path``.
    ValueError
        the file is not an fcnn model, is damaged or truncated, was
        written by a newer fcnn, or its arrays do not match its layer list,
        dtype or checksum; the message names the file and the problem.

    Examples
    --------
    >>> net = fcnn.load("mnist.npz")
    >>> predictions = net(test_images).argmax(axis=1)
    """
    return load_checkpoint(path).net


def load_checkpoint(path: PathLike) -> Checkpoint:
    """Reads a net written by :func:`save` together with its optimiser state and metadata.

    Parameters
    ----------
    path
        the file, exactly as given to :func:`save`.

    Returns
    -------
    Checkpoint
        ``net``, ``optimizer_state``, ``metadata`` and ``velocities``.

    Raises
    ------
    FileNotFoundError
        there is no file at ``path``.
    ValueError
        as for :func:`load`.

    Examples
    --------
    >>> checkpoint = fcnn.serialization.load_checkpoint("mnist.npz")
    >>> optimizer = SGD(checkpoint.net, lr=0.5, weight_decay=1e-5)
    >>> restore_optimizer(optimizer, checkpoint)
    >>> history = checkpoint.metadata["history"]
    """
    path = Path(path)
    # A missing file raises FileNotFoundError here, as it should.
    with open(path, "rb") as file:
        archive, members = _open_archive(path, file)
        with archive:
            meta = _read_meta(path, archive, members)
            expected = _expected_arrays(path, meta["layers"], np.dtype(meta["dtype"]))
            velocity_names = (meta["optimizer"] or {}).get("velocities", [])
            if (
                not isinstance(velocity_names, list)
                or not all(isinstance(name, str) for name in velocity_names)
                or not set(velocity_names) <= expected.keys()
            ):
                raise _bad(path, "its optimizer velocities name no parameter of its layer list")
            for name in velocity_names:
                expected[_VELOCITY_PREFIX + name] = expected[name]
            present = set(members) - {META_KEY}
            missing = sorted(expected.keys() - present)
            unexpected = sorted(present - expected.keys())
            if missing or unexpected:
                raise _bad(
                    path,
                    f"its arrays do not match its layer list: missing {missing!s:.200}, "
                    f"unexpected {unexpected!s:.200}",
                )
            arrays = {
                name: _read_array(path, archive, members[name], name, shape, dtype, meta["dtype"])
                for name, (shape, dtype) in expected.items()
            }
    if _checksum(arrays) != meta["sha256"]:
        raise _bad(
            path,
            "its parameters do not match their sha256 checksum: the file was "
            "damaged or its arrays altered",
        )
    for name, array in arrays.items():
        # Checked after the checksum, which whoever edits the file can recompute: NaN or
        # infinite weights make every prediction meaningless (argmax of NaN is class 0).
        if not np.isfinite(array).all():
            raise _bad(path, f"{name} holds NaN or infinite values")
    velocities = {
        name[len(_VELOCITY_PREFIX) :]: arrays.pop(name)
        for name in list(arrays)
        if name.startswith(_VELOCITY_PREFIX)
    }
    net = Module(
        [
            _build_layer(path, index, spec, meta["dtype"])
            for index, spec in enumerate(meta["layers"])
        ]
    )
    net.load_state_dict(arrays)
    return Checkpoint(
        net=net,
        optimizer_state=meta["optimizer"],
        metadata=meta["metadata"],
        velocities={
            name: np.ascontiguousarray(value, net.dtype) for name, value in velocities.items()
        },
    )


def _build_layer(path: Path, index: int, spec: Mapping[str, Any], dtype: str) -> Layer:
    """A fresh layer from its (already checked) JSON description."""
    config = {name: value for name, value in spec.items() if name != "type"}
    try:
        return LAYERS[spec["type"]].from_config(config, dtype)
    except (TypeError, ValueError) as error:
        raise _bad(path, f"layers[{index}] ({spec['type']}) cannot be built: {error}") from None


def _chain(config: Mapping[str, Any], width: int | None, where: str, why: str) -> int | None:
    """The width after a layer of ``config``, given the width before it (None: not known);
    a ValueError naming the layer (``where``) when the two do not match.

    A layer that changes the width (Linear) says so by its ``num_inputs`` and
    ``num_outputs`` hyper-parameters; the others keep it.
    """
    if "num_inputs" not in config or "num_outputs" not in config:
        return width
    if width is not None and config["num_inputs"] != width:
        raise ValueError(
            f"{where} takes {config['num_inputs']} inputs, but the layer before it "
            f"gives {width}{why}"
        )
    return config["num_outputs"]


def _bad(path: Path, problem: str) -> ValueError:
    return ValueError(f"{str(path)!r} is not a readable fcnn model file: {problem}")


# What a damaged or hostile archive makes zipfile, NumPy's header parser or json raise,
# besides ValueError and OSError (a BadZipFile is neither, nor an unsupported zip feature).
_PARSE_ERRORS = (
    ValueError,
    OSError,
    EOFError,
    zipfile.BadZipFile,
    struct.error,
    OverflowError,
    NotImplementedError,
    RuntimeError,
    SyntaxError,
    tokenize.TokenError,
    RecursionError,
    KeyError,
    IndexError,
    TypeError,
    zlib.error,
)
# Every member of a model file is "<name>.npy"; names are parameter names or META_KEY.
_MEMBER_NAME = re.compile(r"[A-Za-z0-9_.]{1,200}\.npy")
_NPY_MAGIC = b"\x93NUMPY"


def _open_archive(path: Path, file: BinaryIO) -> tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo]]:
    """The zip archive in ``file`` and its members by array name, checked before any is read.

    Refused: anything but a zip; member names other than ``<name>.npy``, or twice the same
    name (two readers could see two different arrays); encrypted or compressed members
    (fcnn.save and np.savez store arrays as they are, so a compressed member can only be
    a zip bomb in the making); sizes the file cannot hold.
    """
    head = file.read(len(_NPY_MAGIC))
    if head == _NPY_MAGIC:
        raise _bad(path, "it is a single .npy array, not an .npz archive")
    file_size = os.fstat(file.fileno()).st_size
    file.seek(0)
    try:
        archive = zipfile.ZipFile(file)
        infos = archive.infolist()
    except _PARSE_ERRORS as error:
        raise _bad(path, f"it is not a NumPy .npz archive ({_describe_error(error)})") from None
    members: dict[str, zipfile.ZipInfo] = {}
    try:
        for info in infos:
            name = info.filename
            if not _MEMBER_NAME.fullmatch(name):
                raise _bad(path, f"its member {name[:80]!r} is not named <array>.npy")
            key = name[: -len(".npy")]
            if key in members:
                raise _bad(path, f"its member {name!r} appears twice")
            if info.flag_bits & 0x1:
                raise _bad(path, f"its member {name!r} is encrypted")
            if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
                raise _bad(
                    path,
                    f"its member {name!r} is compressed; fcnn model files store "
                    "arrays uncompressed (write them with fcnn.save or np.savez)",
                )
            if info.file_size > file_size:
                raise _bad(
                    path,
                    f"its member {name!r} claims {info.file_size} bytes, more "
                    f"than the whole file's {file_size}",
                )
            members[key] = info
    except BaseException:
        archive.close()
        raise
    return archive, members


def _describe_error(error: BaseException) -> str:
    """``error`` for a message: its text, or its type when it has none; never huge."""
    text = str(error) or type(error).__name__
    return text if len(text) <= 200 else text[:200] + "..."


def _member_header(
    path: Path, name: str, stream: BinaryIO
) -> tuple[tuple[int, ...], bool, np.dtype]:
    """The shape, Fortran order flag and dtype from the .npy header at the start of ``stream``."""
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(stream)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(stream)
        raise ValueError(f"unknown .npy format version {version}")
    except _PARSE_ERRORS as error:
        raise _bad(path, f"its entry {name!r} cannot be read ({_describe_error(error)})") from None


def _read_array(
    path: Path,
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    name: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    dtype_name: str,
) -> np.ndarray:
    """One member as a C-contiguous array of exactly ``shape`` and ``dtype``.

    The header is checked against what the layer list calls for before anything is
    allocated, so the memory used is what the file really holds and the caller expects.
    A dtype other than ``dtype`` (object arrays, which would need pickle, included) is
    refused, never converted.
    """
    try:
        stream = archive.open(info)
    except _PARSE_ERRORS as error:
        raise _bad(path, f"its entry {name!r} cannot be read ({_describe_error(error)})") from None
    with stream:
        found_shape, fortran_order, found_dtype = _member_header(path, name, stream)
        if found_dtype != dtype:
            raise _bad(path, f"{name} is {found_dtype}, but the file says dtype {dtype_name}")
        if found_shape != shape:
            raise _bad(path, f"{name} has shape {found_shape}, but its layer needs {shape}")
        nbytes = math.prod(shape) * dtype.itemsize
        stored = info.file_size - stream.tell()
        if stored != nbytes:
            raise _bad(
                path,
                f"its entry {name!r} cannot be read (it holds {stored} bytes of "
                f"data, its header says {nbytes})",
            )
        array = np.empty(shape[::-1] if fortran_order else shape, dtype)
        view = memoryview(array).cast("B")
        try:
            filled = 0
            while filled < len(view):
                count = stream.readinto(view[filled:])
                if not count:
                    break
                filled += count
            # Reading to the end makes zipfile check the member's CRC-32.
            extra = stream.read(1)
        except _PARSE_ERRORS as error:
            raise _bad(
                path, f"its entry {name!r} cannot be read ({_describe_error(error)})"
            ) from None
        finally:
            view.release()
        if filled < array.nbytes or extra:
            raise _bad(
                path,
                f"its entry {name!r} cannot be read (it holds "
                f"{'more' if extra else 'fewer'} bytes than its header says)",
            )
    return np.ascontiguousarray(array.T) if fortran_order else array


def _read_meta(
    path: Path, archive: zipfile.ZipFile, members: Mapping[str, zipfile.ZipInfo]
) -> dict[str, Any]:
    """The JSON document, checked field by field."""
    if META_KEY not in members:
        raise _bad(path, f"it has no {META_KEY!r} entry (an .npz written by something else)")
    info = members[META_KEY]
    if info.file_size > MAX_META_BYTES + 4096:
        raise _bad(
            path,
            f"its {META_KEY!r} entry has {info.file_size} bytes; fcnn writes at "
            f"most {MAX_META_BYTES} bytes of JSON",
        )
    try:
        stream = archive.open(info)
    except _PARSE_ERRORS as error:
        raise _bad(
            path, f"its entry {META_KEY!r} cannot be read ({_describe_error(error)})"
        ) from None
    with stream:
        shape, _, dtype = _member_header(path, META_KEY, stream)
    if dtype != np.uint8 or len(shape) != 1 or shape[0] > MAX_META_BYTES:
        raise _bad(
            path,
            f"{META_KEY!r} must be 1-D uint8 of at most {MAX_META_BYTES} bytes, "
            f"got {dtype} of shape {shape}",
        )
    raw = _read_array(path, archive, info, META_KEY, shape, np.dtype(np.uint8), "uint8")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:
        raise _bad(path, f"{META_KEY!r} is not UTF-8 JSON ({_describe_error(error)})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise _bad(path, f"its {META_KEY!r} says format {found!r}, not {FORMAT!r}")
    version = meta.get("version")
    try:
        check_int(version, "version", minimum=1)
    except (TypeError, ValueError):
        raise _bad(
            path, f"its format version must be a positive integer, got {version!r}"
        ) from None
    if version > FORMAT_VERSION:
        raise _bad(
            path,
            f"it has format version {version}, written by a newer fcnn; this one "
            f"reads up to version {FORMAT_VERSION}: upgrade fcnn",
        )
    wanted = {"dtype": str, "layers": list, "metadata": dict, "sha256": str}
    for key, kind in wanted.items():
        if not isinstance(meta.get(key), kind):
            raise _bad(
                path, f"its {key!r} must be a JSON {kind.__name__}, got {meta.get(key)!r:.80}"
            )
    if meta["dtype"] not in _DTYPES:
        raise _bad(path, f"its dtype must be one of {list(_DTYPES)}, got {meta['dtype']!r}")
    if not isinstance(meta.get("optimizer"), (dict, type(None))):
        raise _bad(
            path, f"its 'optimizer' must be an object or null, got {meta.get('optimizer')!r:.80}"
        )
    meta.setdefault("optimizer", None)  # absent reads as null (no optimizer saved)
    return meta


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _expected_arrays(
    path: Path, layers: list[Any], dtype: np.dtype
) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``name -> (shape, dtype)`` of every parameter the layer list calls for."""
    little = dtype.newbyteorder("<")
    expected = {}
    width = None  # the output width of the last layer that sets one
    for index, spec in enumerate(layers):
        kind = spec.get("type") if isinstance(spec, dict) else None
        cls = LAYERS.get(kind) if isinstance(kind, str) else None
        if cls is None:
            raise _bad(
                path,
                f"layers[{index}] must be one of "
                f"{[{'type': name} for name in LAYERS]}, got {spec!r:.80}",
            )
        fields = cls.hyperparams
        if set(spec) != {"type", *fields}:
            raise _bad(
                path,
                f"layers[{index}] ({spec['type']}) must have exactly the fields "
                f"{['type', *fields]}, got {sorted(spec)}",
            )
        config = {name: spec[name] for name in fields}
        try:
            shapes = cls.param_shapes(config)
        except (TypeError, ValueError) as error:
            raise _bad(path, f"layers[{index}] ({spec['type']}): {error}") from None
        try:
            width = _chain(config, width, f"layers[{index}]", "")
        except ValueError as error:
            raise _bad(path, str(error)) from None
        for name, shape in shapes.items():
            expected[f"layers.{index}.{name}"] = (shape, little)
    return expected


# ---------------------------------------------------------------------------- resuming


def restore_optimizer(optimizer: Any, checkpoint: Checkpoint) -> None:
    """Loads the optimiser state saved in ``checkpoint`` into ``optimizer``.

    Build the optimiser on ``checkpoint.net`` first. :meth:`fcnn.optim.SGD.load_state_dict`
    restores the step count, weight decay, momentum settings and the saved
    exponential or constant schedule; the momentum velocities are restored from
    the checkpoint's arrays, so training continues exactly where it stopped.

    Parameters
    ----------
    optimizer
        an optimiser of ``checkpoint.net`` with ``load_state_dict``.
    checkpoint
        what :func:`load_checkpoint` returned.

    Raises
    ------
    ValueError
        the checkpoint holds no optimiser state, ``optimizer`` trains
        another net, or the state belongs to another kind of optimiser.

    Examples
    --------
    >>> checkpoint = load_checkpoint("mnist.npz")
    >>> optimizer = SGD(checkpoint.net, lr=0.5, weight_decay=1e-5)
    >>> restore_optimizer(optimizer, checkpoint)   # continues at the saved step
    """
    state = checkpoint.optimizer_state
    if state is None:
        raise ValueError(
            "the checkpoint holds no optimizer state (save was called without optimizer=)"
        )
    if getattr(optimizer, "net", checkpoint.net) is not checkpoint.net:
        raise ValueError("optimizer must be built on checkpoint.net, but it trains another net")
    own_name = optimizer.state_dict().get("name") if hasattr(optimizer, "state_dict") else None
    if own_name is not None and state.get("name") != own_name:
        raise ValueError(
            f"the checkpoint holds the state of a {state.get('name')!r} optimizer, "
            f"not of a {own_name!r} one"
        )
    optimizer.load_state_dict(state)
    if checkpoint.velocities and hasattr(optimizer, "velocities"):
        optimizer.velocities = {name: value.copy() for name, value in checkpoint.velocities.items()}
