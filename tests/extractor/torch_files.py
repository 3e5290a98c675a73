"""Write legacy-format PyTorch state dict files without PyTorch, for the reader's tests.

Stand-in `torch` objects are registered in sys.modules only while pickling, so the pickle names the
same globals a real `torch.save(..., _use_new_zipfile_serialization=False)` file names.
"""

from __future__ import annotations

import collections
import pickle
import struct
import sys
import types
from contextlib import contextmanager
from pathlib import Path

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_NAMES = {np.dtype("float32"): "FloatStorage", np.dtype("int64"): "LongStorage"}


@contextmanager
def _fake_torch():
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # never called: only its name is pickled
        raise AssertionError

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in STORAGE_NAMES.values():
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    torch._utils = utils
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        yield torch, utils
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class _Tensor:
    def __init__(self, key: str, array: np.ndarray, utils, storage_type):
        self.key, self.array, self.utils, self.storage_type = key, array, utils, storage_type

    def __reduce__(self):
        strides = tuple(s // self.array.itemsize for s in self.array.strides)
        return (self.utils._rebuild_tensor_v2,
                (_StorageRef(self.key, self.storage_type, self.array.size), 0, self.array.shape, strides, False,
                 collections.OrderedDict()))


class _StorageRef:
    def __init__(self, key, storage_type, numel):
        self.key, self.storage_type, self.numel = key, storage_type, numel


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _StorageRef):
            return ("storage", obj.storage_type, obj.key, "cpu", obj.numel)
        return None


def write_legacy_pth(path: Path, state: dict[str, np.ndarray]) -> Path:
    """A legacy PyTorch file holding `state` (float32 / int64 arrays), as torch.save wrote it before 1.6."""
    with _fake_torch() as (torch, utils), open(path, "wb") as f:
        arrays = {k: np.array(v, order="C") for k, v in state.items()}
        for header in (MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(header, f, protocol=2)
        tensors = collections.OrderedDict(
            (k, _Tensor(str(i), a, utils, getattr(torch, STORAGE_NAMES[a.dtype]))) for i, (k, a) in enumerate(arrays.items()))
        _Pickler(f, protocol=2).dump(tensors)
        pickle.dump([str(i) for i in range(len(arrays))], f, protocol=2)
        for a in arrays.values():
            f.write(struct.pack("<q", a.size))
            f.write(a.astype(a.dtype.newbyteorder("<")).tobytes())
    return path
