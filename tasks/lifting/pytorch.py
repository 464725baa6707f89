"""PyTorch checkpoints read without PyTorch, and VideoPose3D's released models loaded from them.

``torch.save`` writes a Python pickle whose tensors point into raw storages, in one of
two formats:

- zip (the default since torch 1.6): ``<name>/data.pkl`` holds the pickle and
  ``<name>/data/<key>`` the bytes of each storage, little-endian unless
  ``<name>/byteorder`` says ``big``;
- legacy (older torch, or ``_use_new_zipfile_serialization=False``; VideoPose3D's
  released checkpoints): pickles in a row (torch's magic number, the protocol version
  1001, system information, the object, the list of storage keys), then each storage
  as its element count (int64) and its elements, both little-endian.

Unpickling can run any code the file's author chose, so :func:`read_torch_file` refuses
unless the caller trusts the file (``allow_pickle=True``, ``--allow-pickle``). Even then
its unpickler resolves only the globals of :data:`ALLOWED_GLOBALS` (torch's tensor
rebuilders and storage types, ``collections.OrderedDict`` and numpy's array pickles),
each to a stand-in of this module, never to torch's or numpy's own code; any other
global raises :class:`PickleSecurityError` before anything runs. Tensors come back as
``np.ndarray`` (see :data:`STORAGE_DTYPES` for their element types).

:func:`load_videopose3d` turns a checkpoint of VideoPose3D's ``TemporalModel`` (such as
``pretrained_h36m_cpn.bin``) into the plain :class:`~chiral_tasks.lifting.model.TemporalModel`
with the same weights, running statistics and outputs.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import math
import pickle
import re
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO

import jax.numpy as jnp
import numpy as np
from flax import nnx

from chiral_jax.skeletons import Skeleton
from chiral_tasks.lifting.archive import LiftingFormatError, PathLike
from chiral_tasks.lifting.model import TemporalModel
from chiral_tasks.lifting.videopose3d import UntrustedPickleError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
"""The first pickle of a legacy-format file (torch's ``MAGIC_NUMBER``)."""
LEGACY_PROTOCOL = 1001
"""The second pickle of a legacy-format file (torch's ``PROTOCOL_VERSION``)."""

STORAGE_DTYPES: Mapping[str, np.dtype] = MappingProxyType(
    {
        **{
            f"torch.{name}Storage": np.dtype(dtype)
            for name, dtype in (
                ("Float", np.float32),
                ("Double", np.float64),
                ("Half", np.float16),
                ("BFloat16", jnp.bfloat16),
                ("ComplexFloat", np.complex64),
                ("ComplexDouble", np.complex128),
                ("Long", np.int64),
                ("Int", np.int32),
                ("Short", np.int16),
                ("Char", np.int8),
                ("Byte", np.uint8),
                ("Bool", np.bool_),
            )
        },
        "torch.storage.UntypedStorage": np.dtype(np.uint8),
    }
)
"""Torch's storage types (the globals a pickle names) and the element type each loads as."""


class PickleSecurityError(ValueError):
    """A pickle names a global outside :data:`ALLOWED_GLOBALS`; nothing of it has run."""


class StateDictError(ValueError):
    """A state dict is not the one of a VideoPose3D ``TemporalModel`` for the given skeletons."""


class _Corrupt(Exception):
    """Malformed content met while unpickling; the reader adds the file's name."""


# ---------------------------------------------------------------------------------------
# What the restricted unpickler builds: placeholders, made into arrays once storages load.


@dataclasses.dataclass(frozen=True, slots=True)
class _StandIn:
    """An allowed callable global as the unpickler hands it out.

    Immutable and without ``__dict__``, so that a pickle's ``BUILD`` cannot alter it for
    later loads; calling it calls ``fn``.
    """

    fn: Callable[..., Any]

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


@dataclasses.dataclass(frozen=True, slots=True)
class _Marker:
    """A global only ever passed as an argument (a storage type, ``numpy.ndarray``)."""

    name: str
    dtype: np.dtype | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class _Storage:
    """A storage named by a persistent id: its key, element type and element count."""

    key: str
    dtype: np.dtype
    numel: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Tensor:
    """A tensor: ``size`` elements of ``storage`` from ``offset``, ``stride`` apart."""

    storage: _Storage
    offset: Any
    size: Any
    stride: Any


class _DtypeState:
    """``numpy.dtype(spec, align, copy)`` being unpickled; ``BUILD`` brings its byte order."""

    __slots__ = ("spec", "order")

    def __init__(self, spec: Any, align: Any = False, copy: Any = False):
        self.spec = spec
        self.order = "|"

    def __setstate__(self, state: Any) -> None:
        self.order = state[1] if isinstance(state, tuple) and len(state) > 1 else None

    def dtype(self) -> np.dtype:
        """The numeric or boolean dtype described; others (objects, records) are refused."""
        if not (
            isinstance(self.spec, str)
            and re.fullmatch(r"[biufc][0-9]{1,2}", self.spec)
            and self.order in ("<", ">", "|", "=")
        ):
            raise _Corrupt(f"refuses numpy dtype {self.spec!r} (only numbers and booleans load)")
        dtype = np.dtype(self.spec)
        return dtype if self.order in "|=" else dtype.newbyteorder(self.order)


class _ArrayState:
    """A numpy array being unpickled: ``_reconstruct`` makes it, ``BUILD`` brings its data."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def array(self) -> np.ndarray:
        """The array, from numpy's state ``(version, shape, dtype, fortran_order, bytes)``."""
        if not (isinstance(self.state, tuple) and len(self.state) == 5):
            raise _Corrupt("a numpy array without its state")
        _, shape, dtype, fortran, raw = self.state
        if not isinstance(dtype, _DtypeState) or not isinstance(raw, bytes):
            raise _Corrupt("refuses a numpy array of objects (only numbers and booleans load)")
        dtype = dtype.dtype()
        if not _is_index_tuple(shape) or len(raw) != math.prod(shape) * dtype.itemsize:
            raise _Corrupt(f"a numpy array of shape {shape!r} with {len(raw)} bytes")
        flat = np.frombuffer(raw, dtype).astype(dtype.newbyteorder("="))
        return flat.reshape(shape, order="F" if fortran else "C")


def _is_index_tuple(value: Any) -> bool:
    return isinstance(value, tuple) and all(_is_index(v) for v in value)


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *ignored: Any) -> _Tensor:
    """``torch._utils._rebuild_tensor`` and ``_v2`` (whose extra arguments, ``requires_grad``,
    backward hooks and metadata, do not matter here)."""
    if not isinstance(storage, _Storage):
        raise _Corrupt("a tensor rebuilt from something other than a storage")
    return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data: Any, *ignored: Any) -> Any:
    """``torch._utils._rebuild_parameter`` (``_with_state``): a parameter is its data."""
    return data


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> _ArrayState:
    """numpy's ``_reconstruct``; the array's content arrives by ``BUILD``."""
    if subtype is not _NDARRAY:
        raise _Corrupt(f"numpy's _reconstruct of {subtype!r}, not of numpy.ndarray")
    return _ArrayState()


def _scalar(dtype: Any, raw: Any) -> np.generic:
    """numpy's ``multiarray.scalar``: one element of ``dtype`` from its bytes."""
    if not isinstance(dtype, _DtypeState) or not isinstance(raw, bytes):
        raise _Corrupt("refuses a numpy scalar of objects (only numbers and booleans load)")
    dtype = dtype.dtype()
    if len(raw) != dtype.itemsize:
        raise _Corrupt(f"a numpy {dtype} scalar of {len(raw)} bytes")
    return np.frombuffer(raw, dtype)[0]


def _encode(text: Any, encoding: Any) -> bytes:
    """``_codecs.encode(text, 'latin1')``: how pickle protocol 2 stores ``bytes``."""
    if not isinstance(text, str) or encoding != "latin1":
        raise _Corrupt(f"_codecs.encode with encoding {encoding!r}; only 'latin1' is read")
    return text.encode("latin1")


_NDARRAY = _Marker("numpy.ndarray")

ALLOWED_GLOBALS: Mapping[str, object] = MappingProxyType(
    {
        "torch._utils._rebuild_tensor": _StandIn(_rebuild_tensor),
        "torch._utils._rebuild_tensor_v2": _StandIn(_rebuild_tensor),
        "torch._utils._rebuild_parameter": _StandIn(_rebuild_parameter),
        "torch._utils._rebuild_parameter_with_state": _StandIn(_rebuild_parameter),
        **{name: _Marker(name, dtype) for name, dtype in STORAGE_DTYPES.items()},
        "collections.OrderedDict": collections.OrderedDict,
        "_codecs.encode": _StandIn(_encode),
        "numpy.ndarray": _NDARRAY,
        "numpy.dtype": _StandIn(_DtypeState),
        **{
            f"{core}.multiarray.{name}": _StandIn(fn)
            for core in ("numpy.core", "numpy._core")
            for name, fn in (("_reconstruct", _reconstruct), ("scalar", _scalar))
        },
    }
)
"""The globals a PyTorch pickle may name (``module.name``) and their stand-ins here."""


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles to placeholders, allowing only :data:`ALLOWED_GLOBALS`.

    ``storages`` collects every storage the pickle names by persistent id.
    """

    def __init__(self, stream: BinaryIO, source: str):
        super().__init__(stream)
        self.source = source
        self.storages: list[_Storage] = []

    def find_class(self, module: str, name: str) -> object:
        stand_in = ALLOWED_GLOBALS.get(f"{module}.{name}")
        if stand_in is None:
            raise PickleSecurityError(
                f"{self.source}: refuses global '{module}.{name}' (only tensors, numpy "
                "arrays and containers are loaded)"
            )
        return stand_in

    def persistent_load(self, pid: Any) -> _Storage:
        # ('storage', storage type, key, location, numel[, view metadata (always None)])
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise _Corrupt(f"unknown persistent id {str(pid)[:80]}")
        _, kind, key, _, numel, *view = pid
        if view not in ([], [None]):
            raise _Corrupt("storage views (written by torch before 0.4) are not supported")
        if not (isinstance(kind, _Marker) and kind.dtype is not None):
            raise _Corrupt(f"a storage of type {kind!r}")
        if not isinstance(key, str) or not _is_index(numel):
            raise _Corrupt(f"a storage with key {key!r} and size {numel!r}")
        storage = _Storage(key, kind.dtype, numel)
        self.storages.append(storage)
        return storage


def _unpickle(stream: BinaryIO, source: str) -> tuple[Any, list[_Storage]]:
    """The next pickle of ``stream`` (placeholders for tensors) and the storages it names."""
    unpickler = _RestrictedUnpickler(stream, source)
    try:
        return unpickler.load(), unpickler.storages
    except PickleSecurityError:
        raise
    except _Corrupt as err:
        raise LiftingFormatError(f"{source}: corrupt checkpoint: {err}") from err
    except Exception as err:  # a malformed pickle fails in many ways; only our code ran
        raise LiftingFormatError(
            f"{source}: corrupt or truncated pickle ({type(err).__name__}: {err})"
        ) from err


# ---------------------------------------------------------------------------------------
# Placeholders to arrays.


def _storage_array(storage: _Storage, raw: bytes, big_endian: bool) -> np.ndarray:
    """A storage's elements, ``[numel]`` in native byte order, from its bytes."""
    if len(raw) != storage.numel * storage.dtype.itemsize:
        raise _Corrupt(
            f"storage {storage.key!r} holds {len(raw)} bytes, not {storage.numel} "
            f"{storage.dtype} elements"
        )
    stored = storage.dtype.newbyteorder(">" if big_endian else "<")
    # Read-only (tensors copy out of it); a copy only where the byte order differs.
    return np.frombuffer(raw, stored).astype(storage.dtype.newbyteorder("="), copy=False)


def _tensor_array(tensor: _Tensor, data: np.ndarray) -> np.ndarray:
    """The tensor's elements copied out of its storage's elements ``data [numel]``."""
    size, stride, offset = tensor.size, tensor.stride, tensor.offset
    if not (_is_index_tuple(size) and _is_index_tuple(stride) and _is_index(offset)):
        raise _Corrupt(f"a tensor of size {size!r}, stride {stride!r}, offset {offset!r}")
    if len(size) != len(stride):
        raise _Corrupt(f"a tensor of size {size} with stride {stride}")
    if math.prod(size) == 0:
        return np.zeros(size, data.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= data.size:
        raise _Corrupt(
            f"a tensor of size {size} reaches element {last} of storage "
            f"{tensor.storage.key!r}, which has {data.size}"
        )
    strides = tuple(s * data.itemsize for s in stride)
    view = np.lib.stride_tricks.as_strided(data[offset:], size, strides, writeable=False)
    return view.copy()


def _materialise(tree: Any, raw: Callable[[str], bytes], big_endian: bool) -> Any:
    """``tree`` with its placeholders made arrays and its ``OrderedDict`` plain dicts.

    ``raw(key)`` gives a storage's bytes. Shared containers stay shared.
    """
    arrays: dict[_Storage, np.ndarray] = {}
    memo: dict[int, Any] = {}

    def storage(s: _Storage) -> np.ndarray:
        if s not in arrays:
            arrays[s] = _storage_array(s, raw(s.key), big_endian)
        return arrays[s]

    def plain(obj: Any) -> Any:
        if id(obj) in memo:
            return memo[id(obj)]
        if isinstance(obj, dict):
            out = memo[id(obj)] = {}
            out.update((plain(k), plain(v)) for k, v in obj.items())
        elif isinstance(obj, list):
            out = memo[id(obj)] = []
            out.extend(plain(v) for v in obj)
        elif isinstance(obj, tuple):
            out = memo[id(obj)] = tuple(plain(v) for v in obj)
        elif isinstance(obj, _Tensor):
            out = _tensor_array(obj, storage(obj.storage))
        elif isinstance(obj, _Storage):
            out = storage(obj).copy()
        elif isinstance(obj, _ArrayState):
            out = obj.array()
        elif isinstance(obj, _DtypeState):
            out = obj.dtype()
        elif isinstance(obj, _StandIn | _Marker) or isinstance(obj, type):
            raise _Corrupt("a bare global among the values")
        else:
            out = obj  # None, bool, int, float, complex, str, bytes, numpy scalars
        return out

    try:
        return plain(tree)
    except (TypeError, RecursionError) as err:  # unhashable keys, cycles through tuples
        raise _Corrupt(f"an unusable object structure ({type(err).__name__}: {err})") from err


# ---------------------------------------------------------------------------------------
# The two file formats.


def _read_zip(path: Path) -> Any:
    """The object of a zip-format file (see the module docstring)."""
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        pickles = [n for n in names if re.fullmatch(r"[^/]+/data\.pkl", n)]
        if len(pickles) != 1:
            raise LiftingFormatError(
                f"{path}: a zip archive without PyTorch's <name>/data.pkl record (not written "
                "by torch.save?)"
            )
        prefix = pickles[0].removesuffix("data.pkl")
        tree, _ = _unpickle(io.BytesIO(archive.read(pickles[0])), str(path))
        big_endian = prefix + "byteorder" in names and archive.read(prefix + "byteorder") == b"big"

        def raw(key: str) -> bytes:
            name = f"{prefix}data/{key}"
            if name not in names:
                raise _Corrupt(f"no record {name!r} for storage {key!r}")
            return archive.read(name)

        return _materialise(tree, raw, big_endian)


def _read_legacy(path: Path) -> Any:
    """The object of a legacy-format file (see the module docstring)."""
    source = str(path)
    with open(path, "rb") as f:
        try:
            magic, _ = _unpickle(f, source)
        except LiftingFormatError:
            magic = None
        if magic != LEGACY_MAGIC:
            raise LiftingFormatError(
                f"{path}: not a PyTorch file (no zip directory, no legacy magic number; "
                "truncated or another format?)"
            )
        protocol, _ = _unpickle(f, source)
        if protocol != LEGACY_PROTOCOL:
            raise LiftingFormatError(f"{path}: legacy PyTorch protocol {protocol!r}, not 1001")
        _unpickle(f, source)  # system information: the format is little-endian regardless
        tree, storages = _unpickle(f, source)
        keys, _ = _unpickle(f, source)
        if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
            raise LiftingFormatError(f"{path}: corrupt checkpoint: no list of storage keys")
        named = {s.key: s for s in storages}
        data = {key: _read_legacy_storage(f, named.get(key), key, source) for key in keys}

    def raw(key: str) -> bytes:
        if key not in data:
            raise _Corrupt(f"storage {key!r} is not in the file")
        return data[key]

    return _materialise(tree, raw, big_endian=False)


def _read_legacy_storage(f: BinaryIO, storage: _Storage | None, key: str, source: str) -> bytes:
    """The bytes of the next storage of a legacy file: int64 element count, then elements."""
    if storage is None:
        raise LiftingFormatError(f"{source}: corrupt checkpoint: storage {key!r} is unused")
    numel = int.from_bytes(f.read(8), "little", signed=True)
    if numel != storage.numel:
        raise LiftingFormatError(
            f"{source}: truncated or corrupt: storage {key!r} has {numel} elements, the "
            f"pickle says {storage.numel}"
        )
    size = numel * storage.dtype.itemsize
    raw = f.read(size)
    if len(raw) != size:
        raise LiftingFormatError(
            f"{source}: truncated: storage {key!r} needs {size} bytes, {len(raw)} are left"
        )
    return raw


def read_torch_file(path: PathLike, *, allow_pickle: bool) -> Any:
    """The object a ``torch.save`` file holds, as plain Python and NumPy, without torch.

    Both formats load (see the module docstring); tensors and storages become
    ``np.ndarray`` copies (``size``, ``stride`` and storage offset respected, native byte
    order, element types of :data:`STORAGE_DTYPES`), numpy arrays and scalars stay numpy,
    ``OrderedDict`` becomes ``dict``. ``allow_pickle`` must be ``True``: the file is a
    pickle, and although only :data:`ALLOWED_GLOBALS` are resolved, loading it trusts it.

    Raises:
      FileNotFoundError: no such file.
      UntrustedPickleError: ``allow_pickle`` is not ``True``.
      PickleSecurityError: the pickle names another global (nothing of it has run).
      LiftingFormatError: a corrupt, truncated or non-PyTorch file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if allow_pickle is not True:
        raise UntrustedPickleError(
            f"{path}: a PyTorch file is a Python pickle, which can run code its author chose; "
            "even with only tensors and containers allowed, loading it trusts it: for a file "
            "from a source you trust, pass --allow-pickle (allow_pickle=True)"
        )
    try:
        return _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
    except _Corrupt as err:
        raise LiftingFormatError(f"{path}: corrupt checkpoint: {err}") from err
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise LiftingFormatError(f"{path}: corrupt zip archive ({err})") from err


# ---------------------------------------------------------------------------------------
# VideoPose3D's TemporalModel.

_BN_PARAMS = ("weight", "bias", "running_mean", "running_var")
_LAYERS_CONV = re.compile(r"layers_conv\.(\d+)\.weight")


@dataclasses.dataclass(frozen=True)
class VideoPose3DArchitecture:
    """The hyper-parameters a VideoPose3D ``TemporalModel`` state dict fixes.

    ``filter_widths``: the expand conv's width, then one per residual block;
    ``channels``: the hidden width; ``joints_in``, ``joints_out``: 2D input and 3D output
    joints.
    """

    filter_widths: tuple[int, ...]
    channels: int
    joints_in: int
    joints_out: int


def _norm_names(blocks: int) -> list[str]:
    """The batch norms of a model with ``blocks`` residual blocks."""
    return ["expand_bn", *(f"layers_bn.{k}" for k in range(2 * blocks))]


def _videopose3d_keys(blocks: int) -> tuple[list[str], list[str]]:
    """The required and the optional state-dict keys of a model with ``blocks`` blocks."""
    required = [
        "expand_conv.weight",
        *(f"layers_conv.{k}.weight" for k in range(2 * blocks)),
        *(f"{norm}.{p}" for norm in _norm_names(blocks) for p in _BN_PARAMS),
        "shrink.weight",
        "shrink.bias",
    ]
    return required, [f"{norm}.num_batches_tracked" for norm in _norm_names(blocks)]


def _shape(state: Mapping[str, Any], key: str, name: str) -> tuple[int, ...]:
    value = state[key]
    if not (isinstance(value, np.ndarray) and value.dtype.kind == "f"):
        raise StateDictError(f"{name}: {key!r} is a {type(value).__name__}, not float weights")
    return value.shape


def _expect_shape(state: Mapping[str, Any], key: str, expected: tuple, name: str) -> None:
    shape = _shape(state, key, name)
    if shape != expected:
        raise StateDictError(f"{name}: {key!r} has shape {shape}, expected {expected}")


def _conv_width(state: Mapping[str, Any], key: str, out: int, inp: int, name: str) -> int:
    """The odd kernel width of the conv weight ``key``, ``[out, inp, width]``."""
    shape = _shape(state, key, name)
    if len(shape) != 3 or shape[:2] != (out, inp) or shape[2] % 2 == 0:
        raise StateDictError(
            f"{name}: {key!r} has shape {shape}, expected ({out}, {inp}, odd width)"
        )
    return shape[2]


def videopose3d_architecture(
    state_dict: Mapping[str, Any], name: str = "state dict"
) -> VideoPose3DArchitecture:
    """The architecture of VideoPose3D's ``TemporalModel`` from its state dict.

    Shapes (PyTorch's conv weights are ``[out, in, width]``): ``expand_conv.weight
    [C, 2 J_in, w_0]``; per block ``i``, ``layers_conv.{2i}.weight [C, C, w_{i+1}]`` and
    ``layers_conv.{2i+1}.weight [C, C, 1]``; each batch norm (``expand_bn``,
    ``layers_bn.{k}``) ``weight``, ``bias``, ``running_mean``, ``running_var`` ``[C]`` (and
    ``num_batches_tracked``, optional and unused); ``shrink.weight [3 J_out, C, 1]``,
    ``shrink.bias [3 J_out]``. Widths are odd; no other key is allowed. Errors
    (:class:`StateDictError`) begin with ``name``.

    Neither causality nor VideoPose3D's ``dense`` ablation changes a weight: a dense
    model's undilated wide kernels read as other filter widths, so only dilated models load.
    """
    indices = [int(m[1]) for k in state_dict if (m := _LAYERS_CONV.fullmatch(str(k)))]
    blocks = (max(indices, default=-1) + 2) // 2
    required, optional = _videopose3d_keys(blocks)
    missing = [k for k in required if k not in state_dict]
    unexpected = sorted(str(k) for k in state_dict if k not in required and k not in optional)
    if missing or unexpected:
        found = [f"missing keys {missing}"] * bool(missing)
        found += [f"unexpected keys {unexpected}"] * bool(unexpected)
        raise StateDictError(
            f"{name}: not a VideoPose3D TemporalModel state dict ({', '.join(found)})"
        )
    expand = _shape(state_dict, "expand_conv.weight", name)
    if len(expand) != 3 or expand[1] % 2:
        raise StateDictError(
            f"{name}: 'expand_conv.weight' has shape {expand}, expected "
            "(channels, 2 * input joints, odd width)"
        )
    channels = expand[0]
    widths = [_conv_width(state_dict, "expand_conv.weight", channels, expand[1], name)]
    for i in range(blocks):
        key, key1 = f"layers_conv.{2 * i}.weight", f"layers_conv.{2 * i + 1}.weight"
        widths.append(_conv_width(state_dict, key, channels, channels, name))
        _expect_shape(state_dict, key1, (channels, channels, 1), name)
    for norm in _norm_names(blocks):
        for p in _BN_PARAMS:
            _expect_shape(state_dict, f"{norm}.{p}", (channels,), name)
    out = _shape(state_dict, "shrink.weight", name)[0]
    if out % 3:
        raise StateDictError(f"{name}: 'shrink.weight' has {out} outputs, not 3 per joint")
    _expect_shape(state_dict, "shrink.weight", (out, channels, 1), name)
    _expect_shape(state_dict, "shrink.bias", (out,), name)
    return VideoPose3DArchitecture(tuple(widths), channels, expand[1] // 2, out // 3)


def _model_state(
    source: PathLike | Mapping[str, Any], allow_pickle: bool, name: str
) -> Mapping[str, Any]:
    """The ``model_pos`` state dict of a checkpoint file or dict, or a bare state dict."""
    if isinstance(source, Mapping):
        checkpoint = source
    else:
        checkpoint = read_torch_file(source, allow_pickle=allow_pickle)
    state = checkpoint.get("model_pos", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping):
        raise StateDictError(f"{name}: holds no state dict (nor a checkpoint dict with one)")
    return state


def _check_joints(
    arch: VideoPose3DArchitecture, skeleton_in: Skeleton, skeleton_out: Skeleton, name: str
) -> None:
    for side, joints, skeleton in (
        ("input", arch.joints_in, skeleton_in),
        ("output", arch.joints_out, skeleton_out),
    ):
        if joints != skeleton.num_joints:
            raise StateDictError(
                f"{name}: the checkpoint expects {joints} {side} joints, skeleton "
                f"{skeleton.name!r} has {skeleton.num_joints}"
            )


def _set(variable: nnx.Variable, value: np.ndarray) -> None:
    variable[...] = jnp.asarray(value, jnp.float32)


def _copy_conv(conv: nnx.Conv, state: Mapping[str, Any], key: str) -> None:
    """PyTorch's ``[out, in, width]`` conv weight (and bias) into Flax's ``[width, in, out]``."""
    _set(conv.kernel, np.transpose(state[f"{key}.weight"], (2, 1, 0)))
    if conv.bias is not None:
        _set(conv.bias, state[f"{key}.bias"])


def _copy_norm(norm: nnx.BatchNorm, state: Mapping[str, Any], key: str) -> None:
    for variable, name in zip(
        (norm.scale, norm.bias, norm.mean, norm.var), _BN_PARAMS, strict=True
    ):
        _set(variable, state[f"{key}.{name}"])


def load_videopose3d(
    source: PathLike | Mapping[str, Any],
    *,
    skeleton_in: Skeleton,
    skeleton_out: Skeleton,
    causal: bool = False,
    allow_pickle: bool = False,
) -> TemporalModel:
    """VideoPose3D's ``TemporalModel`` as our plain one, with its weights copied exactly.

    Shapes: the model maps ``[*batch, frames, J_in, 2] -> [*batch, frames - receptive_field
    + 1, J_out, 3]``, joints in the skeletons' order, as VideoPose3D's does.

    Args:
      source: a ``torch.save`` file (VideoPose3D's checkpoint dict, whose ``model_pos``
        is used, or a bare state dict), or such a dict already read (arrays as values).
      skeleton_in, skeleton_out: the skeletons the checkpoint was trained on (e.g.
        ``COCO_17`` in and ``H36M_17`` out for ``pretrained_h36m_detectron_coco.bin``);
        their joint counts must match its weights.
      causal: whether it is a causal model (``--causal``): its weights are the same as a
        non-causal one's, so the file cannot tell.
      allow_pickle: trust the file (see :func:`read_torch_file`); unused for a dict.

    Returns the model in eval mode (batch norm uses the running statistics), dropout 0.

    Raises:
      StateDictError: the state dict is not a VideoPose3D ``TemporalModel``'s (see
        :func:`videopose3d_architecture`) or does not fit the skeletons.
      and the errors of :func:`read_torch_file`.
    """
    name = "state dict" if isinstance(source, Mapping) else str(source)
    state = _model_state(source, allow_pickle, name)
    arch = videopose3d_architecture(state, name)
    _check_joints(arch, skeleton_in, skeleton_out, name)
    model = TemporalModel(
        skeleton_in,
        skeleton_out,
        chiral=False,
        filter_widths=arch.filter_widths,
        channels=arch.channels,
        dropout=0.0,
        causal=causal,
        rngs=nnx.Rngs(0),
    )
    _copy_conv(model.expand_conv, state, "expand_conv")
    _copy_norm(model.expand_bn, state, "expand_bn")
    for i, block in enumerate(model.blocks):
        _copy_conv(block.conv, state, f"layers_conv.{2 * i}")
        _copy_norm(block.bn, state, f"layers_bn.{2 * i}")
        _copy_conv(block.conv1, state, f"layers_conv.{2 * i + 1}")
        _copy_norm(block.bn1, state, f"layers_bn.{2 * i + 1}")
    _copy_conv(model.shrink, state, "shrink")
    model.eval()
    return model
