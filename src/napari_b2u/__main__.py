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


COMMANDS = {"demo": cmd_demo, "info": cmd_info}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-b2u`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s"
    )
    try:
        return COMMANDS[args.command](args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted; no partial output was left behind")
        return 130


if __name__ == "__main__":
    sys.exit(main())
