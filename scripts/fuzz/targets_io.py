"""Fuzz targets of what pciauth reads from sockets and files: spdm-emu frames (both sides), pcap
files, DOE recordings, reference files and the binding journal."""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import sys
import tempfile

import _paths  # noqa: F401
from common import FuzzFinding, Stream
from world import requester_config, world

from pciauth.errors import PciauthError


@functools.lru_cache(maxsize=1)
def _tmp() -> str:
    """This process's scratch directory for file inputs: made on first use, removed at exit."""
    path = tempfile.mkdtemp(prefix="pciauth-fuzz-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _file(data: bytes, name: str = "input") -> str:
    path = os.path.join(_tmp(), name)
    with open(path, "wb") as f:
        f.write(data)
    return path


class FakeSocket:
    """A peer that sends the fuzz bytes (in pieces of random size) and swallows what we send."""

    def __init__(self, data: bytes) -> None:
        s = Stream(data)
        self.piece = max(1, s.u8())
        self.data = s.rest()
        self.pos = 0
        self.sent = 0

    def recv(self, n: int) -> bytes:
        if n <= 0:
            raise FuzzFinding(f"recv({n})")
        out = self.data[self.pos : self.pos + min(n, self.piece)]
        self.pos += len(out)
        return out

    def sendall(self, data: bytes) -> None:
        self.sent += len(data)

    def setsockopt(self, *a: object) -> None:
        pass

    def settimeout(self, t: object) -> None:
        pass

    def close(self) -> None:
        pass


# --- spdm-emu socket, requester side ------------------------------------------------------------
def fuzz_socket_client(data: bytes) -> None:
    """[transport type][peer byte stream]: TEST, discovery and exchanges against a hostile peer."""
    from pciauth.spdm import socket as S

    s = Stream(data)
    ttype = s.u8() % 3
    t = S.SocketTransport.from_socket(FakeSocket(s.rest()), name="fuzz", transport_type=ttype, max_payload=1 << 16)
    ops = (t.test, t.discover, lambda: t.exchange(b"\x10\x84\0\0"),
           lambda: t.exchange(b"\x12\xe0\0\0", secured=True))
    for op in ops:
        try:
            op()
        except PciauthError:
            pass
    t.close()


def _frame(command: int, ttype: int, payload: bytes) -> bytes:
    from pciauth.spdm.socket import FRAME_HEADER

    return FRAME_HEADER.pack(command, ttype, len(payload)) + payload


def seeds_socket_client() -> list[bytes]:
    from pciauth.spdm import socket as S

    flow = world().flows[0]
    stream = _frame(S.COMMAND_TEST, 2, S.SERVER_HELLO)
    for i in range(len(S.DEFAULT_DISCOVERY)):
        stream += _frame(S.COMMAND_NORMAL, 2, S.discovery_response(S.DEFAULT_DISCOVERY, i))
    stream += _frame(S.COMMAND_NORMAL, 2, S.wrap_message(2, flow[0].response, False))
    stream += _frame(S.COMMAND_SHUTDOWN, 2, b"")
    mctp = _frame(S.COMMAND_TEST, 1, S.SERVER_HELLO) + _frame(S.COMMAND_NORMAL, 1, b"\x05" + flow[0].response)
    return [b"\x02\xff" + stream, b"\x02\x03" + stream, b"\x01\xff" + mctp]


# --- spdm-emu socket, responder side ------------------------------------------------------------
class RaisingLog:
    """The server's logger: quiet, except that its catch-all (``exception``) re-raises: a
    non-pciauth exception inside the server is a finding, not a log line."""

    def __getattr__(self, name: str):
        return lambda *a, **k: None

    def exception(self, *a: object, **k: object) -> None:
        raise sys.exc_info()[1]


def fuzz_socket_server(data: bytes) -> None:
    """The byte stream a hostile requester sends to ``pciauth responder --listen``."""
    from pciauth.spdm import socket_server as SS
    from pciauth.spdm.responder import Responder

    server = SS.ResponderServer(lambda: Responder(world().responder_config), "127.0.0.1", 0, logger=RaisingLog())
    server.serve_connection(FakeSocket(data), "fuzz")


def seeds_socket_server() -> list[bytes]:
    from pciauth.spdm import socket as S

    out = []
    for v in (0, 3):
        stream = _frame(S.COMMAND_TEST, 2, S.CLIENT_HELLO) + _frame(S.COMMAND_NORMAL, 2, S.discovery_request(0))
        for e in world().flows[v]:
            stream += _frame(S.COMMAND_NORMAL, 2, S.wrap_message(2, e.request, e.secured))
        out.append(b"\xff" + stream + _frame(S.COMMAND_SHUTDOWN, 2, b""))
    out.append(b"\x07" + _frame(S.COMMAND_NORMAL, 1, b"\x05" + world().flows[0][0].request))
    return out


# --- pcap ---------------------------------------------------------------------------------------
def fuzz_pcap(data: bytes) -> None:
    from pciauth.pcap import doe_direction, read_pcap_bytes

    _link, records = read_pcap_bytes(data)
    for r in records:
        doe_direction(r.data)


def seeds_pcap() -> list[bytes]:
    from pciauth.pcap import PcapWriter
    from pciauth.spdm.socket import wrap_message

    path = os.path.join(_tmp(), "seed.pcap")
    with PcapWriter(path) as w:
        for e in world().flows[0][:4]:
            w.write_doe(wrap_message(2, e.request, False), from_device=False, timestamp=1.5)
            w.write_doe(wrap_message(2, e.response, False), from_device=True, timestamp=1.75)
    with open(path, "rb") as f:
        return [f.read()]


# --- DOE recordings (record/replay) --------------------------------------------------------------
def fuzz_doe_record(data: bytes) -> None:
    """A recording file through ``pciauth auth --replay`` (library form), report to JSON."""
    from pciauth.doe.authenticate import AuthOptions, replay

    result = replay(_file(data, "recording.json"), AuthOptions(trust_anchors=[_anchor_file()]))
    exc = result.report.exception
    if exc is not None and not isinstance(exc, PciauthError):
        raise exc
    json.dumps(result.to_dict())


def _anchor_file() -> str:
    path = os.path.join(_tmp(), "root.der")
    if not os.path.exists(path):
        _file(world().root_der, "root.der")
    return path


def seeds_doe_record() -> list[bytes]:
    import dataclasses

    from pciauth.doe.authenticate import AuthOptions, requester_config
    from pciauth.doe.record import RecordingTransport
    from pciauth.pci.device import DeviceIdentity
    from pciauth.spdm.requester import Requester
    from pciauth.spdm.responder import Responder
    from pciauth.transport import CallableTransport

    out = []
    ident = {"vendor": 0x1DED, "device": 0x5A5A, "class_code": 0x120000, "revision": 1,
             "subsystem_vendor": None, "subsystem_device": None, "serial": None}
    for measurements, identity in (("all", None), ("1,3", ident)):
        opts = AuthOptions(trust_anchors=[_anchor_file()], measurements=measurements, policy="spdm-only")
        rt = RecordingTransport(CallableTransport(Responder(world().responder_config).handle))
        cfg = requester_config(opts, opts.trust_anchors, DeviceIdentity(**identity) if identity else None)
        Requester(rt, dataclasses.replace(cfg, random=rt.draw)).authenticate()
        path = os.path.join(_tmp(), "seed.json")
        rt.save(path, target={"spec": "emu", "name": "emu"}, identity=identity, options=opts.recorded())
        with open(path, "rb") as f:
            out.append(f.read())
    return out


# --- reference files ----------------------------------------------------------------------------
def fuzz_reference(data: bytes) -> None:
    from pciauth.reference import compare, load_reference

    doc = load_reference(_file(data, "reference.json"))
    for d in compare(doc, doc) + compare(doc, _seed_reference()):
        d.to_dict()


def _seed_reference() -> dict:
    from pciauth.reference import reference_from_report
    from pciauth.spdm.requester import Requester
    from pciauth.spdm.responder import Responder
    from pciauth.transport import CallableTransport

    rep = Requester(CallableTransport(Responder(world().responder_config).handle),
                    requester_config(world(), 0)).authenticate()
    return reference_from_report(rep.to_dict(), device="emu",
                                 identity={"vendor": 1, "device": 2, "class_code": 3, "revision": 4})


def seeds_reference() -> list[bytes]:
    ref = _seed_reference()
    return [json.dumps(ref).encode(), json.dumps(dict(ref, measurements=None)).encode()]


# --- binding journal ----------------------------------------------------------------------------
def fuzz_journal(data: bytes) -> None:
    from pciauth.vfio.journal import Journal

    d = os.path.join(_tmp(), "journal")
    os.makedirs(d, exist_ok=True)
    j = Journal(d)
    _file(data, "journal/bind-0000_01_00.0.json")
    for _path, entry in j.entries():
        if isinstance(entry, Exception):
            continue
        entry.stale()
        entry.owner_alive()
        json.dumps(entry.to_dict())
        j.path_for(entry.device)


def seeds_journal() -> list[bytes]:
    entry = {"device": "0000:01:00.0", "sysfs_root": "/sys", "original_driver": "nvme",
             "original_override": None, "mode": "session", "pid": 1, "pid_start": 5, "created": 1.5,
             "version": 1}
    return [json.dumps(entry).encode(), json.dumps(dict(entry, mode="persistent", pid_start=None)).encode()]


# --- trust anchor files --------------------------------------------------------------------------
def fuzz_trust_anchors(data: bytes) -> None:
    """A --trust-anchor file (PEM or DER); the anchors it gives then verify the seed chain."""
    import datetime

    from pciauth.spdm import algorithms as A
    from pciauth.spdm.certs import load_trust_anchors, parse_cert_chain, verify_chain

    anchors = load_trust_anchors(_file(data, "anchor.pem"))
    chain = parse_cert_chain(world().chain_by_hash[A.HASH_SHA384], A.HASH_SHA384)
    verify_chain(chain, anchors, policy="spdm-only", at_time=datetime.datetime(2027, 1, 1)).to_dict()


def seeds_trust_anchors() -> list[bytes]:
    from cryptography.hazmat.primitives.serialization import Encoding

    w = world()
    pem = w.pki.root.public_bytes(Encoding.PEM)
    return [pem, w.root_der, pem + w.pki.inter.public_bytes(Encoding.PEM), w.root_der + w.pki.leaf.public_bytes(
        Encoding.DER)]


TARGETS = {
    "socket_client": (fuzz_socket_client, seeds_socket_client),
    "socket_server": (fuzz_socket_server, seeds_socket_server),
    "pcap": (fuzz_pcap, seeds_pcap),
    "doe_record": (fuzz_doe_record, seeds_doe_record),
    "reference": (fuzz_reference, seeds_reference),
    "journal": (fuzz_journal, seeds_journal),
    "trust_anchors": (fuzz_trust_anchors, seeds_trust_anchors),
}
