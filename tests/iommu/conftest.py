"""Fixtures for the IOMMU backend tests: a fake kernel and page-aligned buffers."""

from __future__ import annotations

import mmap
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from fake_vfio_common import Buf
from fake_vfio_kernel import FakeKernel

from pciauth.uapi import sys as usys


@pytest.fixture
def kernel():
    k = FakeKernel()
    with usys.use_kernel(k):
        yield k


@pytest.fixture
def buf():
    return Buf(4 * mmap.PAGESIZE)


@pytest.fixture
def make_buf():
    return Buf
