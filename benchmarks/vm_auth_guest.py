"""Guest half of benchmarks/vm_auth.py: authenticate QEMU's NVMe over its DOE mailbox N times.

Runs inside the QEMU guest (the host's Python over 9p) and prints one JSON object:
per-run seconds, SPDM exchanges, and config-space reads/writes counted on the sysfs
config space that the DOE driver drives.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

NVME_CLASS = 0x010802


def authenticate(transport, anchors, identity=None):
    from pciauth.spdm.requester import Requester, RequesterConfig

    report = Requester(transport, RequesterConfig(trust_anchors=anchors, identity=identity)).authenticate()
    if not report.authenticated:
        raise SystemExit(f"not authenticated: {report.error}")
    return report


def counting(cfg) -> dict:
    """Count the config-space accesses ``cfg`` makes (wraps its ``_read``/``_write`` hooks)."""
    counts = {"read": 0, "write": 0}
    read, write = cfg._read, cfg._write

    def _read(off, width):
        counts["read"] += 1
        return read(off, width)

    def _write(off, width, value):
        counts["write"] += 1
        return write(off, width, value)

    cfg._read, cfg._write = _read, _write
    return counts


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--pki", required=True)
    p.add_argument("-n", type=int, default=3)
    args = p.parse_args()
    from pciauth.doe import DoeTransport, find_mailbox, open_mailboxes
    from pciauth.pci.select import list_devices
    from pciauth.spdm.certs import load_trust_anchors

    # Every root of the PKI: the responder may negotiate any of its algorithms.
    anchors = load_trust_anchors([str(p) for p in sorted(Path(args.pki).glob("*/root.pem"))])
    nvme = [d for d in list_devices() if d.class_code == NVME_CLASS][0]
    cfg = nvme.config_space(writable=True)
    counts = counting(cfg)
    runs = []
    for _ in range(args.n):
        counts["read"] = counts["write"] = 0
        transport = DoeTransport(find_mailbox(open_mailboxes(cfg)))
        exchanges = [0]
        exchange = transport.exchange

        def counted(message, *, secured=False, _ex=exchange, _n=exchanges):
            _n[0] += 1
            return _ex(message, secured=secured)

        transport.exchange = counted
        t0 = time.perf_counter()
        authenticate(transport, anchors)
        runs.append({"seconds": time.perf_counter() - t0, "exchanges": exchanges[0],
                     "reads": counts["read"], "writes": counts["write"]})
        transport.close()
    print(json.dumps({"device": nvme.name, "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
