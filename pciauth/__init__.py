"""pciauth: prove a PCIe device is what it claims to be, and that its DMA goes where it should.

Light to import: the SPDM stack and cryptography load only when a command needs them.
"""

from __future__ import annotations

__version__ = "0.1.0"
