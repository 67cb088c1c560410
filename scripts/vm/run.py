#!/usr/bin/env python3
"""Boot a QEMU guest (TCG) that runs one command with the host's Python.

The guest sees the host's ``/`` read-only, the repository read-write at
the same path, and a private job directory; it runs the command, hands
back its exit status, stdout and stderr, and powers off.  A timeout kills
QEMU.  ``-accel kvm`` is never used: it hangs on these machines.

Machine variants (``--machine``):

``intel-iommu``
    ``q35,kernel-irqchip=split`` + ``intel-iommu,intremap=on``; guest
    ``intel_iommu=on``.
``virtio-iommu``
    ``q35`` + ``virtio-iommu-pci``; x86 has no interrupt remapping then, so
    the guest gets the ``allow_unsafe_interrupts`` parameters of iommufd and
    vfio_iommu_type1.
``none``
    ``q35`` without a vIOMMU.

Devices (``--device``, repeatable): ``edu``, ``nvme``/``nvme2`` (with ``spdm_port``
when ``--spdm-port`` is given: something must listen there before QEMU
starts), ``cxl`` (a CXL type-3 memory device behind a CXL host bridge and
root port: it carries a DOE mailbox with CDAT).

Example::

    python3 scripts/vm/run.py --machine intel-iommu --device edu -- \\
        python3 -c 'print(1)'
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
from initramfs import ensure_initramfs  # noqa: E402
from kernel import KernelCache  # noqa: E402

QEMU = "qemu-system-x86_64"
NVME_SERIAL = "PCIAUTHVM0001"
NVME_SERIAL2 = "PCIAUTHVM0002"
UNSAFE_INTERRUPTS = "iommufd.allow_unsafe_interrupts=1 vfio_iommu_type1.allow_unsafe_interrupts=1"

#: machine name -> (-machine value, devices that go first, guest kernel args)
MACHINES: dict[str, tuple[str, list[str], str]] = {
    "intel-iommu": ("q35,kernel-irqchip=split", ["-device", "intel-iommu,intremap=on"],
                    "intel_iommu=on"),
    "virtio-iommu": ("q35", ["-device", "virtio-iommu-pci"], UNSAFE_INTERRUPTS),
    "none": ("q35", [], ""),
}


class VmError(Exception):
    """The guest could not be started or did not report an exit status."""


@dataclass
class VmResult:
    """What came back from one guest run."""

    status: int | None
    stdout: str
    stderr: str
    console: str
    seconds: float
    timed_out: bool
    qemu_cmd: list[str] = field(default_factory=list)
    qemu_pid: int | None = None

    def describe(self) -> str:
        """A short diagnostic for assertion messages."""
        tail = "\n".join(self.console.splitlines()[-25:])
        return (f"status={self.status} timed_out={self.timed_out} seconds={self.seconds:.1f}\n"
                f"--- stdout ---\n{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-3000:]}\n"
                f"--- console (tail) ---\n{tail}")


def qemu_available() -> str | None:
    """Path of the QEMU binary, or None."""
    return shutil.which(QEMU)


def kernel_image() -> Path | None:
    """The cached guest kernel, or None when it has not been built."""
    try:
        cache = KernelCache()
    except Exception:
        return None
    return cache.image if cache.cached() else None


def _nvme_args(workdir: Path, index: int, serial: str, port: int | None) -> list[str]:
    img = workdir / f"nvme{index}.img"
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    nvme = f"nvme,serial={serial},drive=nvm{index}"
    if port is not None:
        nvme += f",spdm_port={port}"
    return ["-drive", f"file={img},if=none,id=nvm{index},format=raw", "-device", nvme]


def _device_args(devices: list[str], workdir: Path, spdm_port: int | None,
                 spdm_port2: int | None = None) -> tuple[list[str], list[str]]:
    """QEMU arguments for the devices, and extra -machine properties.

    ``nvme2`` is a second NVMe (serial ``NVME_SERIAL2``) whose DOE mailbox goes to
    ``spdm_port2``: the tests point it at a misbehaving responder.
    """
    args: list[str] = []
    machine_props: list[str] = []
    for dev in devices:
        if dev == "edu":
            args += ["-device", "edu"]
        elif dev == "nvme":
            args += _nvme_args(workdir, 0, NVME_SERIAL, spdm_port)
        elif dev == "nvme2":
            args += _nvme_args(workdir, 1, NVME_SERIAL2, spdm_port2)
        elif dev == "cxl":
            args += [
                "-object", "memory-backend-ram,id=cxl-vmem0,share=on,size=256M",
                "-device", "pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1",
                "-device", "cxl-rp,port=0,bus=cxl.1,id=cxl_rp0,chassis=0,slot=2",
                "-device", "cxl-type3,bus=cxl_rp0,volatile-memdev=cxl-vmem0,id=cxl-vmem0-dev,sn=0x1234",
            ]
            machine_props += ["cxl=on"]
            args += ["-M", "cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=4G"]
        else:
            raise VmError(f"unknown device {dev!r} (edu, nvme, nvme2, cxl)")
    return args, machine_props


def build_qemu_cmd(*, kernel: Path, initrd: Path, workdir: Path, machine: str,
                   devices: list[str], spdm_port: int | None, memory: str, smp: int,
                   repo: Path, extra_append: str = "", spdm_port2: int | None = None) -> list[str]:
    if machine not in MACHINES:
        raise VmError(f"unknown machine {machine!r} ({', '.join(MACHINES)})")
    mach, first, guest_args = MACHINES[machine]
    dev_args, props = _device_args(devices, workdir, spdm_port, spdm_port2)
    if props:
        mach = ",".join([mach, *props])
    append = " ".join(filter(None, [
        "console=ttyS0", "loglevel=4", "panic=-1", "oops=panic",
        f"pciauth.repo={repo}", guest_args, extra_append,
    ]))
    p9 = "virtio-9p-pci"
    return [
        QEMU, "-accel", "tcg", "-machine", mach, "-m", memory, "-smp", str(smp),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-monitor", "none", "-serial", f"file:{workdir / 'console.log'}",
        "-kernel", str(kernel), "-initrd", str(initrd), "-append", append,
        *first,
        "-fsdev", "local,id=fsroot,path=/,security_model=none,readonly=on",
        "-device", f"{p9},fsdev=fsroot,mount_tag=hostroot",
        "-fsdev", f"local,id=fsrepo,path={repo},security_model=none",
        "-device", f"{p9},fsdev=fsrepo,mount_tag=repo",
        "-fsdev", f"local,id=fsjob,path={workdir / 'job'},security_model=none",
        "-device", f"{p9},fsdev=fsjob,mount_tag=job",
        *dev_args,
    ]


def site_packages() -> list[str]:
    """The host interpreter's site-packages (a venv's own when run from one)."""
    import site

    return [p for p in site.getsitepackages() if os.path.isdir(p)]


def guest_script(command: str, repo: Path, env: dict[str, str] | None = None,
                 python: str = sys.executable) -> str:
    """The shell script the guest runs (``/run/job/cmd.sh``)."""
    lines = [
        "set -u",
        f"cd {shlex.quote(str(repo))}",
        f"export PYTHONPATH={shlex.quote(os.pathsep.join([str(repo), *site_packages()]))}",
        "export PYTHONDONTWRITEBYTECODE=1",
        # `python -S` skips site.py and its .pth files (seconds per start under TCG over 9p); the
        # interpreter's site-packages are on PYTHONPATH instead. Guest code starts Python as
        # "$PY" $PCIAUTH_PYFLAGS.
        "export PCIAUTH_PYFLAGS=-S",
        # The interpreter that runs the host side (a venv, pyenv or /usr/bin/python3): the
        # guest sees the host's / so the same path works there, with the same packages.
        f"export PY={shlex.quote(python)}",
    ]
    for k, v in (env or {}).items():
        lines.append(f"export {k}={shlex.quote(v)}")
    lines.append(command)
    return "\n".join(lines) + "\n"


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def run_vm(command: str, *, machine: str = "intel-iommu", devices: list[str] | None = None,
           spdm_port: int | None = None, timeout: float = 300.0, memory: str = "1G",
           smp: int = 1, env: dict[str, str] | None = None, repo: Path = REPO,
           extra_append: str = "", keep: bool = False,
           job_files: dict[str, Path] | None = None, spdm_port2: int | None = None) -> VmResult:
    """Boot a guest, run ``command`` (a shell command line) in it, return the result.

    ``job_files`` (name -> host file or directory) are copied into the job
    directory, which the guest sees at ``/run/job`` (the host's ``/tmp`` is
    hidden behind the guest's own tmpfs).
    """
    kernel = kernel_image()
    if kernel is None:
        raise VmError("guest kernel not built (python3 scripts/vm/kernel.py)")
    if not qemu_available():
        raise VmError(f"{QEMU} not found (scripts/vm/provision.sh)")
    initrd = ensure_initramfs()
    workdir = Path(tempfile.mkdtemp(prefix="pciauth-vm-"))
    try:
        (workdir / "job").mkdir()
        (workdir / "job" / "cmd.sh").write_text(guest_script(command, repo, env))
        for name, src in (job_files or {}).items():
            dst = workdir / "job" / name
            if Path(src).is_dir():
                shutil.copytree(src, dst)
            else:
                shutil.copy2(src, dst)
        cmd = build_qemu_cmd(kernel=kernel, initrd=initrd, workdir=workdir, machine=machine,
                             devices=list(devices or []), spdm_port=spdm_port, memory=memory,
                             smp=smp, repo=repo, extra_append=extra_append, spdm_port2=spdm_port2)
        started = time.monotonic()
        timed_out = False
        with open(workdir / "qemu.log", "wb") as qlog:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=qlog, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:  # timed out, or interrupted while waiting (Ctrl-C, pytest-timeout): QEMU goes too
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        seconds = time.monotonic() - started
        job = workdir / "job"
        console = _read(workdir / "console.log")
        qemu_out = _read(workdir / "qemu.log")
        status_text = _read(job / "status").strip()
        status: int | None = int(status_text) if status_text.isdigit() else None
        if status is None:
            for line in reversed(console.splitlines()):
                if line.startswith("PCIAUTH-EXIT="):
                    val = line.split("=", 1)[1].strip()
                    status = int(val) if val.isdigit() else None
                    break
        return VmResult(status=status, stdout=_read(job / "stdout"), stderr=_read(job / "stderr"),
                        console=console + ("\n--- qemu ---\n" + qemu_out if qemu_out else ""),
                        seconds=seconds, timed_out=timed_out, qemu_cmd=cmd, qemu_pid=proc.pid)
    finally:  # also when QEMU cannot start or a job file cannot be copied
        if keep:
            print(f"run.py: kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run one command in a pciauth test guest.")
    p.add_argument("--machine", choices=sorted(MACHINES), default="intel-iommu")
    p.add_argument("--device", action="append", default=[], choices=["edu", "nvme", "nvme2", "cxl"])
    p.add_argument("--spdm-port", type=int, default=None,
                   help="give the NVMe spdm_port=N (a responder must listen there)")
    p.add_argument("--responder-pki", metavar="DIR", default=None,
                   help="start `pciauth responder --listen PORT --pki DIR` on the host first")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--memory", default="1G")
    p.add_argument("--smp", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("command", nargs=argparse.REMAINDER, help="command to run in the guest")
    args = p.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        p.error("no command given")
    from responder import host_responder

    def go(port: int | None) -> VmResult:
        return run_vm(shlex.join(cmd), machine=args.machine, devices=args.device, spdm_port=port,
                      timeout=args.timeout, memory=args.memory, smp=args.smp, keep=args.keep)

    try:
        if args.responder_pki:
            with host_responder(Path(args.responder_pki), args.spdm_port) as port:
                res = go(port)
        else:
            res = go(args.spdm_port)
    except VmError as e:
        print(f"run.py: {e}", file=sys.stderr)
        return 125
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    print(f"run.py: status={res.status} seconds={res.seconds:.1f}"
          f"{' TIMED OUT' if res.timed_out else ''}", file=sys.stderr)
    if res.status is None:
        sys.stderr.write("\n".join(res.console.splitlines()[-30:]) + "\n")
        return 125
    return res.status


if __name__ == "__main__":
    sys.exit(main())
