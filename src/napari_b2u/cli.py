"""The ``napari-b2u`` argument parser (the commands live in ``__main__``)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from napari_b2u.config import MODES, TrainConfig


_ZERO_IS_NONE = ("steps", "time_budget")


def build_parser() -> argparse.ArgumentParser:
    """Parser with one sub-command per job."""
    from napari_b2u import __version__

    parser = argparse.ArgumentParser(
        prog="napari-b2u",
        description="Self-supervised Blind2Unblind denoising: train on noisy images, denoise them.",
    )
    parser.add_argument("--version", action="version", version=f"napari-b2u {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="log more")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="denoise a noisy sample image (no download) and report the PSNR gain",
        description="Adds Gaussian noise (sigma 25) to scikit-image's camera image, trains "
        "Blind2Unblind on it within a time budget, writes noisy/denoised TIFFs, a "
        "side-by-side PNG and the model, and prints PSNR before and after.",
    )
    demo.add_argument("--out", default="b2u-demo", help="output folder (default: %(default)s)")
    demo.add_argument(
        "--gui", action="store_true", help="open napari with the sample and the Train widget"
    )
    add_train_options(demo)

    info = sub.add_parser("info", parents=[common], help="print a model file's metadata")
    info.add_argument("model", help="a .safetensors model file")
    return parser


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per :class:`TrainConfig` field, defaulting to the config's."""
    group = parser.add_argument_group("training options (TrainConfig fields)")
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        kwargs: dict[str, Any] = {"dest": field.name, "default": argparse.SUPPRESS}
        if field.name == "mode":
            kwargs["choices"] = MODES
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple):
            kwargs.update(type=float, nargs="+")
        elif field.name in ("steps",):
            kwargs["type"] = int
        elif field.name in ("time_budget",):
            kwargs["type"] = float
        elif field.name == "seed":
            kwargs["type"] = int
        else:
            kwargs["type"] = type(default)
        note = " (0: no limit)" if field.name in _ZERO_IS_NONE else ""
        group.add_argument(flag, help=f"(default: {default}){note}", **kwargs)


def train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields given on the command line."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in names}
    return {k: (None if k in _ZERO_IS_NONE and not v else v) for k, v in given.items()}
