"""Read a legacy (PyTorch < 1.6, non-zip) torch file without running any pickled code.

Layout: pickle(magic) pickle(protocol) pickle(sys_info) pickle(object, storages as persistent
ids) pickle(storage keys), then per key: int64 element count + raw little-endian bytes.
A restricted unpickler turns every module class into an inert `ModuleRecord` of its state and
rebuilds nothing but tensors; anything else in the file is refused. Each tensor's shape, strides
and offset are checked against its storage's bytes before any tensor is built, so a crafted
layout cannot make a small file cost gigabytes. Used to convert the authors' 2017 releases
(`fader/authors/conversion.py`), which `torch.load` would execute.
"""

import io
import math
import pickle
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """The file is not an authors' checkpoint we can read (corrupt, unsafe or a variant)."""


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class ModuleRecord:
    """A pickled module reduced to its class path and state: no code of the class ever runs."""

    path = "?"

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {}

    @property
    def kind(self) -> str:
        return self.path.rsplit(".", 1)[-1]

    def __repr__(self) -> str:
        return f"<record {self.path}>"


_RECORD_TYPES: dict[str, type[ModuleRecord]] = {}


def _record_type(path: str) -> type[ModuleRecord]:
    if path not in _RECORD_TYPES:
        _RECORD_TYPES[path] = type(path.rsplit(".", 1)[-1], (ModuleRecord,), {"path": path})
    return _RECORD_TYPES[path]


@dataclass
class _StorageType:
    dtype: torch.dtype


@dataclass
class _RootStorage:
    key: str
    dtype: torch.dtype
    numel: int
    data: torch.Tensor | None = None


@dataclass
class _StorageView:
    root: _RootStorage
    start: int  # in elements of the root storage
    end: int


class TensorRef:
    """A tensor to be cut out of a storage once the raw bytes after the pickle are read."""

    def __init__(self, storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> None:
        if not isinstance(storage, _StorageView):
            raise CheckpointError("A tensor in the file does not point to a storage.")
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(map(int, size)), tuple(map(int, stride))

    def __setstate__(self, state: Any) -> None:
        """Parameters of torch 0.3 carry (requires_grad, volatile, hooks): irrelevant here."""

    def check_layout(self) -> None:
        """Refuse a layout that reaches past the storage's bytes or repeats them without bound.

        Runs before any tensor is built: with positive strides, an element count within the
        storage and the last element inside it, a tensor never costs more memory than the bytes
        the file really holds (a crafted stride 0 would turn 48 floats into gigabytes).
        """
        view, data = self.storage, self.storage.root.data
        where = (
            f"A tensor in the file (shape {self.size}, strides {self.stride}, offset {self.offset})"
        )
        if data is None:
            raise CheckpointError("The file ends before the tensor data it announces.")
        if len(self.size) != len(self.stride) or not all(0 <= s < 2**63 for s in self.size):
            raise CheckpointError(f"{where} has a malformed shape; the file is corrupt.")
        numel = math.prod(self.size)
        if numel == 0:
            return
        if any(st <= 0 for s, st in zip(self.size, self.stride, strict=True) if s > 1):
            raise CheckpointError(
                f"{where} has a zero or negative stride, which no saved model has; the file "
                "is corrupt or crafted."
            )
        length = min(view.end, len(data)) - view.start
        if numel > length:
            raise CheckpointError(
                f"{where} claims {numel} elements, more than its storage's {max(length, 0)}; "
                "the file is corrupt or crafted."
            )
        last = self.offset + sum((s - 1) * st for s, st in zip(self.size, self.stride, strict=True))
        if self.offset < 0 or last >= length:
            raise CheckpointError(
                f"{where} reaches outside its storage of {max(length, 0)} elements "
                f"({max(length, 0) * data.dtype.itemsize} bytes); the file is corrupt or crafted."
            )

    def materialize(self) -> torch.Tensor:
        """The tensor, copied out of its storage; `check_layout` has already passed."""
        data = self.storage.root.data
        assert data is not None  # read_legacy_checkpoint checked every tensor's layout
        if any(s == 0 for s in self.size):
            return torch.empty(self.size, dtype=data.dtype)
        return torch.as_strided(
            data, self.size, self.stride, self.storage.start + self.offset
        ).clone()


def _keep_data(data: Any, *_: Any) -> Any:
    return data


def _no_backend() -> None:
    """torch 0.3 pickled each module's `_backend` as a call to this (kept only for the record)."""


# The only callables a checkpoint may name, each replaced by an inert stand-in of ours.
SAFE_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
    ("torch._utils", "_rebuild_tensor"): TensorRef,
    ("torch._utils", "_rebuild_tensor_v2"): TensorRef,
    ("torch._utils", "_rebuild_parameter"): _keep_data,
    ("torch._utils", "_rebuild_parameter_with_state"): _keep_data,
    ("torch.nn.parameter", "Parameter"): _keep_data,
    ("torch.nn.backends.thnn", "_get_thnn_function_backend"): _no_backend,
}


class _DataOnlyUnpickler(pickle.Unpickler):
    """For the header pickles: plain data, no classes or functions at all."""

    def find_class(self, module: str, name: str) -> Any:
        raise CheckpointError(
            f"Refusing to load {module}.{name}: this file asks to run code that no model "
            "checkpoint needs. Do not open it with torch.load either."
        )

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError("Unexpected storage reference in a legacy checkpoint header.")


class RestrictedUnpickler(_DataOnlyUnpickler):
    """Module classes become `ModuleRecord`s, storages become references; all else is refused."""

    def __init__(self, file: io.BufferedIOBase) -> None:
        super().__init__(file, encoding="utf-8")
        self.storages: dict[str, _RootStorage] = {}
        self.tensors: list[TensorRef] = []

    def _tensor(self, *args: Any) -> TensorRef:
        """Every tensor is kept, so each one's layout is checked once its storage is read."""
        self.tensors.append(TensorRef(*args))
        return self.tensors[-1]

    def find_class(self, module: str, name: str) -> Any:
        if SAFE_GLOBALS.get((module, name)) is TensorRef:
            return self._tensor
        if (module, name) in SAFE_GLOBALS:
            return SAFE_GLOBALS[module, name]
        if module in ("torch", "torch.cuda") and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        if module == "src.model" or module.startswith("torch.nn.modules."):
            return _record_type(f"{module}.{name}")
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) == 4 and pid[0] == "module":
            if isinstance(pid[1], type) and issubclass(pid[1], ModuleRecord):
                return pid[1]
        elif isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage":
            _, storage_type, key, _location, numel, view = pid
            if isinstance(storage_type, _StorageType) and isinstance(numel, int) and numel >= 0:
                root = self.storages.setdefault(
                    str(key), _RootStorage(str(key), storage_type.dtype, numel)
                )
                if root.numel != numel or root.dtype != storage_type.dtype:
                    raise CheckpointError(f"Storage {key} is announced twice, differently.")
                if view is None:
                    return _StorageView(root, 0, numel)
                _view_key, offset, view_numel = view
                start, end = int(offset), int(offset) + int(view_numel)
                if not 0 <= start <= end <= numel:
                    raise CheckpointError(f"A view of storage {key} reaches outside it.")
                return _StorageView(root, start, end)
        raise CheckpointError(f"Unexpected persistent reference {str(pid)[:80]} in the file.")


def read_legacy_checkpoint(path: str | Path) -> Any:
    """The object pickled in a legacy torch file, modules as `ModuleRecord`s; runs no file code."""
    path = Path(path)
    data = path.read_bytes()
    if data[:4] == b"PK\x03\x04":
        raise CheckpointError(
            f"{path} is a zip-format torch file (PyTorch ≥ 1.6), not one of the authors' 2017 "
            "releases; our own models are folders with model.safetensors."
        )
    stream = io.BytesIO(data)
    try:
        if _DataOnlyUnpickler(stream).load() != LEGACY_MAGIC:
            raise CheckpointError(
                f"{path} is not a legacy PyTorch checkpoint (wrong magic number)."
            )
        if _DataOnlyUnpickler(stream).load() != LEGACY_PROTOCOL:
            raise CheckpointError(f"{path} uses an unknown legacy PyTorch protocol version.")
        sys_info = _DataOnlyUnpickler(stream).load()
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise CheckpointError(f"{path} was written on a big-endian machine; not supported.")
        unpickler = RestrictedUnpickler(stream)
        obj = unpickler.load()
        keys = _DataOnlyUnpickler(stream).load()
        for key in keys:
            root = unpickler.storages[str(key)]
            (numel,) = struct.unpack("<q", stream.read(8))
            nbytes = root.numel * root.dtype.itemsize
            raw = stream.read(nbytes) if numel == root.numel else b""
            if len(raw) != nbytes:
                raise CheckpointError(
                    f"{path} is truncated or corrupt (storage {key} has {len(raw)} of {nbytes} "
                    "bytes); download it again."
                )
            root.data = (
                torch.frombuffer(bytearray(raw), dtype=root.dtype)
                if nbytes
                else torch.empty(0, dtype=root.dtype)
            )
        for tensor in unpickler.tensors:
            tensor.check_layout()
    except CheckpointError:
        raise
    except Exception as error:
        raise CheckpointError(
            f"{path} is corrupt or truncated ({type(error).__name__}: {error}); download it again."
        ) from error
    return obj
