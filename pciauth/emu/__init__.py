"""The built-in emulated PCI device: config space, DOE mailboxes, SPDM responder, DMA BAR.

``EmulatedDevice(index)`` is ``emu:<index>`` on the command line (see ``docs/doe.md`` for the
instances and knobs). ``pciauth.emu.iommu`` and ``pciauth.emu.dma_engine`` belong to the DMA
area; the device picks them up when present.
"""

from pciauth.emu.config import EmulatedConfigSpace
from pciauth.emu.device import KNOBS, PROFILES, EmulatedDevice, Profile
from pciauth.emu.doe import FAULTS, EmulatedDoe, FaultPlan

__all__ = [
    "FAULTS",
    "KNOBS",
    "PROFILES",
    "EmulatedConfigSpace",
    "EmulatedDevice",
    "EmulatedDoe",
    "FaultPlan",
    "Profile",
]
