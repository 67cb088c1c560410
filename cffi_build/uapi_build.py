"""Build ``pciauth._uapi``: the VFIO and iommufd structs as an out-of-line cffi module.

The layouts come from the kernel UAPI headers ``linux/vfio.h`` and ``linux/iommufd.h``
(see docs/vfio.md and FACTS.md section 1). They are declared here, not included, so
the build needs only gcc and the Python headers: no kernel headers, any distro.
``tests/uapi`` pins every size and offset and compares them with real headers when
the machine has them.

Each struct is the newest layout pciauth knows. The kernel accepts a larger struct
as long as the bytes it does not know are zero (``copy_struct_from_user``), and
pciauth zero-fills everything (``pciauth.uapi.structs.new``); where an older kernel
needs a shorter ``size`` the backend sets it (see ``pciauth/iommu``).

Also compiled in: two tiny ioctl wrappers that return ``-errno`` instead of
touching ``errno``, so that ``pciauth.uapi.sys`` can raise a precise error.

Run ``python cffi_build/uapi_build.py`` from the repository root to build in place;
``pip install .`` does it through setup.py's ``cffi_modules``.
"""

from __future__ import annotations

import os

from cffi import FFI

# The kernel's __u32/__u64 are spelled uint32_t/uint64_t here (Python.h already pulls in
# linux/types.h on some systems). __aligned_u64 becomes pa_aligned_u64: 8-byte aligned
# on every architecture; on x86-64 and arm64 that is uint64_t's alignment anyway.
_TYPES_C = """
typedef uint64_t pa_aligned_u64 __attribute__((aligned(8)));
"""

_TYPES_CDEF = """
typedef uint64_t pa_aligned_u64;
"""

# The structs, shared by the cdef and the C source (one text, so they cannot drift).
STRUCTS = """
/* ---- legacy VFIO: container and group (linux/vfio.h) ---- */
struct vfio_group_status {
    uint32_t argsz;
    uint32_t flags;
};

struct vfio_info_cap_header {
    uint16_t id;
    uint16_t version;
    uint32_t next;
};

struct vfio_iommu_type1_info {
    uint32_t argsz;
    uint32_t flags;
    uint64_t iova_pgsizes;
    uint32_t cap_offset;
    uint32_t pad;
};

struct vfio_iova_range {
    uint64_t start;
    uint64_t end;
};

struct vfio_iommu_type1_info_cap_iova_range {
    struct vfio_info_cap_header header;
    uint32_t nr_iovas;
    uint32_t reserved;
    struct vfio_iova_range iova_ranges[];
};

struct vfio_iommu_type1_dma_map {
    uint32_t argsz;
    uint32_t flags;
    uint64_t vaddr;
    uint64_t iova;
    uint64_t size;
};

struct vfio_iommu_type1_dma_unmap {
    uint32_t argsz;
    uint32_t flags;
    uint64_t iova;
    uint64_t size;
    uint8_t data[];
};

/* ---- VFIO device (both paths) ---- */
struct vfio_device_info {
    uint32_t argsz;
    uint32_t flags;
    uint32_t num_regions;
    uint32_t num_irqs;
    uint32_t cap_offset;
    uint32_t pad;
};

struct vfio_region_info {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t cap_offset;
    pa_aligned_u64 size;
    pa_aligned_u64 offset;
};

/* ---- VFIO device cdev (kernel >= 6.6) ---- */
struct vfio_device_bind_iommufd {
    uint32_t argsz;
    uint32_t flags;
    int32_t iommufd;
    uint32_t out_devid;
};

struct vfio_device_attach_iommufd_pt {
    uint32_t argsz;
    uint32_t flags;
    uint32_t pt_id;
};

struct vfio_device_detach_iommufd_pt {
    uint32_t argsz;
    uint32_t flags;
};

/* ---- iommufd (linux/iommufd.h, kernel >= 6.2) ---- */
struct iommu_destroy {
    uint32_t size;
    uint32_t id;
};

struct iommu_ioas_alloc {
    uint32_t size;
    uint32_t flags;
    uint32_t out_ioas_id;
};

struct iommu_iova_range {
    pa_aligned_u64 start;
    pa_aligned_u64 last;
};

struct iommu_ioas_iova_ranges {
    uint32_t size;
    uint32_t ioas_id;
    uint32_t num_iovas;
    uint32_t __reserved;
    pa_aligned_u64 allowed_iovas;
    pa_aligned_u64 out_iova_alignment;
};

struct iommu_ioas_allow_iovas {
    uint32_t size;
    uint32_t ioas_id;
    uint32_t num_iovas;
    uint32_t __reserved;
    pa_aligned_u64 allowed_iovas;
};

struct iommu_ioas_map {
    uint32_t size;
    uint32_t flags;
    uint32_t ioas_id;
    uint32_t __reserved;
    pa_aligned_u64 user_va;
    pa_aligned_u64 length;
    pa_aligned_u64 iova;
};

struct iommu_ioas_unmap {
    uint32_t size;
    uint32_t ioas_id;
    pa_aligned_u64 iova;
    pa_aligned_u64 length;
};

struct iommu_hwpt_alloc {
    uint32_t size;
    uint32_t flags;
    uint32_t dev_id;
    uint32_t pt_id;
    uint32_t out_hwpt_id;
    uint32_t __reserved;
    uint32_t data_type;
    uint32_t data_len;
    pa_aligned_u64 data_uptr;
    uint32_t fault_id;
    uint32_t __reserved2;
};

struct iommu_hw_info {
    uint32_t size;
    uint32_t flags;
    uint32_t dev_id;
    uint32_t data_len;
    pa_aligned_u64 data_uptr;
    uint32_t out_data_type;
    uint8_t out_max_pasid_log2;
    uint8_t __reserved[3];
    pa_aligned_u64 out_capabilities;
};

/* ---- iommufd selftest (CONFIG_IOMMUFD_TEST, drivers/iommu/iommufd/iommufd_test.h) ----
 * Not a stable UAPI: only the first operations are used (ADD_RESERVED=1, MOCK_DOMAIN=2,
 * MD_CHECK_MAP=3). The union is padded past every kernel's size; the kernel accepts the
 * larger struct because the extra bytes stay zero. */
struct iommu_test_cmd {
    uint32_t size;
    uint32_t op;
    uint32_t id;
    uint32_t __reserved;
    union {
        struct {
            pa_aligned_u64 start;
            pa_aligned_u64 length;
        } add_reserved;
        struct {
            uint32_t out_stdev_id;
            uint32_t out_hwpt_id;
            uint32_t out_idev_id;
        } mock_domain;
        struct {
            uint32_t out_stdev_id;
            uint32_t out_hwpt_id;
            uint32_t out_idev_id;
            uint32_t dev_flags;
        } mock_domain_flags;
        struct {
            pa_aligned_u64 iova;
            pa_aligned_u64 length;
            pa_aligned_u64 uptr;
        } check_map;
        uint8_t __pad[96];
    };
    uint32_t last;
};
"""

_FUNCS_CDEF = """
int pciauth_ioctl_ptr(int fd, unsigned long request, void *arg);
int pciauth_ioctl_int(int fd, unsigned long request, unsigned long arg);
"""

_FUNCS_C = """
#include <errno.h>
#include <sys/ioctl.h>

/* ioctl with a pointer argument; returns the result, or -errno on failure. */
static int pciauth_ioctl_ptr(int fd, unsigned long request, void *arg)
{
    int r = ioctl(fd, request, arg);
    return r < 0 ? -errno : r;
}

/* ioctl with an integer argument (VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU). */
static int pciauth_ioctl_int(int fd, unsigned long request, unsigned long arg)
{
    int r = ioctl(fd, request, arg);
    return r < 0 ? -errno : r;
}
"""

ffibuilder = FFI()
ffibuilder.cdef(_TYPES_CDEF + STRUCTS + _FUNCS_CDEF)
ffibuilder.set_source(
    "pciauth._uapi",
    "#include <stdint.h>\n" + _TYPES_C + STRUCTS + _FUNCS_C,
)

if __name__ == "__main__":
    # Build next to the sources: <repo>/pciauth/_uapi.*.so
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ffibuilder.compile(tmpdir=root, verbose=False)
