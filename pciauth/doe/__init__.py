"""PCIe DOE mailboxes: the driver, the SPDM transport over it, and the per-device lock.

See ``docs/doe.md``. Import the pieces from here::

    from pciauth.doe import DoeMailbox, DoeTransport, MailboxLock, open_mailboxes, find_mailbox
"""

from pciauth.doe.lock import MailboxLock, kernel_users, refuse_if_kernel_uses
from pciauth.doe.mailbox import (
    CMA,
    SECURED_CMA,
    DoeMailbox,
    DoeProtocol,
    find_doe_offsets,
    find_mailbox,
    open_mailboxes,
)
from pciauth.doe.transport import DoeTransport

__all__ = [
    "CMA",
    "SECURED_CMA",
    "DoeMailbox",
    "DoeProtocol",
    "DoeTransport",
    "MailboxLock",
    "find_doe_offsets",
    "find_mailbox",
    "kernel_users",
    "open_mailboxes",
    "refuse_if_kernel_uses",
]
