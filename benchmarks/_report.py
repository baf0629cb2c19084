"""What a micro-benchmark writes: its JSON, stamped with the machine and the time, and the
markdown table beside it (``x.json`` and ``x.md``)."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any


def stamped(**fields: Any) -> dict[str, Any]:
    """``fields`` with the machine and the time of the run."""
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    return {**fields, "machine": machine, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write(out: Path, report: dict[str, Any], table: list[str]) -> None:
    """``report`` to ``out``, ``table`` to ``out`` with ``.md``, and the table to stdout."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
