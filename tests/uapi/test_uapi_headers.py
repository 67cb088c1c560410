"""Compare pciauth's cffi struct layouts with the real kernel UAPI headers.

Compiles a small C program with gcc against ``linux/vfio.h`` and ``linux/iommufd.h``
(the system's, or ``$PCIAUTH_UAPI_INCLUDE``, e.g. a kernel tree's ``usr/include`` after
``make headers_install``) that prints sizeof and offsetof of every field pciauth
declares, and checks each equals the cffi view. Needs headers >= 6.6 (cdev and
iommufd); CI installs them with ``scripts/install-uapi-headers.sh``.

Structs grow at the end across kernel versions (``iommu_hwpt_alloc``: 24 bytes on 6.6,
48 now). A field the headers lack is accepted only when it sits past the end of the
header's struct; a header struct longer than pciauth's is accepted when every field
pciauth knows sits at the same offset (the kernel takes the shorter size).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from pciauth.uapi.structs import ffi

STRUCTS = [
    "vfio_group_status",
    "vfio_info_cap_header",
    "vfio_iommu_type1_info",
    "vfio_iova_range",
    "vfio_iommu_type1_info_cap_iova_range",
    "vfio_iommu_type1_dma_map",
    "vfio_iommu_type1_dma_unmap",
    "vfio_device_info",
    "vfio_region_info",
    "vfio_device_bind_iommufd",
    "vfio_device_attach_iommufd_pt",
    "vfio_device_detach_iommufd_pt",
    "iommu_destroy",
    "iommu_ioas_alloc",
    "iommu_iova_range",
    "iommu_ioas_iova_ranges",
    "iommu_ioas_allow_iovas",
    "iommu_ioas_map",
    "iommu_ioas_unmap",
    "iommu_hwpt_alloc",
    "iommu_hw_info",
]
MIN_VERSION = (6, 6)


def _include_dir() -> str | None:
    return os.environ.get("PCIAUTH_UAPI_INCLUDE") or None


def _header_version(include: str | None) -> tuple[int, int] | None:
    base = include or "/usr/include"
    try:
        with open(os.path.join(base, "linux", "version.h")) as f:
            text = f.read()
    except OSError:
        return None
    m = re.search(r"#define LINUX_VERSION_CODE (\d+)", text)
    if not m:
        return None
    code = int(m.group(1))
    return code >> 16, (code >> 8) & 0xFF


def _fields(name: str) -> list[tuple[str, int]]:
    return [(fname, f.offset) for fname, f in ffi.typeof(f"struct {name}").fields]


def _program(members: dict[str, list[str]]) -> str:
    lines = [
        "#include <stddef.h>",
        "#include <stdio.h>",
        "#include <linux/vfio.h>",
        "#include <linux/iommufd.h>",
        "int main(void) {",
    ]
    for name, fields in members.items():
        lines.append(f'    printf("{name} sizeof %zu\\n", sizeof(struct {name}));')
        for f in fields:
            lines.append(f'    printf("{name} {f} %zu\\n", offsetof(struct {name}, {f}));')
    lines += ["    return 0;", "}"]
    return "\n".join(lines) + "\n"


def _compile_and_run(tmp_path, members: dict[str, list[str]], include: str | None):
    src = tmp_path / "layout.c"
    exe = tmp_path / "layout"
    src.write_text(_program(members))
    cmd = ["gcc", "-std=gnu11", "-o", str(exe), str(src)]
    if include:
        cmd[1:1] = ["-I", include]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode:
        return None, proc.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30, check=True).stdout
    return out, ""


def probe_layouts(tmp, include: str | None) -> tuple[dict[str, dict[str, int]], dict[str, set[str]]]:
    """sizeof/offsetof from the headers; fields the headers lack are dropped and reported."""
    members = {name: [f for f, _ in _fields(name)] for name in STRUCTS}
    missing: dict[str, set[str]] = {}
    for _attempt in range(len(STRUCTS) * 4):
        out, err = _compile_and_run(tmp, members, include)
        if out is not None:
            break
        # Drop the fields these headers do not have, then try again.
        found = re.findall(r"struct (\w+)[’'] has no member named [‘'](\w+)[’']", err)
        if not found:
            raise AssertionError(f"compiling the layout probe failed:\n{err}")
        for struct_name, field in found:
            missing.setdefault(struct_name, set()).add(field)
            if field in members[struct_name]:
                members[struct_name].remove(field)
    else:
        raise AssertionError("could not compile the layout probe")
    layouts: dict[str, dict[str, int]] = {}
    for line in out.splitlines():
        name, field, value = line.split()
        layouts.setdefault(name, {})[field] = int(value)
    return layouts, missing


#: Structs whose newer kernels add fields pciauth does not use (the kernel takes the shorter size).
GROWING = {
    "vfio_device_bind_iommufd",
    "vfio_device_attach_iommufd_pt",
    "vfio_device_detach_iommufd_pt",
    "iommu_hw_info",
    "iommu_hwpt_alloc",
}


def layout_problems(name: str, header: dict[str, int], absent: set[str]) -> list[str]:
    """How pciauth's cffi layout of ``name`` disagrees with the headers' (empty: it agrees)."""
    problems = []
    ours = _fields(name)
    for fname, offset in ours:
        if fname in absent:
            if offset < header["sizeof"]:
                problems.append(
                    f"{name}.{fname} at {offset} is missing from the headers but lies inside "
                    f"their {header['sizeof']}-byte struct"
                )
        elif header[fname] != offset:
            problems.append(f"{name}.{fname}: headers say {header[fname]}, pciauth {offset}")
    our_size = ffi.sizeof(f"struct {name}")
    if absent:
        # An older kernel's struct must end where pciauth's first extra field begins.
        first_absent = min(offset for fname, offset in ours if fname in absent)
        if header["sizeof"] != first_absent:
            problems.append(
                f"{name}: headers' size {header['sizeof']} is not where pciauth's extra fields begin"
            )
    elif header["sizeof"] < our_size or (header["sizeof"] > our_size and name not in GROWING):
        problems.append(f"{name}: headers' size {header['sizeof']}, pciauth {our_size}")
    return problems


@pytest.fixture(scope="module")
def header_layouts(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    include = _include_dir()
    base = include or "/usr/include"
    for header in ("linux/vfio.h", "linux/iommufd.h"):
        if not os.path.exists(os.path.join(base, header)):
            pytest.skip(
                f"{base}/{header} is missing: install kernel UAPI headers >= 6.6 "
                "(scripts/install-uapi-headers.sh) or set PCIAUTH_UAPI_INCLUDE"
            )
    version = _header_version(include)
    if version is None or version < MIN_VERSION:
        pytest.skip(
            f"kernel UAPI headers in {base} are {version or 'of unknown version'}, need >= 6.6 "
            "(scripts/install-uapi-headers.sh)"
        )
    layouts, missing = probe_layouts(tmp_path_factory.mktemp("uapi"), include)
    return layouts, missing, version


@pytest.mark.parametrize("name", STRUCTS)
def test_layout_matches_kernel_headers(header_layouts, name: str) -> None:
    layouts, missing, version = header_layouts
    assert layout_problems(name, layouts[name], missing.get(name, set())) == [], f"headers {version}"


# ---- the comparison itself, against hand-made headers (an old kernel, a wrong layout) ----
def _fake_headers(tmp_path, edit) -> str:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "uapi_build", os.path.join(os.path.dirname(__file__), "..", "..", "cffi_build", "uapi_build.py")
    )
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    text = edit(build.STRUCTS)
    inc = tmp_path / "include" / "linux"
    inc.mkdir(parents=True)
    (inc / "vfio.h").write_text(
        "#include <stdint.h>\ntypedef uint64_t pa_aligned_u64 __attribute__((aligned(8)));\n" + text
    )
    (inc / "iommufd.h").write_text("/* in vfio.h */\n")
    return str(tmp_path / "include")


HWPT_66 = """struct iommu_hwpt_alloc {
    uint32_t size;
    uint32_t flags;
    uint32_t dev_id;
    uint32_t pt_id;
    uint32_t out_hwpt_id;
    uint32_t __reserved;
};"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_comparison_accepts_an_older_kernels_shorter_struct(tmp_path) -> None:
    def to_66(text: str) -> str:
        start = text.index("struct iommu_hwpt_alloc {")
        end = text.index("};", start) + 2
        return text[:start] + HWPT_66 + text[end:]

    layouts, missing = probe_layouts(tmp_path, _fake_headers(tmp_path, to_66))
    assert missing == {"iommu_hwpt_alloc": {"data_type", "data_len", "data_uptr", "fault_id", "__reserved2"}}
    assert layouts["iommu_hwpt_alloc"]["sizeof"] == 24
    for name in STRUCTS:
        assert layout_problems(name, layouts[name], missing.get(name, set())) == []


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_comparison_catches_a_moved_field(tmp_path) -> None:
    def shift(text: str) -> str:
        # A kernel whose iommu_ioas_map had one more u32 before user_va (it does not): offsets move.
        return text.replace(
            "    uint32_t __reserved;\n    pa_aligned_u64 user_va;",
            "    uint32_t __reserved;\n    uint32_t extra[2];\n    pa_aligned_u64 user_va;",
        )

    layouts, missing = probe_layouts(tmp_path, _fake_headers(tmp_path, shift))
    problems = layout_problems(
        "iommu_ioas_map", layouts["iommu_ioas_map"], missing.get("iommu_ioas_map", set())
    )
    assert any("iommu_ioas_map.user_va: headers say 24, pciauth 16" in p for p in problems)
