"""Kernel UAPI for VFIO and iommufd: struct layouts, ioctl numbers, and the syscall seam.

- :mod:`pciauth.uapi.ioctls`: every ioctl number (computed with ioctl-opt) and flag.
- :mod:`pciauth.uapi.structs`: zeroed structs with their ``size``/``argsz`` set, from the
  cffi module ``pciauth._uapi`` (built from ``cffi_build/uapi_build.py``).
- :mod:`pciauth.uapi.sys`: the one module through which every open, ioctl and mmap of
  VFIO/iommufd goes. Tests replace it wholesale with a fake kernel.
"""
