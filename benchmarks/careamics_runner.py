"""Train CAREamics Noise2Void on one image for a wall-clock budget and predict it.

Runs inside the CAREamics virtual environment (``benchmarks/careamics_env.sh``),
not in ours: ``methods.careamics`` calls it as a subprocess.

    python careamics_runner.py IN.npy OUT.npy --budget 60 --threads 2 --seed 0

Settings are CAREamics' own defaults (as a user runs it) except the patch and
batch size, which match ours (64, 4), and the budget: CAREamics has no time
limit of its own, so Lightning's ``max_time`` stops a run of many epochs.
Prediction uses the weights at the end of training.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--budget", type=float, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patch", type=int, default=64)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--volume", action="store_true", help="N2V in 3D: the input is Z x Y x X")
    p.add_argument("--patch-depth", type=int, default=16)
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from careamics import CAREamist
    from careamics.config import create_advanced_n2v_config

    image = np.load(args.input).astype(np.float32)
    if args.volume:  # CAREamics' "Enable 3D": Z patches too
        axes, patch = "ZYX", [args.patch_depth, args.patch, args.patch]
    else:
        axes, patch = ("YX" if image.ndim == 2 else "SYX"), [args.patch, args.patch]
    seconds = int(round(args.budget))
    config = create_advanced_n2v_config(
        experiment_name="bench",
        data_type="array",
        axes=axes,
        patch_size=patch,
        batch_size=args.batch,
        num_epochs=100000,
        num_workers=0,
        trainer_params={"max_time": f"00:00:{seconds // 60:02d}:{seconds % 60:02d}",
                        "enable_model_summary": False},
        seed=args.seed + 1,  # CAREamics requires a seed > 0
    )
    with tempfile.TemporaryDirectory() as work:
        careamist = CAREamist(config, work_dir=work, enable_progress_bar=False)
        t0 = time.perf_counter()
        careamist.train(train_data=image)
        trained = time.perf_counter() - t0
        steps = int(careamist.trainer.global_step)
        final = f"{work}/final.ckpt"  # the last-epoch checkpoint may predate the time limit
        careamist.trainer.save_checkpoint(final)
        # CAREamics predicts whole images only when each side is a multiple of
        # 2**depth; otherwise its error message asks for tiling, as a user would.
        fits = all(s % 4 == 0 for s in image.shape[-2:]) and not args.volume
        if fits:
            tiles = {}
        elif args.volume:
            tiles = {"tile_size": (16, 64, 64), "tile_overlap": (8, 32, 32)}
        else:
            tiles = {"tile_size": (256, 256), "tile_overlap": (48, 48)}
        pred, _ = careamist.predict(image, axes=axes, checkpoint=final, **tiles)
    out = np.asarray(pred[0] if isinstance(pred, list) else pred, np.float32).reshape(image.shape)
    np.save(args.output, out)
    print(json.dumps({"steps": steps, "train_s": round(trained, 2)}))


if __name__ == "__main__":
    main()
