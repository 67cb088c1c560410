"""Every fuzz target: name -> (harness, seed builder). See README.md in this directory."""

from __future__ import annotations

import _paths  # noqa: F401
import targets_hw
import targets_io
import targets_spdm

TARGETS: dict[str, tuple] = {**targets_spdm.TARGETS, **targets_io.TARGETS, **targets_hw.TARGETS}
