"""Read a PyTorch state dict saved in the legacy (pre-1.6, non-zip) format, without PyTorch.

The file is five pickles followed by raw tensor data:

    magic number, protocol version, system info,
    the state dict (tensors as `_rebuild_tensor_v2(storage, offset, size, stride, ...)`, storages as
    persistent ids `("storage", <type>, key, location, numel)`),
    the list of storage keys in the order their data follows,
    then per storage: int64 element count + that many little-endian elements.

Unpickling runs code chosen by the file, so this reader allows exactly the five globals such a file
needs (OrderedDict, the tensor rebuild function and the float/long/int storage types), maps each to a
harmless stand-in, bounds every count by the file's size, and returns plain numpy arrays. Anything else
in the file is a `TorchFileError` that names what was found.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
from pathlib import Path

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
MAX_FILE_BYTES = 1 << 30  # far above any backbone we serve; refuse before reading a huge file

# PyTorch storage class -> numpy little-endian dtype.
STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
}


class TorchFileError(ValueError):
    """The file is not a legacy PyTorch state dict this reader accepts; the message says why."""


class _Storage:
    """A storage named by the pickle; its bytes are attached after the pickles are read."""

    def __init__(self, key: str, dtype: np.dtype, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel
        self.data: np.ndarray | None = None


class _TensorRef:
    """`_rebuild_tensor_v2(storage, offset, size, stride, ...)`, resolved to an array later."""

    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, int(offset), tuple(size), tuple(stride)

    def to_array(self) -> np.ndarray:
        data = self.storage.data
        assert data is not None
        if self.offset < 0 or any(n < 0 for n in self.size) or any(s < 0 for s in self.stride):
            raise TorchFileError(f"negative offset, size or stride in a tensor of size {self.size}")
        if len(self.stride) != len(self.size):
            raise TorchFileError(f"a tensor of size {self.size} has stride {self.stride}")
        if 0 in self.size:
            return np.zeros(self.size, data.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if last >= len(data):
            raise TorchFileError(f"a tensor of size {self.size} reaches outside its storage of {len(data)}")
        item = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], shape=self.size, strides=[s * item for s in self.stride], writeable=False)
        return np.array(view)  # a copy: contiguous, owns its memory


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    if not isinstance(storage, _Storage):
        raise TorchFileError("a tensor whose storage is not a storage")
    return _TensorRef(storage, storage_offset, size, stride)


class _StorageType:
    def __init__(self, name: str):
        self.name = name


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals a legacy state dict uses."""

    def __init__(self, file, storages: dict[str, _Storage], limit: int):
        super().__init__(file)
        self.storages = storages
        self.limit = limit

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise TorchFileError(f"refusing to load {module}.{name}: not part of a plain state dict")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise TorchFileError(f"unexpected persistent id {str(pid)[:80]}")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(storage_type, _StorageType):
            raise TorchFileError("storage of an unknown type")
        key, numel = str(key), int(numel)
        dtype = STORAGE_DTYPES[storage_type.name]
        if numel < 0 or numel * dtype.itemsize > self.limit:
            raise TorchFileError(f"storage {key} claims {numel} elements, more than the file holds")
        if key not in self.storages:
            self.storages[key] = _Storage(key, dtype, numel)
        return self.storages[key]


def _plain_load(f):
    """A pickle that must hold only plain data (numbers, strings, dicts, lists)."""

    class Plain(pickle.Unpickler):
        def find_class(self, module, name):
            raise TorchFileError(f"refusing to load {module}.{name} in a file header")

    return Plain(f).load()


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Parameters and buffers of a legacy PyTorch state dict file, as numpy arrays by name.

    Raises TorchFileError (missing file, zip-format or other file, unexpected content, truncated data).
    """
    path = Path(path)
    if not path.is_file():
        raise TorchFileError(f"{path} does not exist")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise TorchFileError(f"{path} is {size} bytes, over the {MAX_FILE_BYTES}-byte limit")
    raw = path.read_bytes()
    if raw[:2] == b"PK":
        raise TorchFileError(f"{path} is a zip-format PyTorch file; only the legacy format is read")
    f = io.BytesIO(raw)
    try:
        if _plain_load(f) != MAGIC_NUMBER:
            raise TorchFileError(f"{path} is not a legacy PyTorch file (wrong magic number)")
        if _plain_load(f) != PROTOCOL_VERSION:
            raise TorchFileError(f"{path}: unsupported PyTorch protocol version")
        sys_info = _plain_load(f)
        if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
            raise TorchFileError(f"{path} was saved on a big-endian machine")
        storages: dict[str, _Storage] = {}
        state = _StateDictUnpickler(f, storages, size).load()
        keys = _plain_load(f)
    except TorchFileError as exc:
        raise TorchFileError(f"{path}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise TorchFileError(f"{path} is not a readable legacy PyTorch file: {exc}") from None
    if not isinstance(state, dict) or not isinstance(keys, list):
        raise TorchFileError(f"{path} does not hold a state dict")
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise TorchFileError(f"{path}: data for storage {key} that no tensor uses")
        header = f.read(8)
        if len(header) != 8:
            raise TorchFileError(f"{path} is truncated (storage {key})")
        (numel,) = struct.unpack("<q", header)
        if numel != storage.numel:
            raise TorchFileError(f"{path}: storage {key} holds {numel} elements, the pickle says {storage.numel}")
        nbytes = numel * storage.dtype.itemsize
        chunk = f.read(nbytes)
        if len(chunk) != nbytes:
            raise TorchFileError(f"{path} is truncated (storage {key})")
        storage.data = np.frombuffer(chunk, dtype=storage.dtype)
    missing = [k for k, s in storages.items() if s.data is None]
    if missing:
        raise TorchFileError(f"{path} is truncated: no data for storages {missing[:3]}")
    out: dict[str, np.ndarray] = {}
    for name, value in state.items():
        if not isinstance(value, _TensorRef):
            raise TorchFileError(f"{path}: entry {name!r} is not a tensor")
        out[str(name)] = value.to_array()
    return out
