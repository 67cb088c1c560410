"""DMA for pciauth: buffers, the private/shared IOVA windows, sessions and device drivers.

- :mod:`pciauth.dma.buffer`: page-aligned anonymous buffers (optionally 2 MiB hugepages), memlock
  checks, fast pattern fill and verify.
- :mod:`pciauth.dma.iova`: the IOVA allocator split by the threshold X into a private window
  ``[0, X)`` (T=1) and a shared window ``[X, top)`` (T=0), and the policy that refuses changing X
  under live mappings.
- :mod:`pciauth.dma.threshold`: the platform knob (SEV-TIO ``tsm_vtom``) or pciauth's own
  enforcement.
- :mod:`pciauth.dma.session`: buffers mapped through an IOMMU backend; everything released on close.
- :mod:`pciauth.dma.drivers`: device drivers (emulated engine, QEMU edu, NVMe Identify) in a table.

Nothing heavy is imported here; import the submodule you need.
"""

from __future__ import annotations

__all__ = ["buffer", "drivers", "iova", "session", "threshold"]
