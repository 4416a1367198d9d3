"""What machine a result came from: wall-clock figures only compare within one CPU model."""

from __future__ import annotations

import datetime
import platform
import socket


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
