"""DoeTransport: the Transport seam over a DOE mailbox.

A plain SPDM message travels as a CMA data object (PCI-SIG vendor 0x0001, type 1); a DSP0277
secured message as a secured CMA object (type 2). DOE pads every object to a dword, so the
response may carry up to three zero bytes after the SPDM message: SPDM parsers size messages
from their own fields (as libspdm does), and secured records carry their own length.
"""

from __future__ import annotations

from pciauth.doe.mailbox import TYPE_CMA, TYPE_SECURED_CMA, VENDOR_PCISIG, DoeMailbox


class DoeTransport:
    """Carry SPDM messages through ``mailbox``; count exchanges for reports."""

    def __init__(self, mailbox: DoeMailbox) -> None:
        self.mailbox = mailbox
        self.exchanges = 0

    def exchange(self, message: bytes, *, secured: bool = False) -> bytes:
        self.exchanges += 1
        type_ = TYPE_SECURED_CMA if secured else TYPE_CMA
        return self.mailbox.exchange_object(VENDOR_PCISIG, type_, bytes(message))

    def close(self) -> None:
        """The mailbox belongs to the caller (its config space is closed with the target)."""
