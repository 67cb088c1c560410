"""Fuzz targets of what pciauth reads from hardware: DOE data objects, the DOE mailbox state
machine against a hostile config space, capability walkers, VFIO capability chains and the DMA
drivers (NVMe, edu, emulated engine) against a hostile BAR0 and hostile completions."""

from __future__ import annotations

import functools
import os
import struct
import sys

import _paths
from common import FakeClock, FuzzFinding, Stream

from pciauth.errors import PciauthError
from pciauth.pci.config import BytesConfigSpace, ConfigSpace

MAX_READS = 200_000  # config or BAR reads per input before the harness calls it a hang


# --- DOE data objects ----------------------------------------------------------------------------
def fuzz_doe_objects(data: bytes) -> None:
    """One DOE object through every decoder: socket framing, discovery and the DOE transport."""
    from pciauth.doe import mailbox as MB
    from pciauth.spdm import socket as S

    for ttype in (0, 1, 2):
        try:
            S.unwrap_message(ttype, data)
        except PciauthError:
            pass
    dwords = [int.from_bytes(data[i : i + 4].ljust(4, b"\0"), "little") for i in range(0, len(data), 4)]
    if dwords:
        MB.decode_length(dwords[min(1, len(dwords) - 1)])
    MB.dwords_to_bytes(dwords)
    S.decode_doe_object(data)


def seeds_doe_objects() -> list[bytes]:
    from world import world

    from pciauth.spdm import socket as S

    out = [S.discovery_response(S.DEFAULT_DISCOVERY, 0), S.discovery_request(1)]
    out += [S.wrap_message(2, e.response, e.secured) for e in world().flows[4][:4]]
    return out


# --- DOE mailbox against a hostile config space --------------------------------------------------
class ReplayConfig(ConfigSpace):
    """Config space whose i-th read returns the i-th dword of the input (then 0); writes vanish."""

    def __init__(self, data: bytes) -> None:
        self.stream = Stream(data)
        self.size = 4096
        self.name = "fuzz"
        self.reads = 0

    def _read(self, offset: int, width: int) -> int:
        self.reads += 1
        if self.reads > MAX_READS:
            raise FuzzFinding(f"more than {MAX_READS} config reads for one input: unbounded polling")
        return self.stream.u32() & ((1 << (8 * width)) - 1)

    def _write(self, offset: int, width: int, value: int) -> None:
        pass


class RecordingConfig(ConfigSpace):
    """Wraps a real config space and records every value read (to build seeds)."""

    def __init__(self, inner: ConfigSpace) -> None:
        self.inner, self.size, self.name = inner, inner.size, inner.name
        self.log = bytearray()

    def _read(self, offset: int, width: int) -> int:
        v = self.inner._read(offset, width)
        self.log += struct.pack("<I", v)
        return v

    def _write(self, offset: int, width: int, value: int) -> None:
        self.inner._write(offset, width, value)


#: DOE polling runs on a fake clock (the mailbox's ``clock``/``sleep`` seam): a wedged mailbox
#: times out at once, and the timeouts stay checked (FakeClock refuses absurd sleeps).
DOE_CLOCK = FakeClock()


def reset() -> None:
    """Close the cached DMA world (a test process that runs other tests afterwards calls this)."""
    if _dma_world.cache_info().currsize:
        _dma_world()[0].close()
    _dma_world.cache_clear()


DOE_OFFSET = 0x100
GET_VERSION = b"\x10\x84\0\0"


def _doe_session(cfg: ConfigSpace) -> None:
    from pciauth.doe.mailbox import DoeMailbox
    from pciauth.doe.transport import DoeTransport

    mb = DoeMailbox(cfg, DOE_OFFSET, timeout=0.05, max_object_dwords=1 << 10,  # fake clock: 25 polls
                    clock=DOE_CLOCK.monotonic, sleep=DOE_CLOCK.sleep)
    ops = (mb.discover, lambda: mb.exchange_object(1, 1, GET_VERSION),
           lambda: DoeTransport(mb).exchange(GET_VERSION), mb.abort)
    for op in ops:
        try:
            op()
        except PciauthError:
            pass


def fuzz_doe_mailbox(data: bytes) -> None:
    _doe_session(ReplayConfig(data))


def seeds_doe_mailbox() -> list[bytes]:
    from pciauth.emu.device import EmulatedDevice
    from pciauth.pci.capabilities import find_extended

    dev = EmulatedDevice(0)
    off = find_extended(dev.config, 0x2E)[0]
    if off != DOE_OFFSET:
        raise RuntimeError(f"the emulated DOE mailbox moved to 0x{off:x}")
    rec = RecordingConfig(dev.config)
    _doe_session(rec)
    return [bytes(rec.log)]


# --- the emulated device's config space against a hostile host --------------------------------------
class OpsRecorder(ConfigSpace):
    """Wraps a config space and records every access as a 7-byte op (the emu_config input)."""

    def __init__(self, inner: ConfigSpace) -> None:
        self.inner, self.size, self.name = inner, inner.size, inner.name
        self.ops = bytearray()

    def _read(self, offset: int, width: int) -> int:
        self.ops += struct.pack("<BHI", WIDTHS.index(width) << 1, offset, 0)
        return self.inner._read(offset, width)

    def _write(self, offset: int, width: int, value: int) -> None:
        self.ops += struct.pack("<BHI", WIDTHS.index(width) << 1 | 1, offset, value)
        self.inner._write(offset, width, value)


WIDTHS = (1, 2, 4, 4)


def fuzz_emu_config(data: bytes) -> None:
    """Ops [op][offset u16][value u32] on the emulated device's config space (op bit 0: write,
    bits 1-2: width): a hostile driver against the emulated DOE mailbox and header."""
    from pciauth.emu.device import EmulatedDevice

    cfg = EmulatedDevice(0).config
    for i in range(0, min(len(data), 7 * 4096) - 6, 7):
        op, off, value = struct.unpack_from("<BHI", data, i)
        width = WIDTHS[(op >> 1) & 3]
        try:
            if op & 1:
                {1: cfg.write8, 2: cfg.write16, 4: cfg.write32}[width](off, value & ((1 << (8 * width)) - 1))
            else:
                got = {1: cfg.read8, 2: cfg.read16, 4: cfg.read32}[width](off)
                if not 0 <= got < 1 << (8 * width):
                    raise FuzzFinding(f"read{8 * width}(0x{off:x}) returned {got:#x}")
        except PciauthError:
            pass


def seeds_emu_config() -> list[bytes]:
    from pciauth.emu.device import EmulatedDevice

    rec = OpsRecorder(EmulatedDevice(0).config)
    rec.read_bytes(0, 0x140)
    _doe_session(rec)
    return [bytes(rec.ops)]


# --- capability walkers --------------------------------------------------------------------------
def fuzz_pci_caps(data: bytes) -> None:
    """[size selector][config space image]: walk both lists (strict and lenient), decode each."""
    from pciauth.doe.mailbox import find_doe_offsets
    from pciauth.pci import capabilities as CAP
    from pciauth.pci import decode as D

    if not data:
        return
    size = (64, 256, 4096)[data[0] % 3]
    cfg = BytesConfigSpace(data[1 : 1 + size].ljust(size, b"\0"), name="fuzz")
    for strict in (False, True):
        try:
            std = CAP.walk_capabilities(cfg, strict=strict)
            ext = CAP.walk_extended_capabilities(cfg, strict=strict)
        except PciauthError:
            continue
        for c in std:
            c.to_dict()
            D.decode(D.STD_DECODERS, cfg, c.id, c.offset)
        for c in ext:
            c.to_dict()
            D.decode(D.EXT_DECODERS, cfg, c.id, c.offset)
    CAP.find_capability(cfg, 0x10)
    CAP.find_extended(cfg, 0x2E)
    CAP.read_serial_number(cfg)
    find_doe_offsets(cfg)


def seeds_pci_caps() -> list[bytes]:
    from pciauth.emu.device import EmulatedDevice

    cfg = EmulatedDevice(0).config
    image = cfg.read_bytes(0, cfg.size)
    return [b"\x02" + image, b"\x01" + image[:256]]


# --- VFIO type1 IOMMU info capability chain ------------------------------------------------------
def fuzz_iommu_legacy(data: bytes) -> None:
    """[first cap offset u32][header size u8][info struct]."""
    from pciauth.iommu.legacy import parse_iova_cap

    s = Stream(data)
    first, header = s.u32(), s.u8()
    ranges = parse_iova_cap(s.rest(), first, header, device="fuzz")
    for start, last in ranges or []:
        if start > last:
            raise FuzzFinding(f"range 0x{start:x}-0x{last:x} accepted")


def seeds_iommu_legacy() -> list[bytes]:
    from pciauth.uapi import ioctls

    info = struct.pack("<IIQI", 48, 3, 0x1000, 24) + b"\0" * 4  # argsz, flags, pgsizes, cap_offset
    cap = struct.pack("<HHII", ioctls.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1, 0, 1) + b"\0" * 4
    cap += struct.pack("<QQ", 0, 0xFEDFFFFF)
    other = struct.pack("<HHI", 2, 1, 24)  # an unrelated capability that links to the range one
    return [struct.pack("<IB", 24, 24) + info + cap, struct.pack("<IB", 56, 24) + info + cap + other]


# --- DMA drivers against a hostile BAR0 -----------------------------------------------------------
class HostileBar:
    """BAR0 whose reads come from the input; a doorbell write makes the 'device' fill its
    completion queue entry and the Identify buffer from the input too."""

    size = 0x4000

    def __init__(self, stream: Stream) -> None:
        self.s = stream
        self.reads = 0
        self.driver = None
        self.identify_view = None

    def read32(self, off: int) -> int:
        self.reads += 1
        if self.reads > MAX_READS:
            raise FuzzFinding(f"more than {MAX_READS} BAR reads for one input: unbounded polling")
        return self.s.u32()

    def read64(self, off: int) -> int:
        return self.read32(off) | self.read32(off + 4) << 32

    def read(self, off: int, width: int) -> int:
        return self.read32(off) & ((1 << (8 * width)) - 1)

    def write32(self, off: int, value: int) -> None:
        drv = self.driver
        if off == 0x1000 and drv is not None and hasattr(drv, "cq"):
            if self.identify_view is not None:
                self.identify_view[:4096] = self.s.take(4096).ljust(4096, b"\0")
            head = drv.cq_head * 16
            drv.cq.view[head : head + 16] = self.s.take(16).ljust(16, b"\0")

    def write64(self, off: int, value: int) -> None:
        self.write32(off, value & 0xFFFFFFFF)

    def write(self, off: int, width: int, value: int) -> None:
        self.write32(off, value)


@functools.lru_cache(maxsize=1)
def _dma_world():
    from pciauth.dma.iova import Threshold
    from pciauth.dma.session import DmaSession
    from pciauth.emu.iommu import EmulatedIommu

    clock = FakeClock()  # the drivers' waits run on it (DriverContext.clock/sleep)
    session = DmaSession(EmulatedIommu(), threshold=Threshold.parse("1G"))
    return session, clock


def fuzz_dma_drivers(data: bytes) -> None:
    """[driver][BAR0 read stream]: start, one transfer, close."""
    from pciauth.dma.drivers import DriverContext
    from pciauth.dma.drivers.edu import EduDriver
    from pciauth.dma.drivers.emu import EmuDmaDriver
    from pciauth.dma.drivers.nvme import NvmeDriver

    session, clock = _dma_world()
    s = Stream(data)
    kind = s.u8() % 3
    bar = HostileBar(s)
    cls = (NvmeDriver, EduDriver, EmuDmaDriver)[kind]
    cfg = BytesConfigSpace(bytes(256), name="fuzz")
    ctx = DriverContext("fuzz", bar, cfg, session, 0x1B36, 0x0010, 0x010802,
                        clock=clock.monotonic, sleep=clock.sleep)
    drv = cls(ctx)
    bar.driver = drv
    bufs = [session.alloc(4096), session.alloc(4096)]
    bar.identify_view = bufs[0].view
    try:
        drv.start()
        if kind == 0:
            w = drv.device_write(bufs[0].iova, timeout=1.0)
            w.checks  # noqa: B018
        else:
            drv.copy(bufs[0].iova, bufs[1].iova, 4096, timeout=1.0)
        drv.info()
    except PciauthError:
        pass
    finally:
        try:
            drv.close()
        except PciauthError:
            pass
        for b in bufs:
            session.free(b)
    if session.mappings:
        raise FuzzFinding(f"driver left {len(session.mappings)} mappings behind")


def seeds_dma_drivers() -> list[bytes]:
    from pciauth.dma.drivers.edu import LIVENESS_PROBE
    from pciauth.emu import dma_engine as reg

    models = os.path.join(_paths.ROOT, "tests", "dma")
    if models not in sys.path:  # seeds are built once per test or fuzz process, sometimes more
        sys.path.insert(0, models)
    from dma_models import identify_data

    u32 = functools.partial(struct.pack, "<I")
    cap = 63 | 2 << 24 | 1 << 37
    cq = struct.pack("<IIHHHH", 0, 0, 1, 0, 1, 1)  # cid 1, phase 1, status 0
    nvme = (b"\0" + u32(cap & 0xFFFFFFFF) + u32(cap >> 32) + u32(0) + u32(0) + u32(1)
            + identify_data("PCIAUTH0001") + cq + u32(1) + u32(0))
    edu = b"\x01" + u32(0x010000ED) + u32(~LIVENESS_PROBE & 0xFFFFFFFF) + u32(0) + u32(0) * 4
    emu = b"\x02" + u32(reg.ENGINE_ID) + u32(4) + u32(reg.STATUS_DONE) + struct.pack("<Q", 4096)
    return [nvme, edu, emu]


TARGETS = {
    "doe_objects": (fuzz_doe_objects, seeds_doe_objects),
    "doe_mailbox": (fuzz_doe_mailbox, seeds_doe_mailbox),
    "emu_config": (fuzz_emu_config, seeds_emu_config),
    "pci_caps": (fuzz_pci_caps, seeds_pci_caps),
    "iommu_legacy": (fuzz_iommu_legacy, seeds_iommu_legacy),
    "dma_drivers": (fuzz_dma_drivers, seeds_dma_drivers),
}
