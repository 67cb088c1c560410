"""Guest checks: edu DMA through pciauth's IOMMU backends on a real kernel.

Each check binds edu to vfio-pci with plain sysfs writes (not through pciauth, so
these checks do not depend on ``pciauth bind``), opens a backend with
``pciauth.iommu.open_backend(device, kind)``, maps ``pciauth.dma.DmaBuffer``\\ s,
drives the edu DMA engine through the VFIO device fd, and restores the device.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator

from edu import EDU_BUF_SIZE, Edu, sysfs_bind_vfio, sysfs_restore
from harness import CheckFailed, check, driver_of, edu_bdf, expect, kernel_log, pciauth

VIOMMU = ("intel-iommu", "virtio-iommu")
EDU_DMA_LIMIT = 1 << 28  # edu masks DMA addresses to 28 bits
IOVA_SRC = 0x100000
IOVA_DST = 0x200000
COUNT = EDU_BUF_SIZE


@contextlib.contextmanager
def edu_backend(kind: str) -> Iterator[tuple[object, Edu, str]]:
    """edu bound to vfio-pci with an open ``kind`` backend; restored afterwards."""
    from pciauth.iommu import open_backend
    from pciauth.pci.select import find_device

    bdf = edu_bdf()
    old = sysfs_bind_vfio(bdf)
    try:
        device = find_device(bdf)
        backend = open_backend(device, kind)
        try:
            expect(backend.name == kind, f"open_backend({kind!r}) gave {backend.name!r}")
            yield backend, Edu(backend.device_fd), bdf
        finally:
            backend.close()
    finally:
        sysfs_restore(bdf, old)


def _pattern(n: int, seed: int) -> bytes:
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


def _roundtrip(backend, edu: Edu, src_iova: int, dst_iova: int, seed: int) -> dict:
    """RAM(src) -> device buffer -> RAM(dst) and compare every byte."""
    from pciauth.dma.buffer import DmaBuffer

    src, dst = DmaBuffer(COUNT), DmaBuffer(COUNT)
    try:
        data = _pattern(COUNT, seed)
        src.view[:COUNT] = data
        got_src = backend.map(src, src_iova, writable=False)
        got_dst = backend.map(dst, dst_iova)
        t_in = edu.to_device(got_src, COUNT)
        t_out = edu.to_ram(got_dst, COUNT)
        back = bytes(dst.view[:COUNT])
        if back != data:
            first = next(i for i in range(COUNT) if back[i] != data[i])
            raise CheckFailed(f"edu DMA round trip corrupted data: first difference at byte {first} "
                              f"({sum(a != b for a, b in zip(back, data, strict=True))} bytes differ)")
        backend.unmap(got_src, src.length)
        backend.unmap(got_dst, dst.length)
        return {"src_iova": hex(got_src), "dst_iova": hex(got_dst),
                "dma_seconds": round(t_in + t_out, 3)}
    finally:
        src.close()
        dst.close()


def _dma_check(kind: str) -> dict:
    with edu_backend(kind) as (backend, edu, bdf):
        expect(edu.liveness(0x12345678) == (~0x12345678 & 0xFFFFFFFF), "edu liveness register wrong")
        ranges = backend.iova_ranges()
        expect(any(s <= IOVA_SRC and last >= IOVA_DST + COUNT - 1 for s, last in ranges),
               f"{kind}: test IOVAs not inside the reported ranges {ranges}")
        fixed = _roundtrip(backend, edu, IOVA_SRC, IOVA_DST, seed=1)
        return {"device": bdf, "ranges": [[hex(s), hex(e)] for s, e in ranges[:4]], **fixed}


@check("edu_dma_iommufd", variants=VIOMMU)
def dma_iommufd() -> dict:
    return _dma_check("iommufd")


@check("edu_dma_legacy", variants=VIOMMU)
def dma_legacy() -> dict:
    return _dma_check("legacy")


FAULT_PATTERNS = (
    # intel-iommu: "DMAR: [DMA Write NO_PASID] Request device [00:03.0] fault addr 0x300000 ..."
    re.compile(r"fault addr (0x[0-9a-f]+)"),
    # virtio-iommu: "virtio_iommu virtio0: mapping fault from EP 24 at 0x300000 [...]"
    re.compile(r"fault from EP \d+ at (0x[0-9a-f]+)"),
)


def _fault_addrs(log: str) -> set[int]:
    return {int(m.group(1), 16) for pat in FAULT_PATTERNS for m in pat.finditer(log)}


@check("edu_dma_unmapped_iova_faults", variants=VIOMMU)
def dma_unmapped() -> dict:
    """A DMA to an IOVA that was unmapped transfers nothing and shows in the kernel log."""
    from pciauth.dma.buffer import DmaBuffer

    target = 0x3000000
    before = _fault_addrs(kernel_log())
    with edu_backend("iommufd") as (backend, edu, _bdf):
        src, victim = DmaBuffer(COUNT), DmaBuffer(COUNT)
        try:
            src.view[:COUNT] = _pattern(COUNT, 5)
            s = backend.map(src, IOVA_SRC, writable=False)
            edu.to_device(s, COUNT)
            v = backend.map(victim, target)
            backend.unmap(v, victim.length)  # the buffer still exists; the IOVA no longer maps it
            edu.to_ram(target, COUNT)
            expect(bytes(victim.view[:COUNT]) == bytes(COUNT),
                   "a DMA to an unmapped IOVA changed the buffer that used to be mapped there")
            backend.unmap(s, src.length)
        finally:
            src.close()
            victim.close()
    log = ""
    for _ in range(50):
        log = kernel_log()
        if target in _fault_addrs(log) - before:
            break
        os.sched_yield()
    new = _fault_addrs(log) - before
    expect(target in new, f"no IOMMU fault for IOVA 0x{target:x} in the kernel log "
                          f"(new fault addresses: {sorted(hex(a) for a in new)}); tail: {log[-800:]!r}")
    lines = [ln for ln in log.splitlines() if f"0x{target:x}" in ln][-2:]
    return {"fault_lines": lines}


@check("threshold_windows_real_ioas", variants=VIOMMU)
def threshold_windows() -> dict:
    """pciauth's window rules on a real IOAS: private below X, shared at or above X."""
    from pciauth.dma.buffer import DmaBuffer
    from pciauth.dma.iova import IovaAllocator, Threshold, ThresholdChangeRefused, ThresholdPolicy
    from pciauth.errors import RefusedError

    x_units = 32  # 64 MiB, inside edu's 28-bit DMA reach
    x = x_units * (2 << 20)
    with edu_backend("iommufd") as (backend, edu, _bdf):
        alloc = IovaAllocator(backend.iova_ranges())
        policy = ThresholdPolicy(alloc, backend)
        policy.set(Threshold(x_units))
        priv_iova = alloc.alloc(COUNT, private=True, tag="private")
        shared_iova = alloc.alloc(COUNT, private=False, limit=EDU_DMA_LIMIT, tag="shared")
        expect(priv_iova < x <= shared_iova < EDU_DMA_LIMIT,
               f"windows wrong: private 0x{priv_iova:x}, shared 0x{shared_iova:x}, X 0x{x:x}")
        moved = _roundtrip(backend, edu, priv_iova, shared_iova, seed=9)
        try:
            alloc.reserve(x, COUNT, private=True)
            raise CheckFailed("a private mapping at IOVA X was accepted")
        except RefusedError:
            pass
        try:
            alloc.reserve(x - 0x1000, COUNT, private=False)
            raise CheckFailed("a shared mapping below X was accepted")
        except RefusedError:
            pass
        try:
            policy.set(Threshold(64))
            raise CheckFailed("the threshold changed while mappings were live")
        except ThresholdChangeRefused:
            pass
        alloc.free(priv_iova)
        alloc.free(shared_iova)
        # The kernel itself keeps IOVAs it chooses inside the windows pciauth allowed.
        backend.allow_iovas([(x, x + (16 << 20) - 1)])
        buf = DmaBuffer(COUNT)
        try:
            auto = backend.map(buf)
            expect(x <= auto < x + (16 << 20), f"kernel-chosen IOVA 0x{auto:x} outside the allowed window")
            backend.unmap(auto, buf.length)
        finally:
            buf.close()
        policy.set(Threshold(64))
        return {"x": hex(x), "private": hex(priv_iova), "shared": hex(shared_iova),
                "kernel_chosen": hex(auto), **moved}


@check("cli_dma_edu", variants=VIOMMU, needs=("dma",))
def cli_dma() -> dict:
    """``pciauth dma`` on edu with each backend (bind, DMA, verify, restore)."""
    bdf = edu_bdf()
    out = {}
    for kind in ("iommufd", "legacy"):
        res = pciauth("dma", bdf, "--size", "4096", "--iommu", kind, "--json")
        expect(res.status == 0, f"pciauth dma --iommu {kind}: {res.brief()}")
        data = res.json()
        expect(data.get("ok") is True, f"dma --json ok={data.get('ok')!r}")
        out[kind] = round(res.seconds, 2)
    left = driver_of(bdf)
    expect(left is None, f"edu left bound to {left} after pciauth dma")
    return out
