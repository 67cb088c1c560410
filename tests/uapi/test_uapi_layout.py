"""Pin every VFIO/iommufd ioctl number and every struct's size and field offsets.

The expected values are FACTS.md section 1 (read from the kernel UAPI headers), written
out here by hand: a change in cffi_build/uapi_build.py or pciauth/uapi/ioctls.py that
moves any of them fails this test.
"""

from __future__ import annotations

import pytest

from pciauth.uapi import ioctls, structs
from pciauth.uapi.structs import ffi

IOCTL_NUMBERS = {
    "VFIO_GET_API_VERSION": 0x3B64,
    "VFIO_CHECK_EXTENSION": 0x3B65,
    "VFIO_SET_IOMMU": 0x3B66,
    "VFIO_GROUP_GET_STATUS": 0x3B67,
    "VFIO_GROUP_SET_CONTAINER": 0x3B68,
    "VFIO_GROUP_UNSET_CONTAINER": 0x3B69,
    "VFIO_GROUP_GET_DEVICE_FD": 0x3B6A,
    "VFIO_DEVICE_GET_INFO": 0x3B6B,
    "VFIO_DEVICE_GET_REGION_INFO": 0x3B6C,
    "VFIO_DEVICE_GET_IRQ_INFO": 0x3B6D,
    "VFIO_DEVICE_SET_IRQS": 0x3B6E,
    "VFIO_DEVICE_RESET": 0x3B6F,
    "VFIO_IOMMU_GET_INFO": 0x3B70,
    "VFIO_IOMMU_MAP_DMA": 0x3B71,
    "VFIO_IOMMU_UNMAP_DMA": 0x3B72,
    "VFIO_DEVICE_BIND_IOMMUFD": 0x3B76,
    "VFIO_DEVICE_ATTACH_IOMMUFD_PT": 0x3B77,
    "VFIO_DEVICE_DETACH_IOMMUFD_PT": 0x3B78,
    "IOMMU_DESTROY": 0x3B80,
    "IOMMU_IOAS_ALLOC": 0x3B81,
    "IOMMU_IOAS_ALLOW_IOVAS": 0x3B82,
    "IOMMU_IOAS_COPY": 0x3B83,
    "IOMMU_IOAS_IOVA_RANGES": 0x3B84,
    "IOMMU_IOAS_MAP": 0x3B85,
    "IOMMU_IOAS_UNMAP": 0x3B86,
    "IOMMU_OPTION": 0x3B87,
    "IOMMU_VFIO_IOAS": 0x3B88,
    "IOMMU_HWPT_ALLOC": 0x3B89,
    "IOMMU_GET_HW_INFO": 0x3B8A,
    "IOMMU_TEST_CMD": 0x3BA0,
}

# struct -> (sizeof, {field: offset}); x86-64 / arm64.
LAYOUTS = {
    "vfio_group_status": (8, {"argsz": 0, "flags": 4}),
    "vfio_info_cap_header": (8, {"id": 0, "version": 2, "next": 4}),
    "vfio_iommu_type1_info": (24, {"argsz": 0, "flags": 4, "iova_pgsizes": 8, "cap_offset": 16, "pad": 20}),
    "vfio_iova_range": (16, {"start": 0, "end": 8}),
    "vfio_iommu_type1_info_cap_iova_range": (
        16,
        {"header": 0, "nr_iovas": 8, "reserved": 12, "iova_ranges": 16},
    ),
    "vfio_iommu_type1_dma_map": (32, {"argsz": 0, "flags": 4, "vaddr": 8, "iova": 16, "size": 24}),
    "vfio_iommu_type1_dma_unmap": (24, {"argsz": 0, "flags": 4, "iova": 8, "size": 16, "data": 24}),
    "vfio_device_info": (
        24,
        {"argsz": 0, "flags": 4, "num_regions": 8, "num_irqs": 12, "cap_offset": 16, "pad": 20},
    ),
    "vfio_region_info": (
        32,
        {"argsz": 0, "flags": 4, "index": 8, "cap_offset": 12, "size": 16, "offset": 24},
    ),
    "vfio_device_bind_iommufd": (16, {"argsz": 0, "flags": 4, "iommufd": 8, "out_devid": 12}),
    "vfio_device_attach_iommufd_pt": (12, {"argsz": 0, "flags": 4, "pt_id": 8}),
    "vfio_device_detach_iommufd_pt": (8, {"argsz": 0, "flags": 4}),
    "iommu_destroy": (8, {"size": 0, "id": 4}),
    "iommu_ioas_alloc": (12, {"size": 0, "flags": 4, "out_ioas_id": 8}),
    "iommu_iova_range": (16, {"start": 0, "last": 8}),
    "iommu_ioas_iova_ranges": (
        32,
        {
            "size": 0,
            "ioas_id": 4,
            "num_iovas": 8,
            "__reserved": 12,
            "allowed_iovas": 16,
            "out_iova_alignment": 24,
        },
    ),
    "iommu_ioas_allow_iovas": (
        24,
        {"size": 0, "ioas_id": 4, "num_iovas": 8, "__reserved": 12, "allowed_iovas": 16},
    ),
    "iommu_ioas_map": (
        40,
        {"size": 0, "flags": 4, "ioas_id": 8, "__reserved": 12, "user_va": 16, "length": 24, "iova": 32},
    ),
    "iommu_ioas_unmap": (24, {"size": 0, "ioas_id": 4, "iova": 8, "length": 16}),
    "iommu_hwpt_alloc": (
        48,
        {
            "size": 0,
            "flags": 4,
            "dev_id": 8,
            "pt_id": 12,
            "out_hwpt_id": 16,
            "__reserved": 20,
            "data_type": 24,
            "data_len": 28,
            "data_uptr": 32,
            "fault_id": 40,
            "__reserved2": 44,
        },
    ),
    "iommu_hw_info": (
        40,
        {
            "size": 0,
            "flags": 4,
            "dev_id": 8,
            "data_len": 12,
            "data_uptr": 16,
            "out_data_type": 24,
            "out_max_pasid_log2": 28,
            "__reserved": 29,
            "out_capabilities": 32,
        },
    ),
}


@pytest.mark.parametrize("name", sorted(IOCTL_NUMBERS))
def test_ioctl_number(name: str) -> None:
    assert ioctls.IOCTLS[name] == IOCTL_NUMBERS[name]
    assert getattr(ioctls, name) == IOCTL_NUMBERS[name]
    assert ioctls.NAMES[IOCTL_NUMBERS[name]] == name


def test_every_ioctl_is_pinned() -> None:
    assert set(ioctls.IOCTLS) == set(IOCTL_NUMBERS)


def test_ioctls_encode_no_size_and_type_semicolon() -> None:
    for number in ioctls.IOCTLS.values():
        assert number >> 16 == 0, "VFIO/iommufd ioctls carry no size or direction bits"
        assert (number >> 8) & 0xFF == ord(";")


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_struct_layout(name: str) -> None:
    size, offsets = LAYOUTS[name]
    assert structs.sizeof(name) == size
    ctype = ffi.typeof(f"struct {name}")
    got = {fname: f.offset for fname, f in ctype.fields}
    assert got == offsets


def test_iova_range_cap_element_layout() -> None:
    cap = ffi.typeof("struct vfio_iommu_type1_info_cap_iova_range")
    (item_type,) = [f.type.item for name, f in cap.fields if name == "iova_ranges"]
    assert ffi.sizeof(item_type) == 16


def test_test_cmd_prefix_and_room() -> None:
    # IOMMU_TEST_CMD: size, op, id, __reserved, then the union at 16; ``last`` past every
    # kernel's union (the largest, ``dirty``, is 48 bytes on 6.12+).
    ctype = ffi.typeof("struct iommu_test_cmd")
    offsets = {name: f.offset for name, f in ctype.fields}
    assert offsets["size"] == 0 and offsets["op"] == 4 and offsets["id"] == 8
    assert offsets["mock_domain"] == 16 and offsets["check_map"] == 16
    assert offsets["last"] >= 16 + 48
    cmd = structs.new("iommu_test_cmd", op=ioctls.IOMMU_TEST_OP_MOCK_DOMAIN, id=5)
    assert cmd.size == structs.sizeof("iommu_test_cmd")
    assert cmd.mock_domain.out_idev_id == 0


def test_new_zero_fills_and_sets_size() -> None:
    m = structs.new("iommu_ioas_map", ioas_id=3, length=4096)
    assert m.size == 40 and m.ioas_id == 3 and m.length == 4096
    assert structs.to_bytes(m)[4:8] == b"\0\0\0\0"
    info = structs.new("vfio_iommu_type1_info", alloc_size=256)
    assert info.argsz == 256
    assert structs.to_bytes(info, 256) == (256).to_bytes(4, "little") + bytes(252)
    with pytest.raises(ValueError):
        structs.new("iommu_ioas_map", alloc_size=8)
    with pytest.raises(AttributeError):
        structs.new("iommu_destroy", no_such_field=1)
    # A field called ``size`` is the field, not the allocation.
    dma = structs.new("vfio_iommu_type1_dma_map", size=8192)
    assert dma.argsz == 32 and dma.size == 8192


def test_size_field_names() -> None:
    assert structs.size_field("vfio_region_info") == "argsz"
    assert structs.size_field("iommu_ioas_map") == "size"
    with pytest.raises(ValueError):
        structs.size_field("vfio_iova_range")
