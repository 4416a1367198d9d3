"""``napari-b2u`` / ``python -m napari_b2u``: run a command on top of the API."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from napari_b2u.cli import build_parser, train_overrides

log = logging.getLogger("napari_b2u")


def cmd_demo(args: argparse.Namespace) -> int:
    if args.gui:
        from napari_b2u._widgets.launch import open_demo_viewer

        open_demo_viewer()
        return 0
    from napari_b2u.demo import run_demo
    from napari_b2u.progress import TrainingBar

    result = run_demo(args.out, callback=TrainingBar(disable=args.quiet), **train_overrides(args))
    gain = result["psnr_denoised"] - result["psnr_noisy"]
    print(
        f"PSNR noisy {result['psnr_noisy']:.2f} dB -> denoised {result['psnr_denoised']:.2f} dB "
        f"(+{gain:.2f} dB) after {result['steps']} steps in {result['seconds']:.0f} s on "
        f"{result['device']}; results in {result['out_dir']}/"
    )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from napari_b2u import api

    print(json.dumps(api.read_metadata(args.model), indent=2))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from napari_b2u import api
    from napari_b2u.progress import TrainingBar

    model = api.train_files(
        args.inputs, axes=args.axes, callback=TrainingBar(disable=args.quiet), **train_overrides(args)
    )
    model.save(args.model)
    s = model.summary
    log.info(
        "trained %s steps in %.0f s on %s; model saved to %s", s.steps, s.seconds, s.device, args.model
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from napari_b2u import api

    model = api.load_model(args.model)
    image, axes = api.read_image(args.image) if args.image else (None, None)
    out = model.export_bioimageio(
        args.out,
        name=args.name,
        authors=args.authors,
        description=args.description,
        image=image,
        axes=args.axes or axes,
        test=args.test,
    )
    log.info("bioimage.io package written to %s", out)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from napari_b2u import api

    noisy, file_axes = api.read_image(args.noisy)
    denoised = api.read_image(args.denoised)[0] if args.denoised else None
    report = api.noise_report(noisy, denoised, args.axes or file_axes)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(report.summary())
        for warning in report.warnings:
            print(f"warning: {warning}")
    return 0 if report.ok else 1


def cmd_denoise(args: argparse.Namespace) -> int:
    from napari_b2u import api

    if args.dry_run:
        jobs = api.plan_files(
            args.inputs, args.out, suffix=args.suffix, overwrite=args.overwrite, resume=args.resume
        )
        for job in jobs:
            print(f"{'skip (complete)' if job.skip else 'write'}\t{job.input} -> {job.output}")
        return 0
    reports: dict[str, dict] = {}

    def on_event(event) -> None:
        if isinstance(event, api.FileDone) and event.report is not None:
            reports[str(event.output)] = event.report.to_dict()
            log.info("%s: %s", event.job.input.name, event.report.headline())

    try:
        done = api.denoise_files(
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
            tile_depth=args.tile_depth,
            callback=on_event,
            **train_overrides(args),
        )
        failed: dict = {}
        code = 0
    except api.BatchError as exc:
        done, failed, code = exc.done, exc.failed, 1
    if args.json:
        summary = {
            "done": [str(p) for p in done],
            "failed": {str(k): v for k, v in failed.items()},
            "reports": reports,  # noise report on each output written in this run
        }
        print(json.dumps(summary, indent=1))
    else:
        log.info("%d file(s) denoised into %s, %d failed", len(done), args.out, len(failed))
    return code


COMMANDS = {
    "demo": cmd_demo,
    "train": cmd_train,
    "denoise": cmd_denoise,
    "check": cmd_check,
    "export": cmd_export,
    "info": cmd_info,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-b2u`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s"
    )
    try:
        return COMMANDS[args.command](args)
    except (ValueError, TypeError, OSError, ImportError, RuntimeError) as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted; no partial output was left behind")
        return 130


if __name__ == "__main__":
    sys.exit(main())
