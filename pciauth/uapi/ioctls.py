"""VFIO and iommufd ioctl numbers and flags.

Every VFIO and iommufd ioctl is ``_IO(';', nr)``: type ``';'`` (0x3b) and no size
encoded, because each struct carries its own ``argsz``/``size`` as its first field
(FACTS.md section 1). The numbers are computed here from the table below with
ioctl-opt's ``IO``; ``tests/uapi`` pins each one.
"""

from __future__ import annotations

from ioctl_opt import IO

#: The ioctl type of VFIO and iommufd.
IOCTL_TYPE = ord(";")

#: ioctl name -> command number (nr). VFIO_BASE is 100, IOMMUFD_CMD_BASE is 0x80.
NUMBERS: dict[str, int] = {
    # legacy VFIO: container and group
    "VFIO_GET_API_VERSION": 100,
    "VFIO_CHECK_EXTENSION": 101,
    "VFIO_SET_IOMMU": 102,
    "VFIO_GROUP_GET_STATUS": 103,
    "VFIO_GROUP_SET_CONTAINER": 104,
    "VFIO_GROUP_UNSET_CONTAINER": 105,
    "VFIO_GROUP_GET_DEVICE_FD": 106,
    # VFIO device
    "VFIO_DEVICE_GET_INFO": 107,
    "VFIO_DEVICE_GET_REGION_INFO": 108,
    "VFIO_DEVICE_GET_IRQ_INFO": 109,
    "VFIO_DEVICE_SET_IRQS": 110,
    "VFIO_DEVICE_RESET": 111,
    # legacy VFIO type1 IOMMU (container fd)
    "VFIO_IOMMU_GET_INFO": 112,
    "VFIO_IOMMU_MAP_DMA": 113,
    "VFIO_IOMMU_UNMAP_DMA": 114,
    # VFIO device cdev (kernel >= 6.6)
    "VFIO_DEVICE_BIND_IOMMUFD": 118,
    "VFIO_DEVICE_ATTACH_IOMMUFD_PT": 119,
    "VFIO_DEVICE_DETACH_IOMMUFD_PT": 120,
    # iommufd
    "IOMMU_DESTROY": 0x80,
    "IOMMU_IOAS_ALLOC": 0x81,
    "IOMMU_IOAS_ALLOW_IOVAS": 0x82,
    "IOMMU_IOAS_COPY": 0x83,
    "IOMMU_IOAS_IOVA_RANGES": 0x84,
    "IOMMU_IOAS_MAP": 0x85,
    "IOMMU_IOAS_UNMAP": 0x86,
    "IOMMU_OPTION": 0x87,
    "IOMMU_VFIO_IOAS": 0x88,
    "IOMMU_HWPT_ALLOC": 0x89,
    "IOMMU_GET_HW_INFO": 0x8A,
    # iommufd selftest (CONFIG_IOMMUFD_TEST): the in-kernel mock IOMMU
    "IOMMU_TEST_CMD": 0xA0,
}

#: ioctl name -> request number passed to ioctl(2).
IOCTLS: dict[str, int] = {name: IO(IOCTL_TYPE, nr) for name, nr in NUMBERS.items()}

#: request number -> name, for error messages and fake kernels.
NAMES: dict[int, str] = {number: name for name, number in IOCTLS.items()}

globals().update(IOCTLS)

# Names resolved by globals().update above, listed for linters and readers.
VFIO_GET_API_VERSION: int
VFIO_CHECK_EXTENSION: int
VFIO_SET_IOMMU: int
VFIO_GROUP_GET_STATUS: int
VFIO_GROUP_SET_CONTAINER: int
VFIO_GROUP_UNSET_CONTAINER: int
VFIO_GROUP_GET_DEVICE_FD: int
VFIO_DEVICE_GET_INFO: int
VFIO_DEVICE_GET_REGION_INFO: int
VFIO_DEVICE_GET_IRQ_INFO: int
VFIO_DEVICE_SET_IRQS: int
VFIO_DEVICE_RESET: int
VFIO_IOMMU_GET_INFO: int
VFIO_IOMMU_MAP_DMA: int
VFIO_IOMMU_UNMAP_DMA: int
VFIO_DEVICE_BIND_IOMMUFD: int
VFIO_DEVICE_ATTACH_IOMMUFD_PT: int
VFIO_DEVICE_DETACH_IOMMUFD_PT: int
IOMMU_DESTROY: int
IOMMU_IOAS_ALLOC: int
IOMMU_IOAS_ALLOW_IOVAS: int
IOMMU_IOAS_COPY: int
IOMMU_IOAS_IOVA_RANGES: int
IOMMU_IOAS_MAP: int
IOMMU_IOAS_UNMAP: int
IOMMU_OPTION: int
IOMMU_VFIO_IOAS: int
IOMMU_HWPT_ALLOC: int
IOMMU_GET_HW_INFO: int
IOMMU_TEST_CMD: int

# ---- flags and constants (linux/vfio.h, linux/iommufd.h) ----
VFIO_API_VERSION = 0
VFIO_TYPE1_IOMMU = 1
VFIO_TYPE1v2_IOMMU = 3

VFIO_GROUP_FLAGS_VIABLE = 1 << 0
VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1

VFIO_IOMMU_INFO_PGSIZES = 1 << 0
VFIO_IOMMU_INFO_CAPS = 1 << 1
VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1

VFIO_DMA_MAP_FLAG_READ = 1 << 0
VFIO_DMA_MAP_FLAG_WRITE = 1 << 1

VFIO_DEVICE_FLAGS_RESET = 1 << 0
VFIO_DEVICE_FLAGS_PCI = 1 << 1

VFIO_REGION_INFO_FLAG_READ = 1 << 0
VFIO_REGION_INFO_FLAG_WRITE = 1 << 1
VFIO_REGION_INFO_FLAG_MMAP = 1 << 2
VFIO_REGION_INFO_FLAG_CAPS = 1 << 3

#: VFIO PCI region indexes: BAR0..BAR5 are 0..5.
VFIO_PCI_BAR0_REGION_INDEX = 0
VFIO_PCI_BAR5_REGION_INDEX = 5
VFIO_PCI_ROM_REGION_INDEX = 6
VFIO_PCI_CONFIG_REGION_INDEX = 7

IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0
IOMMU_IOAS_MAP_WRITEABLE = 1 << 1
IOMMU_IOAS_MAP_READABLE = 1 << 2

#: IOMMU_IOAS_UNMAP with iova=0 and this length unmaps everything.
IOMMU_UNMAP_ALL_LENGTH = (1 << 64) - 1

#: IOMMU_GET_HW_INFO out_data_type values.
IOMMU_HW_INFO_TYPES: dict[int, str] = {
    0: "none",
    1: "intel-vtd",
    2: "arm-smmuv3",
    3: "tegra241-cmdqv",
    4: "amd",
    0xFEEDBEEF: "selftest",
}

# iommufd selftest operations (drivers/iommu/iommufd/iommufd_test.h; not a stable UAPI,
# but these first three have kept their values since 6.2).
IOMMU_TEST_OP_ADD_RESERVED = 1
IOMMU_TEST_OP_MOCK_DOMAIN = 2
IOMMU_TEST_OP_MD_CHECK_MAP = 3
