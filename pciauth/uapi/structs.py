"""Zero-filled UAPI structs with their size field set.

The kernel reads ``argsz`` (VFIO) or ``size`` (iommufd) to learn how much of the
struct the caller knows; iommufd refuses non-zero bytes it does not know (E2BIG) and
both refuse a size that is too short (EINVAL). :func:`new` always zero-fills and sets
the size, so callers only fill the fields they mean.
"""

from __future__ import annotations

from typing import Any

from pciauth.errors import HostNotReady

try:
    from pciauth._uapi import ffi, lib
except ImportError as exc:  # pragma: no cover - only when the package was not built
    raise HostNotReady(
        f"the compiled UAPI module pciauth._uapi is missing ({exc})",
        hint="install pciauth with `pip install .` (needs gcc and the Python headers), "
        "or build it in place with `python cffi_build/uapi_build.py`",
    ) from None

__all__ = ["ffi", "lib", "new", "new_array", "sizeof", "size_field", "addressof", "to_bytes"]


def size_field(ctype: str) -> str:
    """The name of the struct's leading size field: ``argsz`` (VFIO) or ``size`` (iommufd)."""
    fields = ffi.typeof(_struct(ctype)).fields
    first = fields[0][0]
    if first not in ("argsz", "size"):
        raise ValueError(f"{ctype} has no leading size field")
    return first


def _struct(name: str) -> str:
    return name if name.startswith(("struct ", "union ")) else f"struct {name}"


def sizeof(name: str) -> int:
    """``sizeof(struct name)`` in bytes."""
    return ffi.sizeof(_struct(name))


def new(name: str, *, alloc_size: int | None = None, **fields: Any) -> Any:
    """A new zeroed ``struct name *`` with argsz/size set (to ``alloc_size`` if given).

    ``alloc_size`` may be larger than the struct (room for a capability chain behind it);
    the allocation is then that large, zeroed. ``fields`` are set after the size field,
    so a struct field called ``size`` (``vfio_iommu_type1_dma_map.size``) is a field
    here. Unknown field names raise AttributeError.
    """
    ctype = _struct(name)
    base = ffi.sizeof(ctype)
    total = base if alloc_size is None else alloc_size
    if total < base:
        raise ValueError(f"alloc_size {total} is smaller than {ctype} ({base} bytes)")
    if total == base:
        obj = ffi.new(ctype + " *")
    else:
        raw = ffi.new("uint8_t[]", total)
        obj = ffi.cast(ctype + " *", raw)
        # Keep the storage alive as long as the struct pointer.
        obj = ffi.gc(obj, lambda _p, _keep=raw: None)
    setattr(obj, size_field(ctype), total)
    for key, value in fields.items():
        setattr(obj, key, value)
    return obj


def new_array(ctype: str, count: int) -> Any:
    """A zeroed C array of ``count`` items of ``ctype`` (e.g. ``struct iommu_iova_range``)."""
    if count < 0:
        raise ValueError("negative array length")
    return ffi.new(f"{_struct(ctype) if not ctype.endswith('_t') else ctype}[]", count)


def addressof(cdata: Any) -> int:
    """The address of a cdata object, for the u64 pointer fields of iommufd structs."""
    return int(ffi.cast("uintptr_t", cdata))


def to_bytes(ptr: Any, length: int | None = None) -> bytes:
    """A copy of the bytes behind a struct pointer (the whole allocation by default)."""
    n = length if length is not None else ffi.sizeof(ptr[0])
    return bytes(ffi.buffer(ptr, n))
