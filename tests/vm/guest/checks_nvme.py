"""Guest checks: the NVMe whose DOE mailbox QEMU forwards to ``pciauth responder`` on the host.

The host made a PKI whose leaf names QEMU's NVMe (copied to ``/run/job/pki``) and
started ``pciauth responder --pki DIR`` before QEMU (``-device nvme,spdm_port=N``).
"""

from __future__ import annotations

import json
from pathlib import Path

from harness import (
    NVME_SERIAL,
    NVME_SERIAL2,
    Skip,
    check,
    driver_of,
    expect,
    module_exists,
    nvme_bdf,
    pciauth,
)

PKI = Path("/run/job/pki")
FOREIGN = Path("/run/job/foreign-pki")  # another PKI: its roots signed nothing the NVMe has


def _roots() -> list[str]:
    """Every root of the host PKI (one per algorithm: the responder may negotiate any of them)."""
    if not PKI.is_dir():
        raise Skip("no host PKI/responder for the NVMe (host lacks `pciauth pki` or `pciauth responder`)")
    roots = sorted(PKI.glob("*/root.pem"))
    expect(roots, f"no root.pem under {PKI}")
    return [str(root) for root in roots]


def _anchor_args(roots: list) -> list[str]:
    """``--trust-anchor ROOT`` for each root."""
    return [arg for root in roots for arg in ("--trust-anchor", str(root))]


def _authenticated(report: dict) -> bool:
    for key in ("authenticated", "ok"):
        if isinstance(report.get(key), bool):
            return report[key]
    return False


@check("nvme_auth_sysfs_doe", variants=("intel-iommu",), needs=("auth",))
def nvme_auth_sysfs() -> dict:
    """Authenticate through the DOE mailbox in sysfs config space while nvme keeps the device."""
    anchors = _anchor_args(_roots())
    bdf = nvme_bdf()
    before = driver_of(bdf)
    res = pciauth("auth", bdf, *anchors, "--json")
    data = res.json()
    expect(res.status == 0 and _authenticated(data), f"auth over sysfs DOE failed: {res.brief()}")
    expect(data.get("transport") == "doe", f"auth transport {data.get('transport')!r}, not doe")
    expect(data.get("mailbox") == 0x100, f"auth used mailbox {data.get('mailbox')!r}, not 0x100")
    expect(driver_of(bdf) == before, f"auth changed the driver from {before!r} to {driver_of(bdf)!r}")
    # A trust anchor that did not sign the chain: the device must not authenticate.
    other = sorted(FOREIGN.glob("*/root.pem"))
    wrong = None
    if other:
        bad = pciauth("auth", bdf, *_anchor_args(other), "--json")
        wrong = bad.status
        expect(bad.status == 6 and not _authenticated(bad.json()),
               f"auth with a foreign trust anchor should exit 6: {bad.brief()}")
    return {"seconds": round(res.seconds, 2), "driver": before, "version": data.get("version"),
            "foreign_anchor_status": wrong}


def _find_serial(obj: object) -> bool:
    return NVME_SERIAL in json.dumps(obj)


@check("nvme_run_vfio_doe_identify", variants=("intel-iommu",), needs=("run",))
def nvme_run() -> dict:
    """``pciauth run``: bind, authenticate over the VFIO config region, Identify DMA, restore nvme."""
    if not module_exists("pciauth.dma.drivers.nvme"):
        raise Skip("missing module pciauth.dma.drivers.nvme (no NVMe Identify DMA driver)")
    if not module_exists("pciauth.vfio.bind"):
        raise Skip("missing module pciauth.vfio.bind (pciauth cannot bind to vfio-pci)")
    anchors = _anchor_args(_roots())
    bdf = nvme_bdf()
    before = driver_of(bdf)
    expect(before == "nvme", f"NVMe starts with driver {before!r}, not nvme")
    res = pciauth("run", bdf, *anchors, "--size", "4096", "--json", timeout=600)
    data = res.json()
    steps = {s["name"]: s for s in data.get("steps", [])}
    failed = {n: s.get("detail") for n, s in steps.items() if s["status"] not in ("passed", "skipped")}
    expect(res.status == 0 and data.get("ok") is True and not failed,
           f"pciauth run failed steps {failed}: {res.brief()}")
    for name in ("bind", "authenticate", "restore"):
        expect(steps.get(name, {}).get("status") == "passed", f"step {name} did not pass: {steps.get(name)}")
    dma = steps.get("dma-private", {}).get("result", {})
    expect(dma.get("checks", {}).get("identify_parses") is True,
           f"the run's Identify DMA did not parse: {dma.get('checks')}")
    expect(driver_of(bdf) == "nvme", f"after run the NVMe has driver {driver_of(bdf)!r}, not nvme")
    return {"seconds": round(res.seconds, 2), "steps": {n: s["status"] for n, s in steps.items()},
            "serial_in_report": _find_serial(data)}


@check("nvme_identify_serial_legacy", variants=("intel-iommu",), needs=("pciauth.api", "pciauth.vfio.bind"))
def nvme_identify_serial() -> dict:
    """The Python API: Identify through the legacy type1 backend; the serial is QEMU's serial=."""
    import pciauth.api

    bdf = nvme_bdf()
    expect(driver_of(bdf) == "nvme", f"NVMe starts with driver {driver_of(bdf)!r}")
    with pciauth.api.open(bdf, iommu="legacy", driver_options={"expect_serial": NVME_SERIAL}) as dev:
        expect(driver_of(bdf) == "vfio-pci", f"open() did not bind: driver {driver_of(bdf)!r}")
        result = dev.dma.check(4096)
        checks = dict(result.checks)
        ident = dict(getattr(dev.dma.driver, "identity", None) or {})
    expect(checks.get("serial_matches") is True, f"Identify serial check: {checks}, identify {ident}")
    expect(result.ok, f"Identify DMA check not ok: {result.to_dict()}")
    expect(driver_of(bdf) == "nvme", f"after close the NVMe has driver {driver_of(bdf)!r}, not nvme")
    return {"serial": ident.get("serial"), "model": ident.get("model"), "checks": checks}


@check("nvme_auth_adversary_rejected", variants=("intel-iommu",), needs=("auth",))
def nvme_auth_adversary() -> dict:
    """The second NVMe's DOE goes to a responder that corrupts its CHALLENGE_AUTH signature:
    pciauth must refuse it (exit 6) even though the certificate chain is trusted."""
    anchors = _anchor_args(_roots())
    try:
        bdf = nvme_bdf(NVME_SERIAL2)
    except AssertionError:
        raise Skip("no second NVMe with an adversarial responder in this guest") from None
    res = pciauth("auth", bdf, *anchors, "--json")
    data = res.json()
    expect(res.status == 6 and not _authenticated(data),
           f"a corrupted CHALLENGE_AUTH signature was not rejected with exit 6: {res.brief()}")
    failed = [c for c in data.get("checks") or [] if not c.get("ok") and not c.get("skipped")]
    expect(any("signature" in json.dumps(c).lower() for c in failed),
           f"no failed check names the signature: {failed}")
    chain_ok = [c for c in data.get("checks") or [] if c.get("name") == "chain_trust"]
    return {"status": res.status, "failed_checks": [c.get("name") for c in failed],
            "chain_trust": chain_ok[0].get("ok") if chain_ok else None}


@check("nvme_auth_vfio_config_region", variants=("intel-iommu",),
       needs=("pciauth.api", "pciauth.vfio.device"))
def nvme_auth_vfio_config() -> dict:
    """Authenticate through the DOE mailbox in the VFIO config region (device on vfio-pci)."""
    import pciauth.api
    from pciauth.vfio.device import VfioConfigSpace

    roots = _roots()
    bdf = nvme_bdf()
    with pciauth.api.open(bdf, iommu="iommufd") as dev:
        expect(driver_of(bdf) == "vfio-pci", f"open() did not bind: driver {driver_of(bdf)!r}")
        expect(isinstance(dev.config, VfioConfigSpace),
               f"config space is {type(dev.config).__name__}, not the VFIO config region")
        result = dev.auth.authenticate(trust_anchors=roots)
    data = result.to_dict()
    failed = [c for c in data.get("checks") or [] if not c.get("ok") and not c.get("skipped")]
    expect(result.authenticated, f"not authenticated over the VFIO config region: "
                                 f"error {data.get('error')}, failed checks {failed}")
    expect(driver_of(bdf) == "nvme", f"after close the NVMe has driver {driver_of(bdf)!r}, not nvme")
    return {"config": "VfioConfigSpace", "version": data.get("version")}
