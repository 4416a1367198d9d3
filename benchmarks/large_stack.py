"""Peak memory of training on and batch-denoising a stack larger than the
memory it is allowed to use.

    python -m benchmarks.large_stack [--gb 3] [--train-seconds 20]

Builds a uint16 memory-mapped .npy stack of about ``--gb`` GB in a temporary
folder, trains on it (patches only), then runs ``denoise_files`` over it
with ``dtype="keep"`` (written page by page), each in a fresh process, and
records the peak RSS of each. A tiny network keeps the denoising pass short:
memory, not quality, is measured here.
"""

from __future__ import annotations

import argparse
import datetime
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"

_SAMPLER = """
import threading, time
peak = [0]
def _sample():
    while True:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                peak[0] = max(peak[0], int(line.split()[1]) // 1024)
        time.sleep(0.05)
threading.Thread(target=_sample, daemon=True).start()
"""

_TRAIN = _SAMPLER + """
import resource, sys, numpy as np
from napari_b2u.api import train
stack = np.load(sys.argv[1], mmap_mode="r")
model = train(stack, time_budget=float(sys.argv[3]), depth=2, features=4, device="cpu")
model.save(sys.argv[2])
time.sleep(0.1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, model.summary.steps, peak[0])
"""

_DENOISE = _SAMPLER + """
import resource, sys
from napari_b2u.api import denoise_files
denoise_files(sys.argv[1], sys.argv[2], sys.argv[3], dtype="keep", progress=False, device="cpu")
time.sleep(0.1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, peak[0])
"""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=3.0)
    parser.add_argument("--train-seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    side = 1024
    frames = int(args.gb * 2**30 / (side * side * 2))
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        tmp = Path(tmp)
        path = tmp / "big.npy"
        t0 = time.perf_counter()
        stack = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=(frames, side, side))
        rng = np.random.default_rng(0)
        block = (rng.poisson(200, (16, side, side))).astype(np.uint16)
        for i in range(0, frames, 16):
            stack[i : i + 16] = block[: min(16, frames - i)]
        stack.flush()
        del stack
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _TRAIN, str(path), str(tmp / "m.safetensors"),
                              str(args.train_seconds)], capture_output=True, text=True, check=True)
        train_rss, steps, train_anon = (float(v) for v in out.stdout.split())
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _DENOISE, str(path), str(tmp / "out"),
                              str(tmp / "m.safetensors")], capture_output=True, text=True, check=True)
        denoise_rss, denoise_anon = (float(v) for v in out.stdout.split()[-2:])
        denoise_s = time.perf_counter() - t0
        written = (tmp / "out" / "big_b2u.tif").stat().st_size
    report = {
        "command": "python -m benchmarks.large_stack " + " ".join(argv or sys.argv[1:]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "host": socket.gethostname(),
        "stack": {"shape": [frames, side, side], "dtype": "uint16", "gb": round(frames * side * side * 2 / 2**30, 2)},
        "build_s": round(build_s, 1),
        "note": "peak_rss_mb counts the memory-mapped input's file pages (page cache, reclaimable); "
        "peak_anon_mb is the process's own memory (RssAnon sampled every 50 ms)",
        "train": {"seconds": round(train_s, 1), "steps": int(steps), "peak_rss_mb": round(train_rss),
                  "peak_anon_mb": round(train_anon)},
        "denoise_files": {"seconds": round(denoise_s, 1), "peak_rss_mb": round(denoise_rss),
                          "peak_anon_mb": round(denoise_anon),
                          "output_gb": round(written / 2**30, 2)},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{datetime.date.today()}-{socket.gethostname()}-large-stack.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
