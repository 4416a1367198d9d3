"""``napari-b2u`` / ``python -m napari_b2u``: run a command on top of the API."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from napari_b2u.cli import build_parser, train_overrides

log = logging.getLogger("napari_b2u")


class TrainingBar:
    """A tqdm bar over training progress, fed by engine events."""

    def __init__(self, disable: bool = False) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=100,
            unit="%",
            disable=disable,
            desc="training",
            leave=True,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}",
        )

    def __call__(self, event) -> None:
        from napari_b2u.api import Done, Step

        if isinstance(event, Step):
            self.bar.n = round(100 * event.progress, 1)
            self.bar.set_postfix(step=event.step, loss=f"{event.loss:.4g}", lam=f"{event.lam:.1f}")
        elif isinstance(event, Done):
            if event.reason != "stopped":
                self.bar.n = 100
            self.bar.refresh()
            self.bar.close()


def cmd_demo(args: argparse.Namespace) -> int:
    if args.gui:
        from napari_b2u._widgets.launch import open_demo_viewer

        open_demo_viewer()
        return 0
    from napari_b2u.demo import run_demo

    result = run_demo(args.out, callback=TrainingBar(disable=args.quiet), **train_overrides(args))
    gain = result["psnr_denoised"] - result["psnr_noisy"]
    print(
        f"PSNR noisy {result['psnr_noisy']:.2f} dB -> denoised {result['psnr_denoised']:.2f} dB "
        f"(+{gain:.2f} dB) after {result['steps']} steps in {result['seconds']:.0f} s on "
        f"{result['device']}; results in {result['out_dir']}/"
    )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from napari_b2u.engine import read_metadata

    print(json.dumps(read_metadata(args.model), indent=2))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from napari_b2u import api
    from napari_b2u.batch import expand_inputs
    from napari_b2u.engine.images import open_image

    images = [open_image(p) for p in expand_inputs(args.inputs)]
    data, axes = _stack_inputs(images, args.axes)
    model = api.train(
        data, axes=axes, callback=TrainingBar(disable=args.quiet), **train_overrides(args)
    )
    model.save(args.model)
    s = model.summary
    log.info(
        "trained %s steps in %.0f s on %s; model saved to %s",
        s["steps"],
        s["seconds"],
        s["device"],
        args.model,
    )
    return 0


def _stack_inputs(images, axes):
    """One array of all inputs' planes (lazily, with dask) for training."""
    from napari_b2u.engine import Planes

    if len(images) == 1:
        return images[0].data, axes or images[0].axes
    import dask.array as da

    planes = [Planes(im.data, axes or im.axes) for im in images]
    shapes = {(p.channels, p.height, p.width) for p in planes}
    if len(shapes) > 1:
        raise ValueError(
            "The inputs have different plane sizes or channels "
            f"{sorted(shapes)}; train on files of one size, or one file at a time."
        )
    stacks = []
    for p in planes:
        order = p.stack_dims + ([p.channel_dim] if p.channel_dim is not None else [])
        order += [p.axes.index("Y"), p.axes.index("X")]
        arr = da.from_array(p.array, chunks=-1) if not isinstance(p.array, da.Array) else p.array
        stacks.append(
            arr.transpose(order).reshape(
                (p.n, *([p.channels] if p.channel_dim is not None else []), p.height, p.width)
            )
        )
    channel = "C" if planes[0].channel_dim is not None else ""
    return da.concatenate(stacks), "N" + channel + "YX"


def cmd_denoise(args: argparse.Namespace) -> int:
    from napari_b2u import api
    from napari_b2u.batch import plan

    jobs = plan(
        args.inputs, args.out, suffix=args.suffix, overwrite=args.overwrite, resume=args.resume
    )
    if args.dry_run:
        for job in jobs:
            print(f"{'skip (complete)' if job.skip else 'write'}\t{job.input} -> {job.output}")
        return 0
    summary = {"done": [], "failed": {}}
    try:
        summary["done"] = api.denoise_files(
            args.inputs,
            args.out,
            args.model,
            mode=args.output_mode,
            axes=args.axes,
            suffix=args.suffix,
            overwrite=args.overwrite,
            resume=args.resume,
            scheduler=args.scheduler,
            progress=not args.quiet,
            dtype=args.dtype,
            tile_size=args.tile,
            tile_overlap=args.overlap,
            **train_overrides(args),
        )
        code = 0
    except api.BatchError as exc:
        summary = {"done": exc.done, "failed": exc.failed}
        code = 1
    if args.json:
        print(
            json.dumps(
                {
                    "done": [str(p) for p in summary["done"]],
                    "failed": {str(k): v for k, v in summary["failed"].items()},
                },
                indent=1,
            )
        )
    else:
        log.info(
            "%d file(s) denoised into %s, %d failed",
            len(summary["done"]),
            args.out,
            len(summary["failed"]),
        )
    return code


COMMANDS = {"demo": cmd_demo, "train": cmd_train, "denoise": cmd_denoise, "info": cmd_info}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-b2u`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s"
    )
    try:
        return COMMANDS[args.command](args)
    except (ValueError, TypeError, OSError, ImportError) as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted; no partial output was left behind")
        return 130


if __name__ == "__main__":
    sys.exit(main())
