"""The authentication step of ``pciauth run`` and ``dev.auth``: glue to the DOE area.

Authentication belongs to ``pciauth.doe.authenticate`` (what ``pciauth auth`` runs, with the
mailbox lock, the kernel-use check, trust anchors, pcap and recording); this module only calls it
for an open :class:`pciauth.api.Device`. When that code is not part of this build,
:class:`AuthUnavailable` says so, and ``pciauth run`` reports the step as unavailable instead of
failing the DMA steps.
"""

from __future__ import annotations

import importlib
from typing import Any

from pciauth.errors import HostNotReady

#: Modules authentication needs; a missing one makes the step unavailable.
_NEEDED = ("pciauth.doe.authenticate", "pciauth.spdm.requester", "pciauth.target")


class AuthUnavailable(HostNotReady):
    """Authentication code is missing from this build."""


def _load() -> Any:
    for module in _NEEDED:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if not (e.name or "").startswith("pciauth"):
                raise
            raise AuthUnavailable(f"authentication is unavailable: {e.name} is not part of this build") from None
    return importlib.import_module("pciauth.doe.authenticate")


def authenticate(device: Any, *, trust_anchors: list[str] | None = None, force: bool = False,
                 **options: Any) -> Any:
    """Authenticate ``device`` through its CMA mailbox; returns the DOE area's ``AuthResult``
    (``.authenticated``, ``.exit_code``, ``.report``, ``to_dict()``).

    The emulated device is authenticated by its spec (same profile and knobs, so the same
    responder and certificates); a PCI device by its address, through its sysfs config space,
    which keeps working while it is bound to vfio-pci. ``options`` are ``AuthOptions`` fields
    (``slot``, ``measurements``, ``session``, ``policy``, ``timeout``, ...).
    """
    auth = _load()
    opts = auth.AuthOptions(trust_anchors=list(trust_anchors or []), force=force, **options)
    spec = device.spec if device.emulated else device.name
    return auth.authenticate_device(spec, opts, sysfs_root=getattr(device, "sysfs_root", None))
