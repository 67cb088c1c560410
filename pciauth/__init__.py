"""pciauth: prove a PCIe device is what it claims to be, and that its DMA goes where it should.

Light to import: the SPDM stack and cryptography load only when something needs them.
For regression scripts::

    import pciauth

    with pciauth.open("emu") as dev:        # or "0000:01:00.0" as root
        report = dev.auth.authenticate()
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "open"]


def __getattr__(name: str) -> Any:
    # pciauth.open lives in pciauth.api; import it on first use only.
    if name == "open":
        from pciauth.api import open as _open

        return _open
    raise AttributeError(f"module 'pciauth' has no attribute {name!r}")
