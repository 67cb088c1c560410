"""The Transport seam: carry one SPDM message to a responder and return its answer.

The SPDM requester and responder never do I/O. A transport moves bytes:
- ``pciauth.doe.DoeTransport``: a PCIe DOE mailbox (CMA objects, type 1; secured, type 2);
- ``pciauth.spdm.socket``: the spdm-emu TCP protocol with PCI_DOE framing;
- :class:`CallableTransport`: an in-memory pipe (a responder's ``handle``), for tests;
- recording and replaying wrappers (``pciauth.doe.record``).

``secured=True`` marks a DSP0277 secured message (DOE data object type 2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable


@runtime_checkable
class Transport(Protocol):
    def exchange(self, message: bytes, *, secured: bool = False) -> bytes:
        """Send one SPDM (or secured SPDM) message; return the response message."""
        ...

    def close(self) -> None: ...


class CallableTransport:
    """Hands each message to ``handler(message, secured)``; an in-memory pipe."""

    def __init__(self, handler: Callable[..., bytes]) -> None:
        self.handler = handler
        self.exchanges = 0

    def exchange(self, message: bytes, *, secured: bool = False) -> bytes:
        self.exchanges += 1
        response = self.handler(message if type(message) is bytes else bytes(message), secured=secured)
        return response if type(response) is bytes else bytes(response)

    def close(self) -> None:
        pass
