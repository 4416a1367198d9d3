"""Speed and memory: training throughput and achieved GFLOP/s against the
measured fp32 matmul peak, inference throughput, peak RSS of tiled inference.

    python -m benchmarks.speed [--threads 2] [--quick]

Writes benchmarks/results/<date>-<host>-speed.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from napari_b2u.config import TrainConfig
from napari_b2u.core import UNet
from napari_b2u.engine.training import b2u_forward

RESULTS = Path(__file__).parent / "results"


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Measured fp32 matmul GFLOP/s (the machine's practical peak)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def training_step(config: TrainConfig, steps: int = 20) -> dict:
    """Seconds per B2U training step, its FLOPs and input megapixels per second."""
    torch.manual_seed(0)
    net = UNet(1, features=config.features, depth=config.depth).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    y = torch.randn(config.batch_size, 1, config.patch_size, config.patch_size)

    def step():
        loss, _, _ = b2u_forward(net, y, 2.0, config)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as counter:
        step()
    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sec = (time.perf_counter() - t0) / steps
    flops = counter.get_total_flops()
    return {
        "config": {k: getattr(config, k) for k in ("cell", "depth", "features", "patch_size", "batch_size")},
        "s_per_step": round(sec, 4),
        "gflop_per_step": round(flops / 1e9, 2),
        "gflops": round(flops / sec / 1e9, 1),
        "input_mpx_per_s": round(config.batch_size * config.patch_size**2 / sec / 1e6, 4),
    }


def inference(size: int, mode: str, config: TrainConfig) -> dict:
    from napari_b2u.engine.inference import denoise_plane

    net = UNet(1, features=config.features, depth=config.depth).eval().to(memory_format=torch.channels_last)
    x = np.random.default_rng(0).normal(size=(1, size, size)).astype(np.float32)
    denoise_plane(net, x[:, :64, :64], mode=mode, cell=config.cell, lam=20, device=torch.device("cpu"))
    t0 = time.perf_counter()
    denoise_plane(net, x, mode=mode, cell=config.cell, lam=20, device=torch.device("cpu"))
    sec = time.perf_counter() - t0
    return {"size": size, "mode": mode, "seconds": round(sec, 3), "mpx_per_s": round(size * size / sec / 1e6, 3)}


_RSS_SCRIPT = """
import resource, sys, numpy as np
from napari_b2u.api import Model, TrainConfig
from napari_b2u.core import UNet
shape = tuple(int(s) for s in sys.argv[1].split('x'))
image = np.lib.format.open_memmap(sys.argv[2], mode='w+', dtype=np.uint16, shape=shape)
image[:] = 1000
del image
image = np.load(sys.argv[2], mmap_mode='r')
net = UNet(1, features=32, depth=4)
model = Model(net, TrainConfig(), np.array([1000.0]), np.array([100.0]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = model.denoise(image, mode=sys.argv[3], device='cpu')
print(before / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def peak_rss(shape: str, mode: str, tmp: Path) -> dict:
    """Peak RSS (MB) of denoising a memory-mapped uint16 image in a fresh process."""
    path = tmp / f"rss-{shape}.npy"
    t0 = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, shape, str(path), mode],
                            capture_output=True, text=True, check=True)
    path.unlink(missing_ok=True)
    before, after = (float(v) for v in result.stdout.split())
    return {"shape": shape, "mode": mode, "peak_rss_mb": round(after), "rss_before_mb": round(before),
            "seconds": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="skip the large-image memory runs")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = TrainConfig()
    report = {"threads": args.threads, "torch": torch.__version__, "host": socket.gethostname(),
              "matmul_peak_gflops": round(matmul_peak(), 1)}
    report["training"] = [training_step(base.replace(**o)) for o in (
        {}, {"cell": 4}, {"depth": 5, "features": 48}, {"features": 16}, {"depth": 3}, {"patch_size": 128, "batch_size": 1})]
    for t in report["training"]:
        t["fraction_of_peak"] = round(t["gflops"] / report["matmul_peak_gflops"], 3)
    report["inference"] = [inference(512, m, base) for m in ("visible", "weighted")]
    if not args.quick:
        with tempfile.TemporaryDirectory() as tmp:
            report["memory"] = [peak_rss("4096x4096", "weighted", Path(tmp)), peak_rss("200x512x512", "visible", Path(tmp))]
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"{datetime.date.today()}-{socket.gethostname()}-speed"
    report["command"] = "python -m benchmarks.speed " + " ".join(argv or sys.argv[1:])
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
