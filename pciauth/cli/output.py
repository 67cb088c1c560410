"""Small output helpers shared by the commands: JSON dumping and aligned tables."""

from __future__ import annotations

import json
import sys


def error_object(type_: str, message: str, exit_code: int, **fields: object) -> dict:
    """The ``error`` object of ``--json`` output for a failure that is not a raised pciauth
    error: the keys of :meth:`pciauth.errors.PciauthError.to_dict`, null when unknown, and
    ``fields`` (``errno``, ``device``, ``path``, ``hint``, or more such as ``step``)."""
    out: dict = {"type": type_, "message": message, "exit_code": int(exit_code), "errno": None,
                 "device": None, "path": None, "hint": None}
    out.update(fields)
    return out


def print_json(obj: dict) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def print_table(rows: list[list[str]], header: list[str] | None = None) -> None:
    all_rows = ([header] if header else []) + rows
    if not all_rows:
        return
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(all_rows[0]))]
    for row in all_rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
