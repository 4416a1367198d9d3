"""Speed and memory: training steps and achieved GFLOP/s against the machine's
measured matmul peak *of the precision each runs in* (fp32 and bf16),
inference throughput, the self-ensemble's cost, 3D steps, and peak memory.

    python -m benchmarks.speed [--threads 2] [--quick] [--precisions fp32,bf16] [--tag speed]
    python -m benchmarks.speed --interleaved 4 --tag ...   # the default step only, 4 timings each in turn (JSON only)
    python -m benchmarks.speed --compile 3 --tag ...       # eager against torch.compile, 3 timings each in turn (JSON only)
    python -m benchmarks.speed --memory-only --tag ...     # only the peak-memory rows (JSON only)
    python -m benchmarks.speed --memory-only --worker-thread --tag ...   # each denoised in a second thread
    python -m benchmarks.speed --memory-only --memory-precision bf16 --tag ...   # in bf16, not auto's choice
    python -m benchmarks.speed --memory-only --tile-depths default,64 --tag ...  # the volume in 32- and 64-slice tiles

Writes benchmarks/results/<date>-<host>-<tag>.{json,md}. Run it on an idle
machine: every figure is wall-clock.
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

from benchmarks.machine import cpu_model
from napari_b2u.config import TrainConfig, z_levels
from napari_b2u.core import UNet
from napari_b2u.engine._malloc import keep_memory
from napari_b2u.engine.device import memory_format
from napari_b2u.engine.precision import (
    TASKS,
    Precision,
    auto_precision,
    cpu_bf16_speedup,
    cpu_has_bf16_instructions,
)
from napari_b2u.engine.training import _GradClip, b2u_forward

RESULTS = Path(__file__).parent / "results"
PRECISIONS = ("fp32", "bf16")


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 10, budget_s: float = 5.0) -> float:
    """Measured matmul GFLOP/s in ``dtype`` (the machine's practical peak for it),
    on ``size``² matrices, or smaller ones where those would take more than about
    ``budget_s``: bf16 on a CPU without AMX or AVX512-BF16 is emulated at about
    1 GFLOP/s (AMD EPYC, AVX2), where ``size`` 2048 took minutes."""
    n = 256
    while True:  # grow n up to size while the next size's timing fits the budget
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        t0 = time.perf_counter()
        a @ b  # also the warm-up
        first = time.perf_counter() - t0
        if n >= size or 8 * first * (repeats + 1) > budget_s:
            break
        n *= 2
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def _net(config: TrainConfig, layout: torch.memory_format | None = None) -> UNet:
    torch.manual_seed(0)
    z_pool = z_levels(config, config.patch_depth) if config.spatial_dims == 3 else 0
    net = UNet(1, features=config.features, depth=config.net_depth, dims=config.spatial_dims, z_pool=z_pool)
    return net.to(memory_format=layout or memory_format(net))


def training_step(config: TrainConfig, precision: str, steps: int = 20, layout=None,
                  compiled: bool = False) -> dict:  # fmt: skip
    """Seconds per B2U training step in ``precision``, its FLOPs, GFLOP/s.

    The step of `train_events`, with its gradient clipping and its allocator
    setting (`keep_memory`: without it each step page-faults its activations
    in again, which cost fp32 more than bf16 and made the bf16/fp32 ratio
    look larger than training sees); the patch sampler is left out.
    ``compiled``: the network through `torch.compile` (its first step, the
    compilation, is timed apart as ``first_step_s``; FLOPs are not counted)."""
    net = _net(config, layout)
    forward = torch.compile(net, dynamic=False) if compiled else net
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    shape = (config.patch_yx,) * 2 if config.spatial_dims == 2 else (config.patch_depth, config.patch_yx, config.patch_yx)
    y = torch.randn(config.batch_size, 1, *shape)
    prec = Precision(precision, "cpu")
    scaler = prec.scaler()
    clip = _GradClip(config.grad_clip, torch.device("cpu"))

    def step():
        loss, _, _ = b2u_forward(forward, y, 2.0, config, prec)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        clip(net)
        scaler.step(opt)
        scaler.update()

    with keep_memory():
        t0 = time.perf_counter()
        if compiled:
            step()
            flops = 0
        else:
            with FlopCounterMode(display=False) as counter:
                step()
            flops = counter.get_total_flops()
        first = time.perf_counter() - t0
        for _ in range(3):
            step()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sec = (time.perf_counter() - t0) / steps
    keys = ("cell", "net_depth", "features", "patch_yx", "patch_depth", "batch_size", "spatial_dims", "mask_z")
    return {
        "config": {k: getattr(config, k) for k in keys},
        "precision": precision,
        "layout": str(layout or memory_format(net)).replace("torch.", ""),
        "s_per_step": round(sec, 4),
        "steps_per_s": round(1 / sec, 2),
        "gflop_per_step": round(flops / 1e9, 2),
        "gflops": round(flops / sec / 1e9, 1),
        "first_step_s": round(first, 2),
    }


def interleaved(config: TrainConfig, rounds: int, steps: int = 40) -> dict:
    """The bf16/fp32 ratio of ``config``'s training step, from ``rounds``
    timings of each precision taken in turn (a single timing on a shared
    virtual machine varies by 20 % and more between runs): medians, and each
    timing."""
    timings = {p: [] for p in PRECISIONS}
    for _ in range(rounds):
        for p in PRECISIONS:
            timings[p].append(training_step(config, p, steps=steps)["s_per_step"])
    median = {p: float(np.median(t)) for p, t in timings.items()}
    return {"rounds": rounds, "steps": steps, "s_per_step": timings, "median_s_per_step": median,
            "bf16_vs_fp32": round(median["fp32"] / median["bf16"], 3)}  # fmt: skip


def compile_rounds(config: TrainConfig, precisions, rounds: int, size: int = 512) -> dict:
    """Eager against `torch.compile` (inductor; for inference with its
    ``freezing``, which folds the weights in and fuses each convolution with
    its activation), in turn ``rounds`` times: the default training step and
    one `visible` network pass on a ``size``² plane, seconds, and the seconds
    of the first compiled call (the compilation, once per input shape). Both
    inside `keep_memory`: outside it the passes' timings depend on how far
    glibc's mmap threshold has risen, which changes from pass to pass."""
    import torch._inductor.config as inductor

    out: dict = {"rounds": rounds, "size": size}
    for p in precisions:
        runs = {"eager": [], "compiled": []}
        for _ in range(rounds):
            for mode in runs:
                runs[mode].append(training_step(config, p, compiled=mode == "compiled"))
        out[f"train_{p}"] = {m: [r["s_per_step"] for r in rs] for m, rs in runs.items()}
        out[f"train_{p}"]["compile_s"] = [r["first_step_s"] for r in runs["compiled"]]
        prec = Precision(p, "cpu")
        net = prec.for_inference(_net(config).eval())
        x = torch.randn(1, 1, size, size).to(next(net.parameters()).dtype, memory_format=memory_format(net))
        freezing, inductor.freezing = inductor.freezing, True
        try:
            with torch.no_grad(), keep_memory():
                t0 = time.perf_counter()
                fast = torch.compile(net, dynamic=False)
                fast(x)
                compile_s = time.perf_counter() - t0
                timings = {"eager": [], "compiled": []}
                for _ in range(rounds):
                    for mode, f in (("eager", net), ("compiled", fast)):
                        f(x)
                        t0 = time.perf_counter()
                        for _ in range(8):
                            f(x)
                        timings[mode].append(round((time.perf_counter() - t0) / 8, 4))
        finally:
            inductor.freezing = freezing
        out[f"infer_{p}"] = {**timings, "compile_s": round(compile_s, 1)}
        for task in ("train", "infer"):
            t = out[f"{task}_{p}"]
            t["compiled_vs_eager"] = round(float(np.median(t["eager"]) / np.median(t["compiled"])), 3)
    return out


def inference(size: int, mode: str, config: TrainConfig, precision: str, ensemble: bool = False) -> dict:
    """Seconds to denoise one ``size`` x ``size`` plane (default tiling), in the
    allocator setting `Model.denoise` runs a stack in."""
    from napari_b2u.engine._malloc import INFERENCE_MMAP_ABOVE
    from napari_b2u.engine.inference import denoise_ensemble

    prec = Precision(precision, "cpu")
    net = prec.for_inference(_net(config).eval())  # as Model.denoise runs it
    x = np.random.default_rng(0).normal(size=(1, size, size)).astype(np.float32)
    kwargs = dict(mode=mode, cell=config.cell, lam=20, device=torch.device("cpu"), precision=prec)
    denoise_ensemble(net, x[:, :64, :64], **kwargs)
    t0 = time.perf_counter()
    with keep_memory(INFERENCE_MMAP_ABOVE):
        denoise_ensemble(net, x, ensemble=ensemble, **kwargs)
    sec = time.perf_counter() - t0
    return {"size": size, "mode": mode, "precision": precision, "ensemble": ensemble,
            "seconds": round(sec, 3), "mpx_per_s": round(size * size / sec / 1e6, 3)}  # fmt: skip


_RSS_SCRIPT = """
import resource, sys, numpy as np
from napari_b2u.api import Model, TrainConfig
from napari_b2u.core import UNet

def peak_mb():
    # VmHWM is this process's own peak; ru_maxrss is not: Linux carries it across
    # fork and exec, so a child starts at its parent's (the benchmark's) peak.
    try:
        with open('/proc/self/status') as f:
            return next(int(l.split()[1]) for l in f if l.startswith('VmHWM:')) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

shape = tuple(int(s) for s in sys.argv[1].split('x'))
image = np.lib.format.open_memmap(sys.argv[2], mode='w+', dtype=np.uint16, shape=shape)
image[:] = 1000
del image
image = np.load(sys.argv[2], mmap_mode='r')
dims = int(sys.argv[4])
net = UNet(1, features=16, depth=4, dims=dims, z_pool=1 if dims == 3 else 0)
config = TrainConfig(spatial_dims=dims)
model = Model(net, config, np.array([1000.0]), np.array([100.0]))
before = peak_mb()
out = []
def run():
    try:
        depth = None if sys.argv[7] == 'default' else int(sys.argv[7])
        out.append(model.denoise(image, axes='ZYX' if dims == 3 else None, mode=sys.argv[3], device='cpu',
                                 precision=sys.argv[6], tile_depth=depth))
    except BaseException as exc:
        out.append(exc)
if sys.argv[5] == 'thread':  # as napari's worker runs it: glibc gives the thread its own arena
    import threading
    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
else:
    run()
if isinstance(out[0], BaseException):
    raise out[0]
assert out[0].shape == shape, out[0].shape
print(before, peak_mb())
"""


def peak_rss(shape: str, mode: str, tmp: Path, dims: int = 2, thread: bool = False, precision: str = "auto",
             tile_depth: int | None = None) -> dict:
    """Peak RSS (MB) of denoising a memory-mapped uint16 image in a fresh process
    (its own: ``VmHWM``, where Linux has it; until 2026-12-07 ``ru_maxrss``,
    which a child inherits from its parent, so rows below the benchmark
    process's own peak read that peak); ``thread``: in a second thread, as
    napari's worker denoises, where glibc allocates from a non-main arena;
    ``precision``: `Model.denoise`'s (``auto``: what a user gets); ``tile_depth``
    its Z tiles of volumes (default `TILE_DEPTH`)."""
    path = tmp / f"rss-{shape}.npy"
    t0 = time.perf_counter()
    argv = [shape, str(path), mode, str(dims), "thread" if thread else "main", precision,
            "default" if tile_depth is None else str(tile_depth)]  # fmt: skip
    result = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, *argv], capture_output=True, text=True, check=True)
    path.unlink(missing_ok=True)
    before, after = (float(v) for v in result.stdout.split())
    return {"shape": shape, "mode": mode, "spatial_dims": dims, "thread": thread, "precision": precision,
            "tile_depth": tile_depth, "peak_rss_mb": round(after),
            "rss_before_mb": round(before), "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip


def memory_rows(tmp: Path, thread: bool = False, precision: str = "auto", tile_depths=(None,)) -> list[dict]:
    """The peak-memory rows; the volume once per Z tile depth of ``tile_depths``."""
    cases = [("4096x4096", "weighted", 2, None), ("4096x4096", "visible", 2, None),
             ("200x512x512", "visible", 2, None)]  # fmt: skip
    cases += [("64x1024x1024", "visible", 3, d) for d in tile_depths]
    return [peak_rss(shape, mode, tmp, dims, thread, precision, d) for shape, mode, dims, d in cases]


def table(report: dict) -> str:
    peaks = report["matmul_peak_gflops"]
    lines = [
        f"matmul peak: fp32 {peaks['fp32']} GFLOP/s, bf16 {peaks['bf16']} GFLOP/s "
        f"({peaks['bf16'] / peaks['fp32']:.1f}x); bf16 instructions: {report['bf16_instructions']}; "
        f"auto's probe, bf16 vs fp32: training {report['probe_speedup']['train']}x, inference "
        f"{report['probe_speedup']['infer']}x, so auto picks {report['auto']['train']} / {report['auto']['infer']}",
        "",
        "| config | precision | layout | s/step | steps/s | GFLOP/step | GFLOP/s | of its peak | vs fp32 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    fp32 = {json.dumps(t["config"]) + t["layout"]: t for t in report["training"] if t["precision"] == "fp32"}
    for t in report["training"]:
        base = fp32.get(json.dumps(t["config"]) + t["layout"])
        ratio = f"{base['s_per_step'] / t['s_per_step']:.2f}x" if base else "-"
        c = t["config"]
        name = f"{c['spatial_dims']}D cell {c['cell']}, depth {c['net_depth']}, {c['features']} f, patch {c['patch_yx']}, batch {c['batch_size']}"
        if c["spatial_dims"] == 3:
            name += ", mask Z" if c["mask_z"] else ", mask YX"
        lines.append(f"| {name} | {t['precision']} | {t['layout']} | {t['s_per_step']} | {t['steps_per_s']} | "
                     f"{t['gflop_per_step']} | {t['gflops']} | {t['fraction_of_peak']:.0%} | {ratio} |")  # fmt: skip
    lines += ["", "| inference | precision | ensemble | seconds | Mpx/s |", "|---|---|---|---|---|"]
    for i in report["inference"]:
        lines.append(f"| {i['size']}² {i['mode']} | {i['precision']} | {i['ensemble']} | {i['seconds']} | {i['mpx_per_s']} |")
    if "memory" in report:
        lines += ["", "| memory | mode | peak RSS MB | seconds |", "|---|---|---|---|"]
        for m in report["memory"]:
            where = ", worker thread" if m.get("thread") else ""
            where += f", {m['tile_depth']}-slice tiles" if m.get("tile_depth") else ""
            lines.append(f"| {m['shape']} uint16 ({m['spatial_dims']}D{where}) | {m['mode']} | {m['peak_rss_mb']} | {m['seconds']} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="skip the large-image memory runs")
    parser.add_argument("--tag", default="speed", help="the results file's name ends with it")
    parser.add_argument("--precisions", default=",".join(PRECISIONS),
                        help="comma-separated, of fp32,bf16: runs in these only (bf16 without "
                             "AVX512-BF16 or AMX is emulated, and 3D steps then take minutes)")  # fmt: skip
    parser.add_argument("--interleaved", type=int, default=0, metavar="ROUNDS",
                        help="only time the default training step, ROUNDS times per precision in turn")  # fmt: skip
    parser.add_argument("--memory-only", action="store_true", help="only the peak-memory runs")
    parser.add_argument("--worker-thread", action="store_true",
                        help="the peak-memory runs denoise in a second thread, as napari's worker does")  # fmt: skip
    parser.add_argument("--memory-precision", default="auto", choices=("auto", *PRECISIONS),
                        help="the precision the peak-memory runs denoise in (default: auto, as a user's)")  # fmt: skip
    parser.add_argument("--tile-depths", default="default", metavar="DEPTHS",
                        help="comma-separated Z tile depths (slices) the volume's peak-memory run "
                             "denoises with, in turn (default: the default, 32)")  # fmt: skip
    parser.add_argument("--compile", type=int, default=0, metavar="ROUNDS",
                        help="only time eager against torch.compile (training step, inference pass), "
                             "ROUNDS times each in turn")  # fmt: skip
    args = parser.parse_args(argv)
    asked = {p.strip() for p in args.precisions.split(",") if p.strip()}
    if not asked or asked - set(PRECISIONS):
        parser.error(f"--precisions: give one or more of {','.join(PRECISIONS)}, got {args.precisions!r}")
    precisions = tuple(p for p in PRECISIONS if p in asked)
    try:
        depths = tuple(None if d.strip() == "default" else int(d) for d in args.tile_depths.split(","))
    except ValueError:
        parser.error(f"--tile-depths: give slice counts or 'default', got {args.tile_depths!r}")
    torch.set_num_threads(args.threads)
    base = TrainConfig()
    stem = RESULTS / f"{datetime.date.today()}-{socket.gethostname()}-{args.tag}"
    command = "python -m benchmarks.speed " + " ".join(argv or sys.argv[1:])
    if args.memory_only:
        with tempfile.TemporaryDirectory() as tmp:
            report = {"command": command, "cpu": cpu_model(), "torch": torch.__version__,
                      "threads": args.threads, "memory": memory_rows(Path(tmp), args.worker_thread, args.memory_precision, depths)}  # fmt: skip
        RESULTS.mkdir(exist_ok=True)
        stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
        print(json.dumps(report["memory"]))
        return
    if args.interleaved or args.compile:
        key, rows = (("interleaved", interleaved(base, args.interleaved)) if args.interleaved
                     else ("compile", compile_rounds(base, precisions, args.compile)))  # fmt: skip
        report = {"command": command, "cpu": cpu_model(), "torch": torch.__version__, "threads": args.threads,
                  key: rows}  # fmt: skip
        RESULTS.mkdir(exist_ok=True)
        stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
        print(json.dumps(rows))
        return
    report = {"threads": args.threads, "torch": torch.__version__, "host": socket.gethostname(),
              "cpu": cpu_model(), "bf16_instructions": cpu_has_bf16_instructions(),
              "probe_speedup": {t: round(cpu_bf16_speedup(t), 2) for t in TASKS},
              "auto": {t: auto_precision(torch.device("cpu"), t) for t in TASKS},
              "matmul_peak_gflops": {"fp32": round(matmul_peak(torch.float32), 1),
                                     "bf16": round(matmul_peak(torch.bfloat16), 1)}}  # fmt: skip
    configs = [{}, {"features": 32}, {"features": 48}, {"cell": 4}, {"depth": 5, "features": 48},
               {"patch_size": 96}, {"batch_size": 8}]  # fmt: skip
    report["training"] = [training_step(base.replace(**o), p) for o in configs for p in precisions]
    vol = base.replace(spatial_dims=3)  # the volume defaults: 8 x 32 x 32 patches
    for mask_z in (True, False):
        for p in precisions:
            report["training"].append(training_step(vol.replace(mask_z=mask_z), p, steps=5))
    for p in precisions:  # is channels_last_3d (the default for 3D) faster than the plain layout?
        report["training"].append(training_step(vol, p, steps=5, layout=torch.contiguous_format))
    for t in report["training"]:
        t["fraction_of_peak"] = round(t["gflops"] / report["matmul_peak_gflops"][t["precision"]], 3)
    report["inference"] = [inference(512, m, base, p) for m in ("visible", "weighted") for p in precisions]
    report["inference"] += [inference(512, "visible", base, p, ensemble=True) for p in precisions]
    report["inference"] += [inference(4096, "visible", base, p) for p in precisions]
    if not args.quick:
        with tempfile.TemporaryDirectory() as tmp:
            report["memory"] = memory_rows(Path(tmp), args.worker_thread, args.memory_precision, depths)
    RESULTS.mkdir(exist_ok=True)
    report["command"] = command
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
    md = f"# speed\n\nCommand: `{report['command']}`; torch {report['torch']}, {args.threads} threads, CPU {report['cpu']}.\n\n{table(report)}\n"
    stem.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
