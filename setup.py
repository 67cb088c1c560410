"""Build and install pciauth.

The kernel UAPI bindings (VFIO, iommufd) are an out-of-line cffi module built
from ``cffi_build/uapi_build.py``; it needs only gcc and the Python headers.
"""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="pciauth",
    version="0.1.0",
    description="Authenticate PCIe devices with CMA/SPDM over DOE and check their DMA through the IOMMU",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["pciauth", "pciauth.*"]),
    setup_requires=["cffi>=1.15"],
    cffi_modules=["cffi_build/uapi_build.py:ffibuilder"],
    install_requires=[
        "cffi>=1.15",
        "pyudev>=0.24",
        "ioctl-opt>=1.3",
        "cryptography>=41",
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-timeout>=2", "hypothesis>=6", "ruff>=0.4"],
        "fuzz": ["atheris>=2"],  # scripts/fuzz: coverage-guided; without it, random mutation
    },
    entry_points={
        "console_scripts": ["pciauth=pciauth.cli:entry_point"],
        "pytest11": ["pciauth=pciauth.pytest_plugin"],
    },
    zip_safe=False,
)
