"""The ``napari-b2u`` argument parser (the commands live in ``__main__``)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from napari_b2u.config import (
    DEPTH,
    DEPTH_3D,
    MODES,
    PATCH_SIZE,
    PATCH_SIZE_3D,
    TILE_DEPTH,
    TILE_OVERLAP,
    TILE_SIZE,
    TILE_SIZE_3D,
    TrainConfig,
)

_ZERO_IS_NONE = ("steps", "time_budget")
#: Defaults that ``None`` stands for, in words.
_DEFAULT_TEXT = {
    "patch_size": f"{PATCH_SIZE} for planes, {PATCH_SIZE_3D} for volumes",
    "z_pool": "from the patch depth",
    "depth": f"{DEPTH} for planes, {DEPTH_3D} for volumes",
}


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
    files = argparse.ArgumentParser(add_help=False)
    files.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders or glob patterns")
    files.add_argument("--axes", help="axes of the inputs, e.g. TYX (default: from the file)")
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

    train = sub.add_parser(
        "train",
        parents=[common, files],
        help="train a model on image files and save it",
        description="Train one Blind2Unblind model on the planes of all INPUT files "
        "(which must share their channels; plane sizes may differ) and save it.",
    )
    train.add_argument("--model", required=True, help="output model file (.safetensors)")
    add_train_options(train)

    denoise = sub.add_parser(
        "denoise",
        parents=[common, files],
        help="denoise image files (self-supervised per file, or with --model)",
        description="Write OUT/<stem>_b2u.tif for each INPUT. Without --model, a model is "
        "trained on each file itself with the training options below.",
    )
    denoise.add_argument("--out", required=True, help="output folder")
    denoise.add_argument("--model", help="apply this model instead of training one per file")
    denoise.add_argument(
        "--mode", dest="output_mode", choices=MODES, help="output (default: the model's)"
    )
    denoise.add_argument(
        "--tile", type=int, help=f"tile size in pixels (default {TILE_SIZE}; volumes {TILE_SIZE_3D})"
    )
    denoise.add_argument("--overlap", type=int, help=f"tile overlap in pixels (default {TILE_OVERLAP})")
    denoise.add_argument(
        "--tile-depth",
        type=int,
        help=f"volumes (3D models): Z slices per tile (default {TILE_DEPTH}); deeper is "
        "faster and uses more memory",
    )
    denoise.add_argument(
        "--dtype",
        choices=("float32", "keep"),
        default="float32",
        help="output dtype; keep: the input's, rounded and clipped (default: %(default)s)",
    )
    denoise.add_argument(
        "--suffix", default="_b2u", help="added to output names (default: %(default)s)"
    )
    denoise.add_argument("--overwrite", action="store_true", help="rewrite existing outputs")
    denoise.add_argument(
        "--no-resume",
        dest="resume",
        action="store_false",
        help="fail on existing outputs instead of skipping them",
    )
    denoise.add_argument(
        "--scheduler", help="dask.distributed scheduler address, to spread files over a cluster"
    )
    denoise.add_argument(
        "--dry-run", action="store_true", help="list what would be written and stop"
    )
    denoise.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    add_train_options(denoise, exclude=("mode",))

    check = sub.add_parser(
        "check",
        parents=[common],
        help="measure an image's noise; with DENOISED, check the residual",
        description="Print the noise report: how correlated the noise is between neighbouring "
        "pixels (which breaks the blind-spot assumption), its level, and, given the denoised "
        "result, whether the residual (noisy - denoised) looks like noise. Exit code 0 when "
        "nothing needs attention, 1 when the report has warnings.",
    )
    check.add_argument("noisy", metavar="NOISY", help="the noisy image file")
    check.add_argument("denoised", nargs="?", metavar="DENOISED", help="its denoised result")
    check.add_argument("--axes", help="axes of the images, e.g. TYX (default: from the file)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")

    export = sub.add_parser(
        "export",
        parents=[common],
        help="export a model as a bioimage.io package (.zip)",
        description="Write MODEL as a bioimage.io Model Zoo package that Fiji/deepImageJ, "
        "ilastik, QuPath, BiaPy and bioimageio.core run (needs the bioimageio extra: "
        'pip install "napari-b2u[bioimageio]").',
    )
    export.add_argument("model", metavar="MODEL", help="a .safetensors model file")
    export.add_argument("out", metavar="OUT.zip", help="the package to write")
    export.add_argument("--name", help="model name")
    export.add_argument(
        "--author", action="append", dest="authors", help="author name (repeat for several)"
    )
    export.add_argument("--description", help="one paragraph about the model")
    export.add_argument(
        "--image", help="take the test tensors from this image (default: the training sample)"
    )
    export.add_argument("--axes", help="axes of --image")
    export.add_argument(
        "--test", action="store_true", help="run bioimageio.core's model test before writing"
    )

    info = sub.add_parser("info", parents=[common], help="print a model file's metadata")
    info.add_argument("model", help="a .safetensors model file")
    return parser


def add_train_options(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per `TrainConfig` field, defaulting to the config's."""
    group = parser.add_argument_group("training options (TrainConfig fields)")
    for field in dataclasses.fields(TrainConfig):
        if field.name in exclude:
            continue
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
        elif default is None:  # z_pool, depth, patch_size: optional integers
            kwargs["type"] = int
        else:
            kwargs["type"] = type(default)
        shown = _DEFAULT_TEXT.get(field.name, default)
        note = " (0: no limit)" if field.name in _ZERO_IS_NONE else ""
        group.add_argument(flag, help=f"(default: {shown}){note}", **kwargs)


def train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields given on the command line."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in names}
    return {k: (None if k in _ZERO_IS_NONE and not v else v) for k, v in given.items()}
