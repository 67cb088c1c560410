"""pytest plugin: run regression tests against a device with ``--pciauth-device``.

Installed with pciauth (the ``pytest11`` entry point), so any test suite can use::

    def test_private_dma(pciauth_device):
        assert pciauth_device.dma.check(1 << 20, private=True).ok

    def test_shared_dma(dma_session, pciauth_device):
        m = dma_session.alloc(4096, private=False)
        ...

Options (all optional; without them nothing of pciauth is imported):

- ``--pciauth-device DEV``: a PCI address or ``emu``/``emu:N`` (default ``emu``, no root needed);
- ``--pciauth-iommu auto|iommufd|legacy``;
- ``--pciauth-threshold X``: the IOVA threshold for the tests (see ``pciauth iova``).

A device named with ``--pciauth-device`` that cannot be opened (not root, host not ready) fails
the tests that use it; a bad ``--pciauth-threshold`` or ``--pciauth-iommu`` stops the run at start.

Fixtures: ``pciauth_device_spec`` (the string), ``pciauth_device`` (an open
:class:`pciauth.api.Device`, closed after the test: the device is restored to its driver),
``dma_session`` (its :class:`~pciauth.dma.session.DmaSession`), ``pciauth_iova`` (``dev.iova``),
``pciauth_dma`` (``dev.dma``).
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser) -> None:
    group = parser.getgroup("pciauth", "pciauth device under test")
    options = [
        ("--pciauth-device", "emu", "device under test: PCI address or emu[:N] (default: emu)"),
        ("--pciauth-iommu", "auto", "IOMMU backend: auto, iommufd or legacy"),
        ("--pciauth-threshold", None, "private IOVA threshold X for the tests (e.g. 1G)"),
    ]
    for name, default, help_text in options:
        try:
            group.addoption(name, default=default, help=help_text)
        except ValueError:  # registered twice (entry point and -p): keep the first
            pass


def pytest_configure(config) -> None:
    """A bad ``--pciauth-threshold`` or ``--pciauth-iommu`` stops the run once, with one message,
    instead of erroring every test that uses a device."""
    threshold = config.getoption("--pciauth-threshold", default=None)
    iommu = config.getoption("--pciauth-iommu", default="auto")
    if iommu not in ("auto", "iommufd", "legacy"):
        raise pytest.UsageError(f"--pciauth-iommu: {iommu!r} is not auto, iommufd or legacy")
    if threshold is not None:
        from pciauth.dma.iova import Threshold
        from pciauth.errors import UsageError

        try:
            Threshold.parse(threshold)
        except UsageError as exc:
            raise pytest.UsageError(f"--pciauth-threshold: {exc}") from None


def pytest_report_header(config) -> str | None:
    spec = config.getoption("--pciauth-device", default=None)
    return f"pciauth device: {spec}" if spec and spec != "emu" else None


@pytest.fixture
def pciauth_device_spec(request) -> str:
    return request.config.getoption("--pciauth-device", default="emu") or "emu"


@pytest.fixture
def pciauth_device(request, pciauth_device_spec):
    """An open device; closed (mappings released, driver restored) after the test."""
    import pciauth.api
    from pciauth.errors import HostNotReady, PermissionDeniedError

    try:
        dev = pciauth.api.open(
            pciauth_device_spec,
            iommu=request.config.getoption("--pciauth-iommu", default="auto"),
            threshold=request.config.getoption("--pciauth-threshold", default=None),
        )
    except (PermissionDeniedError, HostNotReady) as exc:
        if request.config.getoption("--pciauth-device", default=None) not in (None, "emu"):
            # The device the run was asked to test cannot be used: a lab regression run must go
            # red, not green with every test skipped.
            pytest.fail(f"pciauth device {pciauth_device_spec} unavailable: {exc}", pytrace=False)
        pytest.skip(f"pciauth device {pciauth_device_spec} unavailable: {exc}")
    try:
        yield dev
    finally:
        dev.close()


@pytest.fixture
def dma_session(pciauth_device):
    """The device's DMA session; every mapping is freed after the test."""
    session = pciauth_device.session
    yield session
    session.free_all()


@pytest.fixture
def pciauth_iova(pciauth_device):
    return pciauth_device.iova


@pytest.fixture
def pciauth_dma(pciauth_device):
    return pciauth_device.dma
