"""The authentication step of ``pciauth run`` and ``dev.auth``: glue to the DOE and SPDM areas.

Authentication itself belongs to ``pciauth.doe`` and ``pciauth.spdm``; this module finds the CMA
mailbox on the open device's config space, runs the requester and returns its report. When that
code is not part of this build, :class:`AuthUnavailable` says so (``pciauth run`` then reports
the step as unavailable instead of failing the DMA steps).
"""

from __future__ import annotations

import importlib
from typing import Any

from pciauth.errors import HostNotReady


class AuthUnavailable(HostNotReady):
    """Authentication code is missing from this build."""


def _need(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or not module.startswith(e.name.split(".")[0]) or not e.name.startswith("pciauth"):
            raise
        raise AuthUnavailable(f"authentication is unavailable: {e.name} is not part of this build") from None


def _trust_anchors(device: Any, paths: list[str] | None) -> Any:
    certs = _need("pciauth.spdm.certs")
    if paths:
        return certs.load_trust_anchors(paths)
    if device.emu is not None:
        return certs.load_trust_anchors([str(device.emu.pki.root_path)])
    return None


def authenticate(device: Any, *, trust_anchors: list[str] | None = None, **options: Any) -> Any:
    """Authenticate ``device`` (a :class:`pciauth.api.Device`); returns the requester's report."""
    doe = _need("pciauth.doe")
    requester = _need("pciauth.spdm.requester")
    mailboxes = doe.open_mailboxes(device.config)
    mailbox = doe.find_mailbox(mailboxes)
    transport = doe.DoeTransport(mailbox)
    identity = device.emu.identity if device.emu is not None else getattr(device, "identity", None)
    config = requester.RequesterConfig(trust_anchors=_trust_anchors(device, trust_anchors),
                                       identity=identity, **options)
    try:
        return requester.Requester(transport, config).authenticate()
    finally:
        transport.close()
