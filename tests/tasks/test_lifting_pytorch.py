"""PyTorch checkpoints without PyTorch: VideoPose3D's models load exactly, and pickles
naming anything but tensors and containers are refused before any of them runs.

The files of ``data/videopose3d`` were written once by real PyTorch (``make_fixture.py``
there); the malformed and malicious files below are written by this module's own writers
of the two formats.
"""

import collections
import os
import pickle
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from chiral_jax.skeletons import COCO_17, H36M_17, MPII_16
from chiral_tasks.lifting import pytorch
from chiral_tasks.lifting.archive import LiftingFormatError
from chiral_tasks.lifting.pytorch import (
    ALLOWED_GLOBALS,
    LEGACY_MAGIC,
    LEGACY_PROTOCOL,
    PickleSecurityError,
    StateDictError,
    VideoPose3DArchitecture,
    load_videopose3d,
    read_torch_file,
    videopose3d_architecture,
)
from chiral_tasks.lifting.videopose3d import UntrustedPickleError

DATA = Path(__file__).parent / "data" / "videopose3d"
FILES = {"zip": DATA / "tiny_zip.bin", "legacy": DATA / "tiny_legacy.bin"}
TINY = VideoPose3DArchitecture(filter_widths=(3, 3, 3), channels=16, joints_in=17, joints_out=17)


# ---------------------------------------------------------------------------------------
# Writers of both formats, for files PyTorch would not write.


def _write_zip(path: Path, pickled: bytes, storages=(), byteorder: bytes | None = None) -> Path:
    """A zip-format file: ``archive/data.pkl``, ``archive/data/<key>`` per (key, bytes)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickled)
        if byteorder is not None:
            archive.writestr("archive/byteorder", byteorder)
        for key, raw in storages:
            archive.writestr(f"archive/data/{key}", raw)
    return path


def _write_legacy(path: Path, pickled: bytes, storages=()) -> Path:
    """A legacy-format file; ``storages``: (key, element count, bytes) in file order."""
    system = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"long": 8}}
    with open(path, "wb") as f:
        for header in (LEGACY_MAGIC, LEGACY_PROTOCOL, system):
            f.write(pickle.dumps(header, protocol=2))
        f.write(pickled)
        f.write(pickle.dumps([key for key, _, _ in storages], protocol=2))
        for _, numel, raw in storages:
            f.write(numel.to_bytes(8, "little", signed=True) + raw)
    return path


def _ops(value) -> bytes:
    """Protocol-2 opcodes that push plain ``value`` (its pickle without header and STOP)."""
    return pickle.dumps(value, protocol=2)[2:-1]


def _global(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


def _tensor_ops(storage_type: str, key: str, numel: int, offset: int, size, stride) -> bytes:
    """The opcodes of a tensor as torch pickles it: ``_rebuild_tensor_v2(storage, offset,
    size, stride, requires_grad, hooks)``, the storage a persistent id."""
    pid = b"(" + _ops("storage") + _global("torch", storage_type)
    pid += _ops(key) + _ops("cpu") + _ops(numel) + b"tQ"
    hooks = _global("collections", "OrderedDict") + b")R"
    args = b"(" + pid + _ops(offset) + _ops(size) + _ops(stride) + _ops(False) + hooks + b"t"
    return _global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def _dict_pickle(items: dict[str, bytes]) -> bytes:
    """A protocol-2 pickle of a dict whose values are the given opcodes."""
    return b"\x80\x02}(" + b"".join(_ops(k) + v for k, v in items.items()) + b"u."


@pytest.fixture(scope="module")
def checkpoints() -> dict[str, dict]:
    return {fmt: read_torch_file(path, allow_pickle=True) for fmt, path in FILES.items()}


# ---------------------------------------------------------------------------------------
# The files PyTorch wrote.


@pytest.mark.parametrize("fmt", FILES)
def test_loaded_model_reproduces_pytorch(fmt):
    expected = np.load(DATA / "expected.npz")
    model = load_videopose3d(
        FILES[fmt], skeleton_in=H36M_17, skeleton_out=H36M_17, allow_pickle=True
    )
    y = np.asarray(model(expected["x"]))
    assert y.dtype == np.float32 and y.shape == expected["y"].shape == (2, 14, 17, 3)
    np.testing.assert_allclose(y, expected["y"], rtol=1e-5, atol=1e-5)
    assert "torch" not in sys.modules


@pytest.mark.parametrize("fmt", FILES)
def test_reads_the_whole_checkpoint(checkpoints, fmt):
    checkpoint = checkpoints[fmt]
    assert checkpoint["epoch"] == 1 and checkpoint["lr"] == 1e-3
    assert checkpoint["model_traj"] is None
    name, keys, *rest = checkpoint["random_state"]
    ref_name, ref_keys, *ref_rest = np.random.RandomState(0).get_state()
    assert name == ref_name and rest == ref_rest
    np.testing.assert_array_equal(keys, ref_keys)
    assert keys.dtype == np.uint32
    adam = checkpoint["optimizer"]
    assert adam["param_groups"][0]["betas"] == (0.9, 0.999)
    assert set(adam["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert adam["state"][0]["exp_avg"].shape == (16, 34, 3)
    state = checkpoint["model_pos"]
    assert type(state) is dict and state["expand_bn.num_batches_tracked"].dtype == np.int64
    for key, value in checkpoints["zip"]["model_pos"].items():
        np.testing.assert_array_equal(state[key], value)


def test_architecture_of_the_fixture(checkpoints):
    assert videopose3d_architecture(checkpoints["zip"]["model_pos"]) == TINY


def _state_dict(widths, channels: int, joints_in: int, joints_out: int) -> dict:
    """Random weights in VideoPose3D's state-dict layout."""
    rng = np.random.default_rng(0)

    def w(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    state = {"expand_conv.weight": w(channels, 2 * joints_in, widths[0])}
    norms = ["expand_bn"]
    for i, width in enumerate(widths[1:]):
        state[f"layers_conv.{2 * i}.weight"] = w(channels, channels, width)
        state[f"layers_conv.{2 * i + 1}.weight"] = w(channels, channels, 1)
        norms += [f"layers_bn.{2 * i}", f"layers_bn.{2 * i + 1}"]
    for norm in norms:
        for param in ("weight", "bias", "running_mean", "running_var"):
            state[f"{norm}.{param}"] = w(channels)
    state["shrink.weight"] = w(3 * joints_out, channels, 1)
    state["shrink.bias"] = w(3 * joints_out)
    return state


def test_architecture_inference_and_a_bare_state_dict():
    state = _state_dict((5, 3, 1), 8, 16, 17)
    expected = VideoPose3DArchitecture((5, 3, 1), 8, 16, 17)
    assert videopose3d_architecture(state) == expected
    model = load_videopose3d(state, skeleton_in=MPII_16, skeleton_out=H36M_17, causal=True)
    assert model.filter_widths == (5, 3, 1) and model.causal and not model.chiral
    np.testing.assert_array_equal(
        np.asarray(model.blocks[0].conv.kernel[...]), state["layers_conv.0.weight"].T
    )
    np.testing.assert_array_equal(
        np.asarray(model.blocks[1].bn1.var[...]), state["layers_bn.3.running_var"]
    )


# ---------------------------------------------------------------------------------------
# Trust and refusals.


def test_refuses_without_allow_pickle():
    for call in (
        lambda: read_torch_file(FILES["zip"], allow_pickle=False),
        lambda: load_videopose3d(FILES["legacy"], skeleton_in=H36M_17, skeleton_out=H36M_17),
    ):
        with pytest.raises(UntrustedPickleError, match="--allow-pickle") as err:
            call()
        assert "\n" not in str(err.value) and "pickle" in str(err.value)


def test_every_allowed_global_is_a_stand_in():
    for name, value in ALLOWED_GLOBALS.items():
        assert value is collections.OrderedDict or type(value).__module__ == pytorch.__name__, name


class _Payload:
    """Unpickling this calls ``fn(*args)``: what a malicious checkpoint does."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _payloads(marker: Path) -> list[tuple[str, _Payload]]:
    """Payloads creating ``marker``, each with a pattern of the global it names."""
    return [
        (f"{os.system.__module__}\\.system", _Payload(os.system, f"touch {marker}")),
        ("(__builtin__|builtins)\\.exec", _Payload(exec, f"open({str(marker)!r}, 'w').close()")),
    ]


def test_the_payloads_are_live(tmp_path):
    marker = tmp_path / "ran"
    for _, payload in _payloads(marker):
        pickle.loads(pickle.dumps(payload, protocol=2))  # what plain unpickling does
        assert marker.exists()
        marker.unlink()


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_a_disallowed_global_is_refused_before_it_runs(tmp_path, fmt, which, protocol):
    marker = tmp_path / "ran"
    name, payload = _payloads(marker)[which]
    pickled = pickle.dumps({"epoch": 1, "model_pos": payload}, protocol=protocol)
    write = _write_zip if fmt == "zip" else _write_legacy
    path = write(tmp_path / "evil.bin", pickled)
    with pytest.raises(PickleSecurityError, match=f"refuses global '{name}'") as err:
        load_videopose3d(path, skeleton_in=H36M_17, skeleton_out=H36M_17, allow_pickle=True)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("fmt", "fraction", "match"),
    [
        ("zip", 0.5, "not a PyTorch file"),
        ("legacy", 0.05, "corrupt or truncated pickle"),
        ("legacy", 0.5, "truncated"),
        ("legacy", 0.999, "truncated: storage"),
    ],
)
def test_truncated_files_are_refused(tmp_path, fmt, fraction, match):
    data = FILES[fmt].read_bytes()
    path = tmp_path / "cut.bin"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(LiftingFormatError, match=match) as err:
        read_torch_file(path, allow_pickle=True)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


def test_missing_and_foreign_files_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_torch_file(tmp_path / "absent.bin", allow_pickle=True)
    with pytest.raises(LiftingFormatError, match="without PyTorch's <name>/data.pkl"):
        read_torch_file(DATA / "expected.npz", allow_pickle=True)
    (tmp_path / "text.bin").write_text("hello")
    with pytest.raises(LiftingFormatError, match="not a PyTorch file"):
        read_torch_file(tmp_path / "text.bin", allow_pickle=True)


# ---------------------------------------------------------------------------------------
# The reader's details, on files of this module's writers.


def test_tensors_respect_dtype_offset_stride_and_byte_order(tmp_path):
    storages = [
        ("0", np.arange(12, dtype=np.float64)),
        ("1", np.array([True, False, True])),
        ("2", np.arange(-3, 3, dtype=np.int8)),
        ("3", np.arange(4, dtype=np.float16)),
    ]
    tensors = {
        "transposed": _tensor_ops("DoubleStorage", "0", 12, 1, (3, 2), (1, 3)),
        "bool": _tensor_ops("BoolStorage", "1", 3, 0, (3,), (1,)),
        "int8": _tensor_ops("CharStorage", "2", 6, 2, (2, 2), (2, 1)),
        "scalar": _tensor_ops("HalfStorage", "3", 4, 3, (), ()),
        "empty": _tensor_ops("DoubleStorage", "0", 12, 0, (0, 5), (5, 1)),
    }
    want = {
        "transposed": np.arange(1, 7, dtype=np.float64).reshape(2, 3).T,
        "bool": np.array([True, False, True]),
        "int8": np.array([[-1, 0], [1, 2]], np.int8),
        "scalar": np.float16(3),
        "empty": np.zeros((0, 5)),
    }
    for order, code in (("little", "<"), ("big", ">")):
        raws = [(key, a.astype(a.dtype.newbyteorder(code)).tobytes()) for key, a in storages]
        path = _write_zip(tmp_path / f"{order}.bin", _dict_pickle(tensors), raws, order.encode())
        got = read_torch_file(path, allow_pickle=True)
        for key, value in want.items():
            assert got[key].dtype == value.dtype and got[key].shape == np.shape(value)
            np.testing.assert_array_equal(got[key], value)
    legacy = [(key, a.size, a.astype(a.dtype.newbyteorder("<")).tobytes()) for key, a in storages]
    path = _write_legacy(tmp_path / "legacy.bin", _dict_pickle(tensors), legacy)
    got = read_torch_file(path, allow_pickle=True)
    for key, value in want.items():
        np.testing.assert_array_equal(got[key], value)


@pytest.mark.parametrize("core", ["numpy._core", "numpy.core"])
def test_numpy_arrays_and_scalars_of_either_numpy(tmp_path, core):
    values = {"a": np.asfortranarray(np.arange(6, dtype=">i2").reshape(2, 3)), "s": np.float64(2.5)}
    pickled = pickle.dumps(values, protocol=2)
    pickled = pickled.replace(b"numpy._core.multiarray", f"{core}.multiarray".encode())
    got = read_torch_file(_write_zip(tmp_path / "np.bin", pickled), allow_pickle=True)
    np.testing.assert_array_equal(got["a"], values["a"])
    assert got["a"].dtype == np.int16 and got["s"] == 2.5 and got["s"].dtype == np.float64


@pytest.mark.parametrize(
    ("pickled", "storages", "match"),
    [
        (
            _dict_pickle({"t": _tensor_ops("FloatStorage", "0", 4, 1, (2, 2), (2, 1))}),
            [("0", bytes(16))],
            "reaches element 4 of storage '0', which has 4",
        ),
        (
            _dict_pickle({"t": _tensor_ops("FloatStorage", "0", 4, 0, (4,), (1,))}),
            [("0", bytes(12))],
            "holds 12 bytes, not 4 float32 elements",
        ),
        (
            _dict_pickle({"t": _tensor_ops("FloatStorage", "9", 4, 0, (4,), (1,))}),
            [],
            "no record 'archive/data/9'",
        ),
        (pickle.dumps(np.array([1, "a"], dtype=object), protocol=2), [], "array of objects"),
    ],
)
def test_malformed_content_is_refused(tmp_path, pickled, storages, match):
    path = _write_zip(tmp_path / "bad.bin", pickled, storages)
    with pytest.raises(LiftingFormatError, match=match) as err:
        read_torch_file(path, allow_pickle=True)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------
# State dicts that are not VideoPose3D's, and skeletons that do not fit.


def _edit(state: dict, key: str, value) -> dict:
    state = dict(state)
    if value is None:
        del state[key]
    else:
        state[key] = value
    return state


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        (
            "shrink.bias",
            np.zeros(50, np.float32),
            r"'shrink.bias' has shape \(50,\), expected \(51,\)",
        ),
        (
            "layers_conv.2.weight",
            np.zeros((16, 16, 4), np.float32),
            r"expected \(16, 16, odd width\)",
        ),
        ("layers_conv.1.weight", np.zeros((16, 15, 1), np.float32), r"expected \(16, 16, 1\)"),
        ("expand_conv.weight", np.zeros((16, 33, 3), np.float32), "2 \\* input joints"),
        ("shrink.weight", np.zeros((50, 16, 1), np.float32), "50 outputs, not 3 per joint"),
        ("layers_bn.3.running_var", np.zeros(15, np.float32), r"expected \(16,\)"),
        ("layers_bn.0.weight", None, r"missing keys \['layers_bn.0.weight'\]"),
        ("extra.weight", np.zeros(3, np.float32), r"unexpected keys \['extra.weight'\]"),
        ("expand_bn.bias", "not an array", "'expand_bn.bias' is a str, not float weights"),
    ],
)
def test_state_dicts_of_other_shapes_are_refused(checkpoints, key, value, match):
    state = _edit(checkpoints["zip"]["model_pos"], key, value)
    with pytest.raises(StateDictError, match=match) as err:
        load_videopose3d(state, skeleton_in=H36M_17, skeleton_out=H36M_17)
    assert str(err.value).startswith("state dict: ") and "\n" not in str(err.value)


def test_skeletons_must_fit_the_checkpoint():
    path = FILES["zip"]
    with pytest.raises(StateDictError, match="expects 17 input joints, skeleton 'mpii' has 16"):
        load_videopose3d(path, skeleton_in=MPII_16, skeleton_out=H36M_17, allow_pickle=True)
    with pytest.raises(StateDictError, match=f"^{re.escape(str(path))}: .*expects 17 output"):
        load_videopose3d(path, skeleton_in=COCO_17, skeleton_out=MPII_16, allow_pickle=True)
