"""A DMA session: buffers mapped for one device through an IOMMU backend, IOVAs from the windows.

::

    with DmaSession(backend, threshold=Threshold.parse("1G")) as s:
        src = s.alloc(1 << 20, private=True)     # IOVA below X, private memory
        dst = s.alloc(1 << 20, private=False)    # IOVA at or above X, shared memory
        ...                                      # the device copies src -> dst
    # every mapping unmapped, every buffer freed, even on an exception

The session owns the :class:`~pciauth.dma.iova.IovaAllocator` and the
:class:`~pciauth.dma.iova.ThresholdPolicy`; changing X with live mappings is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from pciauth.dma.buffer import DmaBuffer, check_memlock
from pciauth.dma.iova import IovaAllocator, Threshold, ThresholdPolicy
from pciauth.errors import UsageError


@dataclass
class DmaMapping:
    """A buffer mapped at ``iova`` in the private or shared window."""

    buffer: DmaBuffer
    iova: int
    private: bool
    readable: bool = True
    writable: bool = True
    tag: str = ""

    @property
    def length(self) -> int:
        return self.buffer.length

    @property
    def view(self) -> memoryview:
        return self.buffer.view

    def to_dict(self) -> dict:
        return {"iova": self.iova, "length": self.length, "private": self.private,
                "hugepages": self.buffer.hugepages, "tag": self.tag}


class DmaSession:
    """Maps buffers for one device; releases everything on :meth:`close`.

    ``dma_limit``: one past the highest IOVA the device can address (edu: 2^28).
    ``knob``: the platform threshold knob (:mod:`pciauth.dma.threshold`) or None.
    The backend is not closed by the session unless ``owns_backend``.
    """

    def __init__(self, backend, *, threshold: Threshold | int | None = None, knob=None,
                 dma_limit: int | None = None, hugepages: bool | str = False,
                 owns_backend: bool = False) -> None:
        self.backend = backend
        self.allocator = IovaAllocator(backend.iova_ranges())
        self.policy = ThresholdPolicy(self.allocator, backend, knob)
        self.dma_limit = dma_limit
        self.hugepages = hugepages
        self.owns_backend = owns_backend
        self._mappings: dict[int, DmaMapping] = {}
        self._closed = False
        if threshold is not None:
            self.allocator.set_threshold(threshold)
        # Hardware-like backends (the emulated IOMMU) learn X at once; a platform knob is only
        # programmed by an explicit set_threshold().
        if hasattr(backend, "set_threshold"):
            backend.set_threshold(self.allocator.threshold.units)
        self.policy.apply_windows()

    @property
    def threshold(self) -> Threshold:
        return self.allocator.threshold

    @property
    def mappings(self) -> list[DmaMapping]:
        return list(self._mappings.values())

    @property
    def pinned(self) -> int:
        return sum(m.length for m in self._mappings.values())

    def set_threshold(self, threshold: Threshold | int | str) -> Threshold:
        """Change X; refused (:class:`~pciauth.dma.iova.ThresholdChangeRefused`) with live mappings."""
        if isinstance(threshold, str):
            threshold = Threshold.parse(threshold)
        return self.policy.set(threshold)

    def alloc(self, length: int, *, private: bool = True, iova: int | None = None,
              hugepages: bool | str | None = None, readable: bool = True, writable: bool = True,
              tag: str = "") -> DmaMapping:
        """A new buffer of ``length`` bytes mapped in the private or shared window.

        ``iova`` fixes the address (refused in the wrong window). ``readable``/``writable`` are the
        device's permissions.
        """
        if self._closed:
            raise UsageError("DMA session is closed")
        buffer = DmaBuffer(length, self.hugepages if hugepages is None else hugepages, private=private)
        try:
            if getattr(self.backend, "pins_memory", True):
                check_memlock(self.pinned + buffer.length)
            if iova is None:
                iova = self.allocator.alloc(buffer.length, private=private, limit=self.dma_limit, tag=tag)
            else:
                if self.dma_limit is not None and iova + buffer.length > self.dma_limit:
                    raise UsageError(
                        f"IOVA 0x{iova:x}+0x{buffer.length:x} is beyond the device's DMA limit "
                        f"0x{self.dma_limit:x}"
                    )
                self.allocator.reserve(iova, buffer.length, private=private, tag=tag)
            try:
                self.backend.map(buffer, iova, readable=readable, writable=writable)
            except BaseException:
                self.allocator.free(iova)
                raise
        except BaseException:
            buffer.close()
            raise
        mapping = DmaMapping(buffer, iova, private, readable, writable, tag)
        self._mappings[iova] = mapping
        return mapping

    def free(self, mapping: DmaMapping) -> None:
        """Unmap and free one buffer."""
        if self._mappings.get(mapping.iova) is not mapping:
            raise UsageError(f"IOVA 0x{mapping.iova:x} is not a live mapping of this session")
        del self._mappings[mapping.iova]
        try:
            self.backend.unmap(mapping.iova, mapping.length)
        finally:
            self.allocator.free(mapping.iova)
            mapping.buffer.close()

    def free_all(self) -> None:
        """Unmap and free every buffer, newest first; the first error is raised after all ran."""
        first: BaseException | None = None
        for mapping in reversed(list(self._mappings.values())):
            try:
                self.free(mapping)
            except Exception as exc:
                first = first or exc
        if first is not None:
            raise first

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.free_all()
        finally:
            if self.owns_backend:
                self.backend.close()

    def __enter__(self) -> DmaSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def to_dict(self) -> dict:
        d = self.policy.to_dict()
        d["backend"] = getattr(self.backend, "name", "?")
        d["mappings"] = [m.to_dict() for m in self.mappings]
        return d
