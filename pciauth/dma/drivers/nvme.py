"""NVMe Identify Controller through the admin queue: the smallest DMA an NVMe drive does.

The driver maps an admin submission queue, a completion queue (one 4 KiB page each) and uses the
caller's buffer for the 4 KiB Identify data. It disables the controller (CC.EN=0, wait CSTS.RDY=0),
programs AQA/ASQ/ACQ, enables it (CC.EN=1 with 64-byte SQ and 16-byte CQ entries and 4 KiB pages,
wait CSTS.RDY=1), submits Identify (opcode 0x06, CNS=1) at SQ tail doorbell 0x1000, polls the
completion's phase bit with a timeout, checks the status, rings the CQ head doorbell
(0x1000 + 4 << CAP.DSTRD), and parses the serial number. On ``close`` the controller is disabled
again and Bus Master restored. Timeouts for enable/disable come from CAP.TO (500 ms units).

Register access is 32-bit only (64-bit registers as two halves, low first), which every NVMe
controller and VFIO BAR region supports.
"""

from __future__ import annotations

import struct

from pciauth.dma.drivers import DeviceWrite, DmaDriver, DmaTimeout
from pciauth.errors import DmaError, MalformedData

REG_CAP = 0x00
REG_VS = 0x08
REG_CC = 0x14
REG_CSTS = 0x1C
REG_AQA = 0x24
REG_ASQ = 0x28
REG_ACQ = 0x30
DOORBELL_BASE = 0x1000

CC_EN = 1 << 0
CC_IOSQES = 6 << 16  # 2^6 = 64-byte submission entries
CC_IOCQES = 4 << 20  # 2^4 = 16-byte completion entries
CSTS_RDY = 1 << 0
CSTS_CFS = 1 << 1

OPC_IDENTIFY = 0x06
CNS_CONTROLLER = 0x01
SQ_ENTRY = 64
CQ_ENTRY = 16
QUEUE_ENTRIES = 16
IDENTIFY_SIZE = 4096

PCI_COMMAND = 0x04
PCI_COMMAND_MEMORY = 1 << 1
PCI_COMMAND_MASTER = 1 << 2

#: Status code types (NVMe base spec, completion status field bits 11:9).
STATUS_TYPES = {0: "generic", 1: "command specific", 2: "media/data integrity", 3: "path related"}


class NvmeError(DmaError):
    """The NVMe controller failed a step (enable, command status, fatal status)."""


def parse_cap(cap: int) -> dict:
    """The CAP fields the driver needs."""
    return {
        "mqes": (cap & 0xFFFF) + 1,
        "timeout_s": ((cap >> 24) & 0xFF) * 0.5,
        "dstrd": (cap >> 32) & 0xF,
        "css_nvm": bool((cap >> 37) & 1),
        "mpsmin": 1 << (12 + ((cap >> 48) & 0xF)),
        "mpsmax": 1 << (12 + ((cap >> 52) & 0xF)),
    }


def parse_identify(data: bytes) -> dict:
    """VID, SSVID, serial, model and firmware from an Identify Controller structure."""
    if len(data) < IDENTIFY_SIZE:
        raise MalformedData(f"Identify data is {len(data)} bytes, not {IDENTIFY_SIZE}", field="identify")
    vid, ssvid = struct.unpack_from("<HH", data, 0)

    def text(off: int, n: int, field: str) -> str:
        raw = data[off : off + n]
        if any(b < 0x20 or b > 0x7E for b in raw):
            raise MalformedData(f"Identify {field} has non-printable bytes: {raw.hex()}", field=field)
        return raw.decode("ascii").strip()

    return {"vid": vid, "ssvid": ssvid, "serial": text(4, 20, "serial"), "model": text(24, 40, "model"),
            "firmware": text(64, 8, "firmware")}


class NvmeDriver(DmaDriver):
    """NVMe admin queue for Identify Controller; it cannot copy memory (``can_copy`` False)."""

    name = "nvme"
    can_copy = False

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.expect_serial: str | None = ctx.options.get("expect_serial")
        self._saved_command: int | None = None
        self._queues: list = []
        self._enabled = False
        self.identity: dict | None = None

    # ---- registers ----
    def _read64(self, off: int) -> int:
        return self.bar.read32(off) | self.bar.read32(off + 4) << 32

    def _write64(self, off: int, value: int) -> None:
        self.bar.write32(off, value & 0xFFFFFFFF)
        self.bar.write32(off + 4, value >> 32)

    def _wait_ready(self, ready: bool, what: str) -> None:
        def check() -> bool:
            csts = self.bar.read32(REG_CSTS)
            if csts == 0xFFFFFFFF:
                raise NvmeError("CSTS reads all ones: the controller is gone or BAR0 is not mapped",
                                device=self.ctx.name)
            if csts & CSTS_CFS and ready:
                raise NvmeError("controller fatal status (CSTS.CFS) while enabling", device=self.ctx.name)
            return bool(csts & CSTS_RDY) == ready

        self.wait_until(check, max(self.cap["timeout_s"], 0.5), what, first=0.0005, longest=0.01)

    # ---- lifecycle ----
    def start(self) -> None:
        self.cap = parse_cap(self._read64(REG_CAP))
        if not self.cap["css_nvm"]:
            raise NvmeError("controller does not support the NVM command set (CAP.CSS)", device=self.ctx.name)
        if self.cap["mpsmin"] > 4096:
            raise NvmeError(f"controller's smallest page is {self.cap['mpsmin']} bytes; pciauth uses 4 KiB",
                            device=self.ctx.name)
        self.doorbell_stride = 4 << self.cap["dstrd"]
        bar_size = getattr(self.bar, "size", None)
        if isinstance(bar_size, int) and DOORBELL_BASE + self.doorbell_stride + 4 > bar_size:
            raise NvmeError(
                f"CAP.DSTRD={self.cap['dstrd']} puts the admin CQ doorbell at "
                f"0x{DOORBELL_BASE + self.doorbell_stride:x}, beyond BAR0 (0x{bar_size:x} bytes)",
                device=self.ctx.name,
            )
        self.entries = min(QUEUE_ENTRIES, self.cap["mqes"])
        if self.entries < 2:
            raise NvmeError(f"CAP.MQES allows {self.entries} entries; a queue needs 2", device=self.ctx.name)
        cfg = self.ctx.config
        if cfg is not None:
            self._saved_command = cfg.read16(PCI_COMMAND)
            cfg.write16(PCI_COMMAND, self._saved_command | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)
        self._disable()
        self.sq = self._queue_buffer("admin-sq")
        self.cq = self._queue_buffer("admin-cq")
        self.sq_tail = 0
        self.cq_head = 0
        self.phase = 1
        self.cid = 0
        q = self.entries - 1
        self.bar.write32(REG_AQA, q | q << 16)
        self._write64(REG_ASQ, self.sq.iova)
        self._write64(REG_ACQ, self.cq.iova)
        self.bar.write32(REG_CC, CC_EN | CC_IOSQES | CC_IOCQES)
        self._enabled = True
        self._wait_ready(True, "the NVMe controller to become ready (CSTS.RDY=1)")

    def _queue_buffer(self, tag: str):
        """One page for a queue; in the private window when it has room, else the shared one."""
        session = self.ctx.session
        try:
            m = session.alloc(4096, private=True, tag=tag)
        except DmaError:
            m = session.alloc(4096, private=False, tag=tag)
        self._queues.append(m)
        return m

    def _disable(self) -> None:
        cc = self.bar.read32(REG_CC)
        if cc & CC_EN:
            self.bar.write32(REG_CC, cc & ~CC_EN)
        self._wait_ready(False, "the NVMe controller to stop (CSTS.RDY=0)")

    def close(self) -> None:
        try:
            if self._enabled:
                self._enabled = False
                self._disable()
        finally:
            for m in self._queues:
                self.ctx.session.free(m)
            self._queues.clear()
            if self._saved_command is not None and self.ctx.config is not None:
                self.ctx.config.write16(PCI_COMMAND, self._saved_command)
                self._saved_command = None

    # ---- commands ----
    def _submit(self, opcode: int, prp1: int, cdw10: int) -> int:
        self.cid = (self.cid + 1) & 0xFFFF
        entry = struct.pack("<IIQQQQIIIIII", opcode | self.cid << 16, 0, 0, 0, prp1, 0, cdw10, 0, 0, 0, 0, 0)
        off = self.sq_tail * SQ_ENTRY
        self.sq.view[off : off + SQ_ENTRY] = entry
        self.sq_tail = (self.sq_tail + 1) % self.entries
        self.bar.write32(DOORBELL_BASE, self.sq_tail)
        return self.cid

    def _complete(self, cid: int, timeout: float) -> int:
        off = self.cq_head * CQ_ENTRY

        def posted() -> bool:
            status = struct.unpack_from("<H", self.cq.view, off + 14)[0]
            return (status & 1) == self.phase

        try:
            self.wait_until(posted, timeout, "the NVMe completion (phase bit)")
        except DmaTimeout:
            csts = self.bar.read32(REG_CSTS)
            raise DmaTimeout(f"no NVMe completion within {timeout:g} s (CSTS=0x{csts:x})",
                             device=self.ctx.name) from None
        _dw0, _dw1, _sqhd, _sqid, got_cid, status = struct.unpack_from("<IIHHHH", self.cq.view, off)
        self.cq_head = (self.cq_head + 1) % self.entries
        if self.cq_head == 0:
            self.phase ^= 1
        self.bar.write32(DOORBELL_BASE + self.doorbell_stride, self.cq_head)
        if got_cid != cid:
            raise NvmeError(f"completion for command {got_cid}, expected {cid}", device=self.ctx.name)
        return status >> 1

    def identify(self, iova: int, *, timeout: float = 5.0) -> None:
        """Identify Controller into the 4 KiB at ``iova``; raises on a bad status."""
        if not self._enabled:
            raise NvmeError("controller not enabled: call start() first", device=self.ctx.name)
        if iova % 4096:
            raise NvmeError(f"Identify buffer IOVA 0x{iova:x} is not 4 KiB aligned", device=self.ctx.name)
        status = self._complete(self._submit(OPC_IDENTIFY, iova, CNS_CONTROLLER), timeout)
        if status:
            sc, sct = status & 0xFF, (status >> 8) & 0x7
            raise NvmeError(
                f"Identify failed: status code 0x{sc:02x}, type {STATUS_TYPES.get(sct, sct)}"
                + (" (do-not-retry)" if status >> 14 & 1 else ""),
                device=self.ctx.name,
            )

    def device_write(self, dst_iova: int, *, timeout: float = 5.0) -> DeviceWrite:
        """Identify into ``dst_iova``; the checks say the structure parses and the serial is right."""
        self.identify(dst_iova, timeout=timeout)
        m = self.ctx.session.mappings
        mapping = next((x for x in m if x.iova == dst_iova), None)
        if mapping is None:
            raise NvmeError(f"IOVA 0x{dst_iova:x} is not a buffer of this session", device=self.ctx.name)
        data = bytes(mapping.view[:IDENTIFY_SIZE])
        checks = {"identify_parses": False, "serial_present": False}
        try:
            ident = parse_identify(data)
        except MalformedData:
            return DeviceWrite(IDENTIFY_SIZE, checks, data)
        self.identity = ident
        checks["identify_parses"] = True
        checks["serial_present"] = bool(ident["serial"])
        if self.ctx.vendor is not None:
            checks["vendor_matches_config"] = ident["vid"] == self.ctx.vendor
        if self.expect_serial is not None:
            checks["serial_matches"] = ident["serial"] == self.expect_serial
        return DeviceWrite(IDENTIFY_SIZE, checks, data)

    def info(self) -> dict:
        d = super().info()
        d["identify"] = self.identity
        return d
