"""The fuzz harnesses live in scripts/fuzz/: put them on sys.path for the smoke and regression tests."""

from __future__ import annotations

import os
import sys

HARNESS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           "scripts", "fuzz")
if HARNESS_DIR not in sys.path:
    sys.path.insert(0, HARNESS_DIR)
