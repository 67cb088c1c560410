#!/usr/bin/env python3
"""Benchmark: CMA/SPDM authentication over QEMU's NVMe DOE mailbox vs. straight over the socket.

Both paths reach the same ``pciauth responder`` process on the host:

* baseline: the host's requester talks to it directly over the spdm-emu socket;
* DOE: a QEMU guest (TCG) authenticates its NVMe through the DOE mailbox in sysfs
  config space, and QEMU forwards each DOE object to the responder (``spdm_port``).

Prints a table (seconds per authentication, SPDM exchanges, config-space reads and
writes per exchange) and the DOE/socket ratio. Needs the guest kernel
(``python3 scripts/vm/kernel.py``) and QEMU (``scripts/vm/provision.sh``)::

    python3 benchmarks/vm_auth.py [-n 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts" / "vm"))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

def socket_runs(port: int, pki: Path, n: int) -> list[dict]:
    from vm_auth_guest import authenticate

    from pciauth.spdm.certs import load_trust_anchors
    from pciauth.spdm.socket import SocketTransport

    anchors = load_trust_anchors([str(p) for p in sorted(pki.glob("*/root.pem"))])
    runs = []
    for _ in range(n):
        with SocketTransport("127.0.0.1", port) as transport:
            t0 = time.perf_counter()
            authenticate(transport, anchors)
            runs.append({"seconds": time.perf_counter() - t0, "exchanges": transport.exchanges})
    return runs


def row(name: str, runs: list[dict]) -> str:
    secs = [r["seconds"] for r in runs]
    ex = runs[0]["exchanges"]
    if "reads" in runs[0]:
        per = f"{runs[0]['reads'] / ex:10.1f} {runs[0]['writes'] / ex:10.1f}"
    else:
        per = f"{'-':>10} {'-':>10}"
    return f"{name:<22} {len(runs):>4} {statistics.mean(secs):9.3f} {min(secs):9.3f} {ex:>9} {per}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=3, help="authentications per path (default 3)")
    p.add_argument("--timeout", type=float, default=600)
    args = p.parse_args()
    import run as vmrun
    from responder import host_responder, init_nvme_pki

    if vmrun.kernel_image() is None or not vmrun.qemu_available():
        print("vm_auth: needs QEMU and the guest kernel (scripts/vm/ci.sh builds them)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="pciauth-bench-") as tmp:
        pki = init_nvme_pki(Path(tmp) / "pki")
        with host_responder(pki) as port:
            direct = socket_runs(port, pki, args.n)
            guest_cmd = f'"$PY" $PCIAUTH_PYFLAGS {REPO}/benchmarks/vm_auth_guest.py --pki /run/job/pki -n {args.n}'
            res = vmrun.run_vm(guest_cmd, machine="none", devices=["nvme"], spdm_port=port,
                               timeout=args.timeout, job_files={"pki": pki})
    if res.status != 0:
        print(f"vm_auth: guest failed\n{res.describe()}", file=sys.stderr)
        return 1
    doe = json.loads(res.stdout.strip().splitlines()[-1])["runs"]
    print(f"{'path':<22} {'runs':>4} {'mean s':>9} {'min s':>9} {'exchanges':>9} "
          f"{'rd/exch':>10} {'wr/exch':>10}")
    print(row("socket (baseline)", direct))
    print(row("QEMU NVMe DOE (TCG)", doe))
    ratio = statistics.mean(r["seconds"] for r in doe) / statistics.mean(r["seconds"] for r in direct)
    print(f"DOE over QEMU/TCG is {ratio:.1f}x the direct socket time (guest boot: {res.seconds:.1f} s total)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
