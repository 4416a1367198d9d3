"""The benchmark harness still runs: tiny budgets, results written, skips explained."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bm3d")
pytest.importorskip("matplotlib")

import torch  # noqa: E402

from benchmarks import quality, speed, summary, verdict  # noqa: E402
from benchmarks.data import SHARED, add_noise, load_cases  # noqa: E402


@pytest.mark.slow
def test_quality_run_writes_rows_and_skips_missing_careamics(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAREAMICS_PYTHON", str(tmp_path / "no-such-python"))
    quality.main(["--data", "camera", "--budget", "1", "--methods", "b2u,bm3d,n2v,careamics",
                  "--tag", "t", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "skipping careamics" in out and "careamics_env.sh" in out
    (result,) = tmp_path.glob("*-t.json")
    rows = json.loads(result.read_text())["rows"]
    assert {(r["method"], r["output"]) for r in rows} == {
        ("b2u", "weighted"), ("b2u", "blind"), ("b2u", "visible"), ("b2u", "visible-ensemble"),
        ("bm3d", "bm3d"), ("n2v", "n2v")}
    bm3d_row = next(r for r in rows if r["method"] == "bm3d")
    assert bm3d_row["psnr"] > bm3d_row["psnr_noisy"] + 5  # BM3D with the true sigma really denoises
    assert all(r["threads"] == 2 and r["device"] == "cpu" for r in rows)
    assert (tmp_path / result.name.replace(".json", ".md")).exists()
    assert (tmp_path / result.name.replace(".json", ".png")).exists()


def test_verdict_reports_each_output(tmp_path):
    verdict.main(["--data", "camera", "--steps", "2,3", "--tag", "t", "--out", str(tmp_path)])
    (result,) = tmp_path.glob("*-t.json")
    rows = json.loads(result.read_text())["rows"]
    assert [(r["steps"], r["mode"]) for r in rows] == [
        (steps, mode) for steps in (2, 3) for mode in ("weighted", "blind", "visible")
    ]
    assert all(r["residual_std_ratio"] > 0 and isinstance(r["warnings"], list) for r in rows)
    assert all(0 <= r["out_of_range"] <= 1 for r in rows)
    # what the finished-run check read on the training sample
    for r in rows:
        assert r["check_res_visible"] > 0 and r["check_res_blind"] > 0
        assert r["check_ratio"] == pytest.approx(r["check_res_visible"] / r["check_res_blind"], rel=1e-3)


def test_quality_budget_none_runs_a_fixed_step_count(tmp_path):
    quality.main(["--data", "camera", "--budget", "none", "--methods", "b2u",
                  "--variants", "s3:steps=3", "--tag", "t", "--out", str(tmp_path)])
    (result,) = tmp_path.glob("*-t.json")
    rows = json.loads(result.read_text())["rows"]
    assert rows and all(r["steps"] == 3 and r["budget_s"] is None for r in rows)
    assert {r["model_mode"] for r in rows} <= {"visible", "weighted", "blind"}  # the one users get


def test_summary_table_means_and_differences():
    def row(case, method, output, budget, psnr):
        return {"case": case, "data": "set12", "noise": "gauss25", "method": method, "variant": "default",
                "output": output, "budget_s": budget, "psnr": psnr, "psnr_noisy": 20.0}

    rows = [row("a", "b2u", "visible", 60, 28.0), row("b", "b2u", "visible", 60, 30.0),
            row("a", "b2u", "blind", 60, 1.0),  # other outputs are not the B2U column
            row("a", "bm3d", "bm3d", None, 30.0), row("b", "bm3d", "bm3d", None, 31.0),
            row("a", "careamics", "careamics", 60, 25.0), row("b", "careamics", "careamics", 60, 26.0),
            row("a", "b2u", "visible", 300, 29.0)]
    text = summary.table(rows)
    line_60 = next(line for line in text.splitlines() if "| 60 |" in line)
    assert "| 29.00 | 30.50 | 25.50 |" in line_60 and "| -1.50 | +3.50 |" in line_60
    assert "a: 60 s 28.00 dB, 300 s 29.00 dB: 88.9% of the gain" in summary.gain_fraction(rows)


def test_summary_can_score_the_output_each_model_chose():
    def row(case, output, psnr, mode):
        return {"case": case, "data": "fmd", "noise": "real", "method": "b2u", "variant": "default",
                "output": output, "budget_s": 60, "psnr": psnr, "psnr_noisy": 20.0, "model_mode": mode}

    rows = [row("a", "visible", 30.0, "visible"), row("a", "blind", 29.0, "visible"),
            row("b", "visible", 22.0, "blind"), row("b", "blind", 24.0, "blind")]  # b's check flipped it
    line = lambda rs: next(x for x in summary.table(rs).splitlines() if "| 60 |" in x)  # noqa: E731
    assert "| 26.00 |" in line(rows)  # visible: (30 + 22) / 2
    assert "| 27.00 |" in line(summary.b2u_output(rows, "model"))  # what users get: (30 + 24) / 2
    assert "| 26.50 |" in line(summary.b2u_output(rows, "blind"))
    old = [{k: v for k, v in r.items() if k != "model_mode"} for r in rows]
    assert summary.b2u_output(old, "model") == []  # no record of the choice: no column


def test_noise_is_seeded_and_poisson_is_in_range():
    clean = np.full((8, 8), 128.0, np.float32)
    a, sigma = add_noise(clean, "gauss25", seed=3)
    b, _ = add_noise(clean, "gauss25", seed=3)
    assert sigma == 25.0 and np.array_equal(a, b)
    p, sigma = add_noise(clean, "poisson", seed=3)
    assert sigma is None and p.min() >= 0


@pytest.mark.skipif(not (SHARED / "w2s" / "noisy").is_dir(), reason="shared W2S data absent")
def test_stack_case_holds_the_single_images():
    singles = load_cases("w2s:2", ["gauss25"])
    (stack,) = load_cases("w2s-stack:2", ["gauss25"])
    assert stack.noisy.shape == (2, *singles[0].noisy.shape)
    assert np.array_equal(stack.clean[1], singles[1].clean)


def test_psnr_fit_ignores_offset_and_contrast_but_not_noise():
    clean = np.random.default_rng(0).uniform(0, 255, (32, 32)).astype(np.float32)
    assert quality.psnr_fit(0.5 * clean + 10, clean) > 100
    stack = np.stack([clean, clean[::-1]])
    assert quality.psnr_fit(np.stack([0.5 * stack[0] + 10, 2 * stack[1] - 5]), stack) > 100  # a map per plane
    noisy = clean + np.random.default_rng(1).normal(0, 10, clean.shape).astype(np.float32)
    assert 25 < quality.psnr_fit(noisy, clean) < 30


def test_summary_plot_writes_a_png(tmp_path):
    rows = [{"case": c, "data": "set12", "noise": "gauss25", "method": m, "variant": "default", "output": o,
             "budget_s": b, "wall_s": b or 2.0, "psnr": 25.0 + i, "psnr_noisy": 20.0}
            for i, (m, o, b) in enumerate([("b2u", "visible", 60.0), ("b2u", "visible", 300.0), ("bm3d", "bm3d", None)])
            for c in ("a", "b")]
    summary.plot(rows, str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_variants_split_outside_brackets_so_tuples_are_values():
    variants = quality.split_variants("default,late:lr=0.002;lr_milestones=(0.5,0.7,0.9),t:t1=0.2")
    assert [quality.parse_variant(v) for v in variants] == [
        ("default", {}),
        ("late", {"lr": 0.002, "lr_milestones": (0.5, 0.7, 0.9)}),
        ("t", {"t1": 0.2}),
    ]


def test_pooled_trains_one_model_per_image_size_and_one_for_all_sizes(tmp_path, monkeypatch):
    from benchmarks import pooled
    from benchmarks.data import Case

    rng = np.random.default_rng(0)

    def case(name, shape):
        clean = rng.uniform(0, 255, shape).astype(np.float32)
        return Case(name, "tiny", "gauss25", clean, clean + rng.normal(0, 25, shape).astype(np.float32), 25.0)

    cases = [case("a", (32, 32)), case("b", (32, 32)), case("c", (48, 32))]
    monkeypatch.setattr(pooled, "load_cases", lambda *args, **kwargs: cases)
    pooled.main(["--steps", "2", "--compare", "--mixed", "--variants", "small:features=4;depth=2",
                 "--tag", "p", "--out", str(tmp_path)])
    rows = json.loads(next(tmp_path.glob("*-p.json")).read_text())["rows"]
    visible = {(r["case"], r["variant"]): r for r in rows if r["output"] == "visible"}
    assert set(visible) == {(c, v) for c in "abc" for v in ("pooled-small", "single-small", "mixed-small")}
    # a and b (one size) share a model trained for 2 steps each; c is alone in its size
    assert [visible[c, "pooled-small"]["steps"] for c in "abc"] == [4, 4, 2]
    assert visible["a", "pooled-small"]["overrides"]["images"] == 2
    # --mixed: one model on all three sizes, 2 steps per image, scored on each at its own size
    assert [visible[c, "mixed-small"]["steps"] for c in "abc"] == [6, 6, 6]
    assert visible["c", "mixed-small"]["overrides"]["images"] == 3
    assert len({visible[c, "mixed-small"]["psnr"] for c in "abc"}) == 3
    assert all(visible[c, "single-small"]["steps"] == 2 for c in "abc")
    assert {r["output"] for r in rows} == {"visible", "visible-ensemble"}
    # --mixed-only: the shared model and nothing else
    pooled.main(["--steps", "2", "--mixed-only", "--variants", "small:features=4;depth=2",
                 "--tag", "m", "--out", str(tmp_path)])
    rows = json.loads(next(tmp_path.glob("*-m.json")).read_text())["rows"]
    assert {(r["case"], r["variant"]) for r in rows} == {(c, "mixed-small") for c in "abc"}


def test_trajectory_scores_copies_along_one_run_and_restores_adam(tmp_path, monkeypatch):
    import torch

    from benchmarks import trajectory
    from benchmarks.data import Case

    rng = np.random.default_rng(0)
    clean = rng.uniform(0, 255, (32, 32)).astype(np.float32)
    case = Case("a", "tiny", "gauss25", clean, clean + rng.normal(0, 25, clean.shape).astype(np.float32), 25.0)
    monkeypatch.setattr(trajectory, "load_cases", lambda *args, **kwargs: [case])
    adam = torch.optim.Adam
    trajectory.main(["--steps", "5", "--every", "2", "--set", "features=4;depth=2", "--tag", "t",
                     "--out", str(tmp_path)])
    assert torch.optim.Adam is adam
    result = json.loads(next(tmp_path.glob("*-t.json")).read_text())
    rows = result["rows"]
    assert [r["step"] for r in rows] == [2, 4, 5]  # every 2 steps, and the final weights
    assert result["meta"]["overrides"] == {"features": 4, "depth": 2}
    assert rows[-1]["lam"] == 20.0 and rows[0]["lam"] == 2.0
    assert all(np.isfinite([r["psnr_visible"], r["psnr_blind"], r["gap"]]).all() for r in rows)
    # the copies differ: scores change along the run
    assert len({r["psnr_visible"] for r in rows}) == 3


def test_matmul_peak_times_a_slow_dtype_on_smaller_matrices(monkeypatch):
    shapes = []
    randn = torch.randn
    monkeypatch.setattr(torch, "randn", lambda *size, **kw: shapes.append(size) or randn(*size, **kw))
    assert speed.matmul_peak(torch.float32, size=1024, repeats=1, budget_s=0.0) > 0
    assert set(shapes) == {(256, 256)}  # the first size already takes more than no budget
    shapes.clear()
    assert speed.matmul_peak(torch.float32, size=512, repeats=1, budget_s=1e9) > 0
    assert shapes[-1] == (512, 512)  # grows to the size asked for, not past it


def test_interleaved_takes_the_precisions_in_turn_and_compares_medians(monkeypatch):
    order = []
    seconds = iter([0.10, 0.05, 0.30, 0.06, 0.12, 0.04])  # fp32, bf16, fp32, ...: one fp32 outlier

    def fake(config, precision, steps):
        order.append(precision)
        return {"s_per_step": next(seconds)}

    monkeypatch.setattr(speed, "training_step", fake)
    result = speed.interleaved(speed.TrainConfig(), rounds=3)
    assert order == ["fp32", "bf16"] * 3
    assert result["median_s_per_step"] == {"fp32": 0.12, "bf16": 0.05}
    assert result["bf16_vs_fp32"] == 2.4  # medians: the 0.30 outlier does not count


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="VmHWM is Linux's")
@pytest.mark.parametrize("thread", [False, True])
def test_peak_rss_is_the_child_processes_own(tmp_path, thread):
    # Linux carries ru_maxrss across fork and exec: a child read its parent's peak,
    # so every row below the benchmark process's own peak read that peak.
    ballast = np.ones(2**27)  # 1 GiB, touched, in this (the parent) process
    row = speed.peak_rss("64x64", "visible", tmp_path, thread=thread)
    assert ballast.sum() > 0
    assert row["rss_before_mb"] <= row["peak_rss_mb"] < 900
    assert row["thread"] is thread


def test_peak_rss_fails_when_the_denoise_in_its_thread_does(tmp_path, monkeypatch):
    # an exception in a thread does not end the process: the script re-raises it
    monkeypatch.setattr(speed, "_RSS_SCRIPT", speed._RSS_SCRIPT.replace("mode=sys.argv[3]", "mode='nonsense'"))
    with pytest.raises(subprocess.CalledProcessError):
        speed.peak_rss("64x64", "visible", tmp_path, thread=True)


def test_peak_rss_denoises_a_volume_in_the_tile_depth_asked(tmp_path, monkeypatch):
    row = speed.peak_rss("8x64x64", "visible", tmp_path, dims=3, tile_depth=4)
    assert row["tile_depth"] == 4 and row["spatial_dims"] == 3
    # the depth reaches Model.denoise: one its tiling refuses fails the row
    with pytest.raises(subprocess.CalledProcessError):
        speed.peak_rss("8x64x64", "visible", tmp_path, dims=3, tile_depth=-1)
    rows = []
    monkeypatch.setattr(speed, "peak_rss", lambda *a: rows.append(a) or {})
    speed.memory_rows(tmp_path, tile_depths=(None, 64))
    assert [a[0] for a in rows].count("64x1024x1024") == 2 and rows[-1][-1] == 64
