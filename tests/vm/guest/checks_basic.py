"""Guest checks: doctor, list/show, DOE discovery on the NVMe, CDAT on the CXL device."""

from __future__ import annotations

import struct

from harness import (
    NVME_SERIAL,
    PCI,
    CheckFailed,
    Skip,
    check,
    driver_of,
    edu_bdf,
    expect,
    find_pci,
    nvme_bdf,
    pciauth,
)

VIOMMU = ("intel-iommu", "virtio-iommu")
CXL_VENDOR = 0x1E98
CDAT_TYPE = 0x02
CDAT_HEADER_LEN = 16
CDAT_LAST_HANDLE = 0xFFFF


def _flatten(obj: object) -> str:
    import json

    return json.dumps(obj).lower()


@check("doctor_ready", variants=VIOMMU, needs=("doctor",))
def doctor_ready() -> dict:
    res = pciauth("doctor", "--json")
    data = res.json()
    expect(res.status == 0, f"doctor is not ready under a vIOMMU: {res.brief()}")
    expect(data.get("ok") is True, f"doctor --json has ok={data.get('ok')!r}")
    expect(data.get("ready") == {"legacy": True, "iommufd": True},
           f"doctor --json ready={data.get('ready')!r}, want both backends")
    fails = [f for f in data["findings"] if f["status"] == "fail"]
    expect(not fails, f"doctor findings failed: {fails}")
    expect(data.get("kernel", "").startswith("6.12"), f"doctor kernel {data.get('kernel')!r}")
    return {"seconds": round(res.seconds, 2), "ready": data["ready"],
            "findings": {f["check"]: f["status"] for f in data["findings"]}}


@check("doctor_names_missing_iommu", variants=("none",), needs=("doctor",))
def doctor_no_iommu() -> dict:
    res = pciauth("doctor", "--json")
    data = res.json()
    expect(res.status == 7, f"doctor without an IOMMU should exit 7 (host not ready): {res.brief()}")
    expect(data.get("ok") is False, "doctor --json has ok != false without an IOMMU")
    expect(data.get("ready") == {"legacy": False, "iommufd": False},
           f"doctor --json ready={data.get('ready')!r} without an IOMMU")
    by = {f["check"]: f for f in data["findings"]}
    iommu = by.get("iommu", {})
    expect(iommu.get("status") == "fail", f"the iommu finding is {iommu!r}, not a failure")
    text = _flatten(iommu)
    expect("intel_iommu=on" in text or "amd_iommu" in text or "iommu=" in text,
           f"the iommu finding names no fix: {iommu!r}")
    return {"status": res.status, "iommu": iommu}


@check("list_sees_guest_devices", variants=("intel-iommu", "virtio-iommu", "none"), needs=("list",))
def list_devices() -> dict:
    data = pciauth("list", "--json", check_status=0).json()
    listed = {d["address"]: d for d in data["devices"]}
    in_sysfs = {p.name for p in PCI.iterdir()}
    expect(set(listed) == in_sysfs, f"list --json {sorted(listed)} != sysfs {sorted(in_sysfs)}")
    edu = edu_bdf()
    expect(listed[edu]["vendor"] == "1234" and listed[edu]["device"] == "11e8", "edu ids wrong in list")
    grp = PCI / edu / "iommu_group"
    want_group = int(grp.resolve().name) if grp.exists() else None
    got_group = listed[edu]["iommu_group"]
    expect((got_group is None and want_group is None) or int(got_group) == want_group,
           f"edu iommu_group {got_group!r}, sysfs says {want_group!r}")
    by_ids = pciauth("list", "-d", "1234:11e8", "--json", check_status=0).json()
    expect([d["address"] for d in by_ids["devices"]] == [edu], "list -d 1234:11e8 did not select edu alone")
    return {"devices": len(listed), "edu": edu, "edu_group": got_group}


@check("show_edu", variants=("intel-iommu", "virtio-iommu", "none"), needs=("show",))
def show_edu() -> dict:
    edu = edu_bdf()
    data = pciauth("show", edu, "--json", check_status=0).json()["device"]
    expect(data["address"] == edu, f"show address {data.get('address')!r}")
    expect(data["vendor"] == "1234" and data["device"] == "11e8", "show ids wrong")
    expect(data["driver"] == driver_of(edu), f"show driver {data['driver']!r} != sysfs {driver_of(edu)!r}")
    missing = pciauth("show", "ff:1f.7", "--json")
    expect(missing.status == 3, f"show of an absent device should exit 3: {missing.brief()}")
    return {"driver": data["driver"]}


@check("doe_nvme_discovery", variants=("intel-iommu",), needs=("doe",))
def doe_nvme() -> dict:
    bdf = nvme_bdf()
    listed = pciauth("list", "--doe", "--json", check_status=0).json()
    doe_devs = {d["address"]: d for d in listed["devices"]}
    expect(bdf in doe_devs, f"list --doe does not show the NVMe {bdf}")
    offsets = [m["offset"] for m in doe_devs[bdf]["doe_mailboxes"]]
    expect(offsets == [0x100], f"NVMe DOE mailboxes at {offsets}, QEMU puts one at 0x100")
    data = pciauth("doe", bdf, "--json", check_status=0).json()
    mbs = data["mailboxes"]
    expect(len(mbs) == 1 and mbs[0]["offset"] == 0x100, f"doe --json mailboxes {mbs}")
    ids = {p["id"].lower() for p in mbs[0]["protocols"]}
    want = {"0001:00", "0001:01", "0001:02"}
    expect(want <= ids, f"DOE protocols {sorted(ids)} lack {sorted(want - ids)}")
    return {"nvme": bdf, "protocols": sorted(ids), "serial_attr": NVME_SERIAL}


def _cdat_entries(bdf: str) -> list[bytes]:
    """Read the whole CDAT through pciauth's DOE driver (Table Access, DOE type 2)."""
    from pciauth.doe.mailbox import DoeProtocol, find_mailbox
    from pciauth.target import open_target

    entries: list[bytes] = []
    handle = 0
    with open_target(bdf, writable=True) as target:
        mailbox = find_mailbox(target.mailboxes(timeout=2.0), DoeProtocol(CXL_VENDOR, CDAT_TYPE))
        for _ in range(64):
            rsp = mailbox.exchange_object(CXL_VENDOR, CDAT_TYPE, struct.pack("<I", handle << 16))
            expect(len(rsp) >= 4, f"CDAT response of {len(rsp)} bytes")
            (hdr,) = struct.unpack_from("<I", rsp)
            expect(hdr & 0xFF == 0 and (hdr >> 8) & 0xFF == 0, f"CDAT response header 0x{hdr:08x}")
            entries.append(bytes(rsp[4:]))
            handle = hdr >> 16
            if handle == CDAT_LAST_HANDLE:
                return entries
    raise CheckFailed("CDAT did not end within 64 entries")


@check("cxl_cdat_over_doe", variants=("intel-iommu",), needs=("doe",))
def cxl_cdat() -> dict:
    try:
        bdf = find_pci(0x8086, 0x0D93)
    except CheckFailed:
        raise Skip("no CXL type-3 device in this guest (QEMU cxl-type3 not configured)") from None
    refused = pciauth("doe", bdf, "--json")
    kernel_driver = driver_of(bdf)
    if kernel_driver == "cxl_pci":
        expect(refused.status == 8, f"doe on a cxl_pci-bound device must refuse without --force: "
                                    f"{refused.brief()}")
    data = pciauth("doe", bdf, "--force", "--json", check_status=0).json()
    ids = {p["id"].lower() for mb in data["mailboxes"] for p in mb["protocols"]}
    expect("1e98:02" in ids, f"CXL device DOE protocols {sorted(ids)} lack CDAT 1e98:02")
    first = pciauth("doe", bdf, "--force", "--raw", "1e98:02", "00000000", "--json", check_status=0).json()
    raw = bytes.fromhex(first["response"])
    expect(len(raw) >= 4 + CDAT_HEADER_LEN, f"CDAT entry 0 is {len(raw)} bytes")
    entries = _cdat_entries(bdf)
    table = b"".join(entries)
    length = struct.unpack_from("<I", table)[0]
    expect(length == len(table), f"CDAT header length {length} != {len(table)} bytes read")
    expect(sum(table) & 0xFF == 0, "CDAT checksum does not sum to zero")
    expect(raw[4:] == entries[0], "--raw entry 0 differs from the in-process read")
    return {"cxl": bdf, "driver": kernel_driver, "entries": len(entries), "length": length}
