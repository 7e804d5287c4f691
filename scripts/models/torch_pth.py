#!/usr/bin/env python3
"""Read PyTorch checkpoints without PyTorch; read and write safetensors files.

Only numpy and the standard library are used, so the reference environment stays small and
the conversion of a checkpoint never executes code from it.

Checkpoints (`torch.save` output) come in two layouts:

* zip (torch >= 1.6): `<prefix>/data.pkl` is the pickled object, each storage's raw bytes sit
  in `<prefix>/data/<key>`, plus `<prefix>/version` and (newer) `<prefix>/byteorder`;
* legacy (older torch, or `_use_new_zipfile_serialization=False`): a stream of pickles —
  magic number, protocol version, sys_info, the object, the list of storage keys — followed
  by each storage as an 8-byte little-endian element count and its raw data.

In both, a tensor is pickled as `torch._utils._rebuild_tensor_v2(storage, offset, size,
stride, ...)` whose storage is a persistent id `('storage', storage_type, key, location,
numel[, view_metadata])`. Tensors can be strided views of a larger storage, so every tensor is
rebuilt with its offset and strides and then copied to a contiguous array.

The unpickler is restricted: it resolves only the handful of globals a state dict needs and
refuses everything else, so a malicious checkpoint cannot run code.

    scripts/models/torch_pth.py CHECKPOINT.pth          # list names, shapes and dtypes
    scripts/models/torch_pth.py model.safetensors       # the same for a safetensors file
"""

from __future__ import annotations

import argparse
import io
import json
import pickle
import struct
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

__all__ = [
    "CheckpointError",
    "load_checkpoint",
    "load_state_dict",
    "load_weights",
    "load_safetensors",
    "save_safetensors",
    "save_state_dict",
]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


class CheckpointError(Exception):
    """A checkpoint or safetensors file that cannot be read (the message says why)."""


# --- storage types ------------------------------------------------------------------------

# numpy has no bfloat16: such storages are read as uint16 and widened to float32 afterwards.
BFLOAT16 = "bfloat16"

# torch storage class name -> numpy dtype of its elements.
_STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("float64"),
    "FloatStorage": np.dtype("float32"),
    "HalfStorage": np.dtype("float16"),
    "BFloat16Storage": BFLOAT16,
    "LongStorage": np.dtype("int64"),
    "IntStorage": np.dtype("int32"),
    "ShortStorage": np.dtype("int16"),
    "CharStorage": np.dtype("int8"),
    "ByteStorage": np.dtype("uint8"),
    "BoolStorage": np.dtype("bool"),
    # An untyped storage holds raw bytes; torch reads it as uint8 too.
    "UntypedStorage": np.dtype("uint8"),
}

# torch dtype attribute name -> numpy dtype (newer pickles may name dtypes directly).
_TORCH_DTYPES = {
    "float64": np.dtype("float64"),
    "double": np.dtype("float64"),
    "float32": np.dtype("float32"),
    "float": np.dtype("float32"),
    "float16": np.dtype("float16"),
    "half": np.dtype("float16"),
    "bfloat16": BFLOAT16,
    "int64": np.dtype("int64"),
    "long": np.dtype("int64"),
    "int32": np.dtype("int32"),
    "int": np.dtype("int32"),
    "int16": np.dtype("int16"),
    "int8": np.dtype("int8"),
    "uint8": np.dtype("uint8"),
    "bool": np.dtype("bool"),
}


class _StorageType:
    """Stands in for a torch storage class or dtype named by the pickle."""

    def __init__(self, name: str, dtype):
        self.name = name
        self.dtype = dtype

    def __repr__(self):
        return f"torch.{self.name}"


def _storage_itemsize(dtype) -> int:
    return 2 if dtype is BFLOAT16 else dtype.itemsize


def _storage_array(raw: bytes, dtype, big_endian: bool) -> np.ndarray:
    """Interpret raw storage bytes as a 1-D numpy array of the storage's dtype."""
    if dtype is BFLOAT16:
        # bfloat16 is the upper half of a float32: widen by shifting into the high bits.
        halves = np.frombuffer(raw, dtype=">u2" if big_endian else "<u2").astype(np.uint32)
        return (halves << 16).view(np.float32)
    return np.frombuffer(raw, dtype=dtype.newbyteorder(">" if big_endian else "<"))


# --- placeholders built while unpickling ---------------------------------------------------


class _StorageRef:
    """A persistent storage id; its bytes are attached after unpickling (legacy files store
    them after the pickle)."""

    def __init__(self, storage_type: _StorageType, key: str, numel: int, view=None):
        self.dtype = storage_type.dtype
        self.key = key
        self.numel = numel
        self.view = view  # legacy only: (view_key, element_offset, view_numel) or None


class _TensorRef:
    """A `_rebuild_tensor_v2` call, materialized once all storages are known."""

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, _StorageRef):
            raise CheckpointError("tensor rebuilt from something that is not a storage")
        self.storage = storage
        self.offset = int(offset)
        self.size = tuple(int(s) for s in size)
        self.stride = tuple(int(s) for s in stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    # An nn.Parameter is its data as far as a state dict is concerned.
    return data


def _rebuild_parameter_with_state(data, requires_grad=False, backward_hooks=None, state=None):
    return data


def _allowed_global(module: str, name: str):
    """The only globals a checkpoint may name. Anything else is refused."""
    if (module, name) == ("collections", "OrderedDict"):
        return OrderedDict
    if module == "torch._utils":
        functions = {
            "_rebuild_tensor_v2": _rebuild_tensor_v2,
            "_rebuild_parameter": _rebuild_parameter,
            "_rebuild_parameter_with_state": _rebuild_parameter_with_state,
        }
        if name in functions:
            return functions[name]
    if module in ("torch", "torch.storage") and name in _STORAGE_DTYPES:
        return _StorageType(name, _STORAGE_DTYPES[name])
    if module == "torch" and name in _TORCH_DTYPES:
        return _StorageType(name, _TORCH_DTYPES[name])
    return None


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict[str, _StorageRef] | None = None):
        super().__init__(file, encoding="utf-8")
        # Storages shared by several tensors are one object, so their data is attached once.
        self.storages = storages if storages is not None else {}

    def find_class(self, module, name):
        found = _allowed_global(module, name)
        if found is None:
            raise CheckpointError(
                f"refusing to unpickle global {module}.{name}: only tensors, storages and "
                "OrderedDict are allowed in a checkpoint read without torch")
        return found

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != "storage":
            raise CheckpointError(f"unsupported persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"persistent id names no storage type: {storage_type!r}")
        key = str(key)
        if key not in self.storages:
            self.storages[key] = _StorageRef(storage_type, key, int(numel))
        root = self.storages[key]
        if view is None:
            return root
        # Legacy view storages: a window of elements into the root storage.
        view_key, view_offset, view_numel = view
        return _StorageRef(storage_type, key, int(view_numel),
                           view=(str(view_key), int(view_offset)))


# --- materializing tensors ----------------------------------------------------------------


def _materialize(ref: _TensorRef, data: dict[str, np.ndarray]) -> np.ndarray:
    storage = ref.storage
    flat = data[storage.key]
    if storage.view is not None:
        _, view_offset = storage.view
        flat = flat[view_offset:view_offset + storage.numel]
    if len(ref.size) != len(ref.stride):
        raise CheckpointError(f"tensor size {ref.size} and stride {ref.stride} disagree")
    if any(s < 0 for s in ref.size) or any(s < 0 for s in ref.stride):
        raise CheckpointError(f"negative size or stride: {ref.size} {ref.stride}")
    if 0 in ref.size:
        return np.zeros(ref.size, dtype=flat.dtype)
    # Refuse views that would read past the storage: as_strided does not check.
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    if ref.offset < 0 or last >= len(flat):
        raise CheckpointError(
            f"tensor (offset {ref.offset}, size {ref.size}, stride {ref.stride}) reaches "
            f"element {last} of a storage of {len(flat)}")
    base = flat[ref.offset:]
    view = np.lib.stride_tricks.as_strided(
        base, shape=ref.size, strides=[s * base.itemsize for s in ref.stride], writeable=False)
    # A native-endian, C-contiguous copy that owns its memory (np.ascontiguousarray would
    # turn a 0-d tensor into 1-d).
    return np.array(view, dtype=view.dtype.newbyteorder("="), order="C", copy=True)


def _replace_tensors(obj, data: dict[str, np.ndarray]):
    """Walk the unpickled object and turn every tensor placeholder into a numpy array."""
    if isinstance(obj, _TensorRef):
        return _materialize(obj, data)
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _replace_tensors(v, data)
        return out
    if isinstance(obj, list):
        return [_replace_tensors(v, data) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_replace_tensors(v, data) for v in obj)
    return obj


# --- the two file layouts -----------------------------------------------------------------


def _load_zip(path: Path):
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise CheckpointError(f"{path}: zip archive without exactly one <prefix>/data.pkl")
        prefix = pickles[0][: -len("data.pkl")]
        big_endian = False
        if prefix + "byteorder" in names:
            order = zf.read(prefix + "byteorder").decode().strip()
            if order not in ("little", "big"):
                raise CheckpointError(f"{path}: unknown byteorder {order!r}")
            big_endian = order == "big"
        unpickler = _RestrictedUnpickler(io.BytesIO(zf.read(pickles[0])))
        obj = unpickler.load()
        data = {}
        for key, storage in unpickler.storages.items():
            record = f"{prefix}data/{key}"
            if record not in names:
                raise CheckpointError(f"{path}: storage {record} is missing")
            raw = zf.read(record)
            expected = storage.numel * _storage_itemsize(storage.dtype)
            if len(raw) < expected:
                raise CheckpointError(
                    f"{path}: storage {record} has {len(raw)} bytes, expected {expected}")
            data[key] = _storage_array(raw[:expected], storage.dtype, big_endian)
    return _replace_tensors(obj, data)


def _load_legacy(path: Path):
    with open(path, "rb") as f:
        header = [_RestrictedUnpickler(f).load() for _ in range(3)]
        magic, protocol, sys_info = header
        if magic != LEGACY_MAGIC:
            raise CheckpointError(f"{path}: not a torch checkpoint (bad magic number)")
        if protocol != LEGACY_PROTOCOL:
            raise CheckpointError(f"{path}: unsupported legacy protocol {protocol}")
        big_endian = not (isinstance(sys_info, dict) and sys_info.get("little_endian", True))
        unpickler = _RestrictedUnpickler(f)
        obj = unpickler.load()
        keys = _RestrictedUnpickler(f).load()
        if not isinstance(keys, list):
            raise CheckpointError(f"{path}: storage key list missing after the pickle")
        data = {}
        for key in keys:
            key = str(key)
            storage = unpickler.storages.get(key)
            if storage is None:
                raise CheckpointError(f"{path}: storage {key} is listed but never used")
            count_bytes = f.read(8)
            if len(count_bytes) != 8:
                raise CheckpointError(f"{path}: truncated before storage {key}")
            (count,) = struct.unpack("<q", count_bytes)
            nbytes = count * _storage_itemsize(storage.dtype)
            raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise CheckpointError(f"{path}: storage {key} truncated")
            data[key] = _storage_array(raw, storage.dtype, big_endian)
        missing = set(unpickler.storages) - set(data)
        if missing:
            raise CheckpointError(f"{path}: storages without data: {sorted(missing)[:5]}")
    return _replace_tensors(obj, data)


def load_checkpoint(path):
    """Unpickle a whole checkpoint (zip or legacy), tensors as numpy arrays."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        return _load_legacy(path)
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError,
            zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({e})") from e


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items())


def load_state_dict(path) -> dict[str, np.ndarray]:
    """The state dict of a checkpoint: names -> contiguous numpy arrays, in file order.

    Accepts a plain state dict or one nested under `state_dict` / `model` /
    `model_state_dict` (training checkpoints that also hold optimizer state, epochs, ...).
    """
    obj = load_checkpoint(path)
    for _ in range(3):  # nested at most a few levels deep
        if _is_state_dict(obj):
            return dict(obj)
        if not isinstance(obj, dict):
            break
        inner = next((obj[k] for k in ("state_dict", "model_state_dict", "model") if k in obj),
                     None)
        if inner is None:
            break
        obj = inner
    if isinstance(obj, dict):
        bad = [k for k, v in obj.items() if not isinstance(v, np.ndarray)][:5]
        raise CheckpointError(
            f"{path}: not a state dict (entries that are not tensors: {bad}); expected names "
            "mapping to tensors, possibly under 'state_dict' or 'model'")
    raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")


# --- writing a zip-format checkpoint -------------------------------------------------------

# numpy dtype -> the torch storage class a tensor of that dtype is pickled with.
_STORAGE_CLASS = {dtype: name for name, dtype in _STORAGE_DTYPES.items()
                  if name != "UntypedStorage" and dtype is not BFLOAT16}


class _PickleWriter:
    """Just enough of pickle protocol 2, written by hand: the standard pickler would have to
    import torch to name `torch._utils._rebuild_tensor_v2` and the storage classes."""

    def __init__(self):
        self.out = bytearray(b"\x80\x02")  # PROTO 2

    def global_(self, module: str, name: str):
        self.out += b"c" + f"{module}\n{name}\n".encode("ascii")

    def str_(self, text: str):
        data = text.encode("utf-8")
        self.out += b"X" + struct.pack("<I", len(data)) + data

    def int_(self, value: int):
        if 0 <= value < 256:
            self.out += b"K" + bytes([value])
        elif 0 <= value < 65536:
            self.out += b"M" + struct.pack("<H", value)
        elif -(2 ** 31) <= value < 2 ** 31:
            self.out += b"J" + struct.pack("<i", value)
        else:  # LONG1: little-endian two's complement
            data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
            self.out += b"\x8a" + bytes([len(data)]) + data

    def tuple_of_ints(self, values):
        self.out += b"("
        for v in values:
            self.int_(v)
        self.out += b"t"

    def empty_ordered_dict(self):
        self.global_("collections", "OrderedDict")
        self.out += b")R"  # EMPTY_TUPLE, REDUCE

    def tensor(self, key: str, array: np.ndarray):
        """_rebuild_tensor_v2(storage, 0, size, contiguous stride, False, OrderedDict())"""
        self.global_("torch._utils", "_rebuild_tensor_v2")
        self.out += b"(("  # MARK args, MARK persistent id
        self.str_("storage")
        self.global_("torch", _STORAGE_CLASS[array.dtype])
        self.str_(key)
        self.str_("cpu")
        self.int_(array.size)
        self.out += b"tQ"  # TUPLE, BINPERSID
        self.int_(0)
        self.tuple_of_ints(array.shape)
        self.tuple_of_ints([s // array.itemsize for s in array.strides])
        self.out += b"\x89"  # NEWFALSE: requires_grad
        self.empty_ordered_dict()  # backward hooks
        self.out += b"tR"  # TUPLE, REDUCE

    def state_dict(self, tensors: dict[str, np.ndarray]) -> bytes:
        self.empty_ordered_dict()
        self.out += b"("  # MARK
        for key, (name, array) in enumerate(tensors.items()):
            self.str_(name)
            self.tensor(str(key), array)
        self.out += b"u."  # SETITEMS, STOP
        return bytes(self.out)


def _write_aligned(zf: zipfile.ZipFile, name: str, data: bytes, alignment: int = 64):
    """Store a record uncompressed with its data aligned (as torch does, so it can be
    memory-mapped), padding the local header's extra field; fixed timestamp for determinism."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    start = zf.fp.tell() + 30 + len(name.encode("utf-8")) + 4
    pad = -start % alignment
    info.extra = struct.pack("<HH", 0x4B50, pad) + b"Z" * pad  # an id no reader interprets
    zf.writestr(info, data)


def save_state_dict(path, tensors: dict[str, np.ndarray], archive_name: str = "archive"):
    """Write a state dict as a zip-format torch checkpoint (what torch.save writes since 1.6),
    loadable by `torch.load(path, weights_only=True)`. Tensors are stored contiguously, one
    storage each, in the dict's order."""
    arrays = {}
    for name, array in tensors.items():
        array = np.asarray(array)
        native = array.dtype.newbyteorder("=")
        if native not in _STORAGE_CLASS:
            raise CheckpointError(f"{name}: dtype {array.dtype} has no torch storage here")
        # C order, so the strides pickled are the contiguous ones of the bytes stored.
        arrays[name] = np.array(array, dtype=native, order="C", copy=True)
    pickled = _PickleWriter().state_dict(arrays)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        _write_aligned(zf, f"{archive_name}/data.pkl", pickled)
        _write_aligned(zf, f"{archive_name}/byteorder", b"little")
        for key, array in enumerate(arrays.values()):
            _write_aligned(zf, f"{archive_name}/data/{key}",
                           array.astype(array.dtype.newbyteorder("<")).tobytes())
        _write_aligned(zf, f"{archive_name}/version", b"3\n")


# --- safetensors --------------------------------------------------------------------------

_SAFETENSORS_DTYPES = {
    np.dtype("float64"): "F64",
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
    np.dtype("int16"): "I16",
    np.dtype("int8"): "I8",
    np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}
_SAFETENSORS_NUMPY = {v: k for k, v in _SAFETENSORS_DTYPES.items()}


def save_safetensors(path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None):
    """Write a safetensors file deterministically: tensors sorted by name and stored in that
    order, compact JSON header (`__metadata__` first) padded with spaces to a multiple of 8
    so the data starts 8-byte aligned."""
    header: dict = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise CheckpointError("safetensors metadata must map strings to strings")
        header["__metadata__"] = dict(sorted(metadata.items()))
    blobs = []
    offset = 0
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        dtype = _SAFETENSORS_DTYPES.get(array.dtype.newbyteorder("="))
        if dtype is None:
            raise CheckpointError(f"{name}: dtype {array.dtype} has no safetensors equivalent")
        blob = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def load_safetensors(path, with_metadata: bool = False):
    """Read a safetensors file -> {name: array} (and its metadata when asked). BF16 tensors
    are widened to float32."""
    raw = Path(path).read_bytes()
    if len(raw) < 8:
        raise CheckpointError(f"{path}: too short for a safetensors file")
    (header_len,) = struct.unpack("<Q", raw[:8])
    if 8 + header_len > len(raw):
        raise CheckpointError(f"{path}: header length {header_len} past the end of the file")
    try:
        header = json.loads(raw[8:8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: bad safetensors header ({e})") from e
    metadata = header.pop("__metadata__", None) or {}
    data = memoryview(raw)[8 + header_len:]
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if info["dtype"] == "BF16":
            array = _storage_array(bytes(data[begin:end]), BFLOAT16, False)
        elif info["dtype"] in _SAFETENSORS_NUMPY:
            dtype = _SAFETENSORS_NUMPY[info["dtype"]].newbyteorder("<")
            array = np.frombuffer(data[begin:end], dtype=dtype)
        else:
            raise CheckpointError(f"{path}: {name} has unsupported dtype {info['dtype']}")
        if array.size != int(np.prod(shape, dtype=np.int64)):
            raise CheckpointError(f"{path}: {name} has {array.size} elements for shape {shape}")
        tensors[name] = array.reshape(shape).astype(array.dtype.newbyteorder("="), copy=True)
    return (tensors, metadata) if with_metadata else tensors


def load_weights(path) -> dict[str, np.ndarray]:
    """A state dict from either a torch checkpoint or a .safetensors file."""
    if str(path).endswith(".safetensors"):
        return load_safetensors(path)
    return load_state_dict(path)


# --- CLI ----------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="List the tensors of a torch checkpoint (.pth/.pt, zip or legacy format; "
        "read without torch) or of a .safetensors file.")
    parser.add_argument("file", help="checkpoint or .safetensors file")
    args = parser.parse_args(argv)
    try:
        tensors = load_weights(args.file)
    except (CheckpointError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    width = max((len(n) for n in tensors), default=0)
    total = 0
    for name, array in tensors.items():
        total += array.size
        print(f"{name:<{width}}  {str(array.dtype):<8} {list(array.shape)}")
    print(f"{len(tensors)} tensors, {total} elements")
    return 0


if __name__ == "__main__":
    sys.exit(main())
