"""What machine a result came from: wall-clock figures only compare within one CPU model."""

from __future__ import annotations

import datetime
import json
import platform
import socket
import sys
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_meta(command: str, started: datetime.datetime, **extra) -> dict:
    """The ``meta`` block of a results file: the command, when, where, what torch."""
    import torch

    return {"command": command, "started": started.isoformat(timespec="seconds"),
            "host": socket.gethostname(), "cpu": cpu_model(), "torch": torch.__version__, **extra}  # fmt: skip


def write_json(out: Path, tag: str, module: str, argv, started: datetime.datetime, rows: list,
               **extra) -> Path:
    """``<out>/<date>-<host>-<tag>.json``: ``{"meta": ..., "rows": rows}``, the meta
    naming the command (``python -m <module> <argv>``) and ``extra``."""
    command = f"python -m {module} " + " ".join(sys.argv[1:] if argv is None else argv)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{started:%Y-%m-%d}-{socket.gethostname()}-{tag}.json"
    path.write_text(json.dumps({"meta": run_meta(command, started, **extra), "rows": rows}, indent=1))
    return path
