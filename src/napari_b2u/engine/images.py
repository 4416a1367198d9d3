"""Reading and writing image files, lazily where the format allows.

TIFF (ImageJ and OME included) is memory-mapped when uncompressed and read
through tifffile's zarr store otherwise, so stacks larger than RAM are read
plane by plane. Output TIFFs are written page by page from an iterator and
atomically (a temporary file, renamed when complete).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_b2u.engine.atomic import atomic_path

READABLE = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".npy", ".zarr")


@dataclass
class ImageFile:
    """An opened image: a (possibly lazy) array, its axes and the TIFF
    metadata worth carrying over to the output."""

    path: Path
    data: Any
    axes: str | None
    tiff: dict[str, Any] = field(default_factory=dict)  # keywords for tifffile.imwrite


def is_readable(path: Path) -> bool:
    return path.suffix.lower() in READABLE


def open_image(path: str | os.PathLike) -> ImageFile:
    """Open ``path`` without reading all of it where the format allows.

    Raises ``ValueError`` naming the file for formats it does not read and
    for files it cannot parse.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file.")
    try:
        if suffix in (".tif", ".tiff"):
            return _open_tiff(path)
        if suffix == ".npy":
            return ImageFile(path, np.load(path, mmap_mode="r", allow_pickle=False), None)
        if suffix == ".zarr":
            import zarr

            array = zarr.open(str(path), mode="r")
            if not hasattr(array, "shape"):
                raise ValueError("it is a zarr group; point to one array inside it")
            return ImageFile(path, array, None)
        if suffix in (".png", ".jpg", ".jpeg", ".bmp"):
            from PIL import Image

            with Image.open(path) as im:
                data = np.asarray(im)
            return ImageFile(path, data, "YXC" if data.ndim == 3 else "YX")
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ValueError(
            f"{path}: cannot read it as an image ({exc or type(exc).__name__})."
        ) from exc
    raise ValueError(
        f"{path}: unsupported file type {suffix!r}; napari-b2u reads {', '.join(READABLE)}."
    )


def _open_tiff(path: Path) -> ImageFile:
    import tifffile

    with tifffile.TiffFile(path) as tf:
        if not tf.series:
            raise ValueError("no image data in the TIFF file")
        series = tf.series[0]
        axes = series.axes.upper()
        page = series.pages[0]
        meta = _tiff_metadata(tf, page, axes)
        shape, dtype = series.shape, series.dtype
    try:
        data = tifffile.memmap(path, mode="r")
        if data.shape != shape:
            raise ValueError("series and file layout differ")
    except (ValueError, OSError):
        import zarr

        data = zarr.open(tifffile.imread(path, aszarr=True), mode="r")
    if data.dtype != dtype:
        raise ValueError(f"unexpected dtype {data.dtype}")
    return ImageFile(path, data, axes, meta)


def _tiff_metadata(tf, page, axes: str) -> dict[str, Any]:
    """Resolution, ImageJ spacing/unit/frame interval and OME physical sizes."""
    meta: dict[str, Any] = {}
    tags = page.tags
    if "XResolution" in tags and "YResolution" in tags:
        x, y = tags["XResolution"].value, tags["YResolution"].value
        meta["resolution"] = (x[0] / x[1], y[0] / y[1])
        if "ResolutionUnit" in tags:
            meta["resolutionunit"] = int(tags["ResolutionUnit"].value)
    if tf.is_imagej:
        ij = tf.imagej_metadata or {}
        keep = {k: ij[k] for k in ("spacing", "unit", "finterval", "fps") if k in ij}
        meta["imagej"] = True
        meta["metadata"] = {"axes": axes, **keep}
    elif tf.is_ome:
        import re

        xml = tf.ome_metadata or ""
        sizes = {}
        for key in ("PhysicalSizeX", "PhysicalSizeY", "PhysicalSizeZ", "TimeIncrement"):
            match = re.search(rf'{key}="([^"]+)"', xml)
            if match:
                sizes[key] = float(match.group(1))
        for key in ("PhysicalSizeXUnit", "PhysicalSizeYUnit", "PhysicalSizeZUnit"):
            match = re.search(rf'{key}="([^"]+)"', xml)
            if match:
                sizes[key] = match.group(1)
        meta["ome"] = True
        meta["metadata"] = {"axes": axes, **sizes}
    else:
        meta["metadata"] = {"axes": axes}
    return meta


def write_tiff(
    path: str | os.PathLike,
    pages: Iterable[np.ndarray],
    shape: tuple[int, ...],
    dtype: np.dtype,
    axes: str,
    tiff: dict[str, Any] | None = None,
) -> Path:
    """Write a TIFF page by page from ``pages``, atomically.

    ``tiff`` holds the metadata keywords from `open_image`. ImageJ
    files stay ImageJ files (when the dtype allows), OME files OME.
    """
    import tifffile

    path = Path(path)
    kwargs = dict(tiff or {})
    rgb = axes.endswith("YXS") or axes.endswith("YXC") and shape[-1] in (3, 4)
    kwargs["photometric"] = "rgb" if rgb else "minisblack"
    if kwargs.get("imagej") and np.dtype(dtype) not in (np.uint8, np.uint16, np.float32):
        kwargs.pop("imagej")
    if kwargs.get("imagej") and rgb and np.dtype(dtype) != np.uint8:
        kwargs.pop("imagej")  # ImageJ RGB must be uint8; keep the data, lose the ImageJ flavour
    if not kwargs.get("imagej"):
        kwargs.pop("imagej", None)
        meta = dict(kwargs.get("metadata") or {})
        for key in ("spacing", "unit", "finterval", "fps"):
            meta.pop(key, None)
        kwargs["metadata"] = meta
    imagej, ome = bool(kwargs.pop("imagej", False)), kwargs.pop("ome", None)
    bigtiff = not imagej and _needs_bigtiff(shape, dtype)  # ImageJ files stay classic TIFF
    with atomic_path(path) as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=bigtiff, imagej=imagej, ome=ome) as tw:
            tw.write(data=iter(pages), shape=tuple(shape), dtype=np.dtype(dtype), **kwargs)
    return path


def _needs_bigtiff(shape: tuple[int, ...], dtype: np.dtype) -> bool:
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize > 2**32 - 2**25


def tiff_pages(planes, plane_iter: Iterator[tuple[int, np.ndarray]]) -> Iterator[np.ndarray]:
    """TIFF pages, in file order, from ``(i, plane)`` pairs in plane order.

    Pages are YX (or YXC/YXS when the channel axis is last): every axis of a
    plane (or volume) before them, a channel or Z, splits it into pages.
    """
    page_dims = 3 if planes.kept_axes.endswith(("YXC", "YXS")) else 2
    for _, block in plane_iter:
        yield from block.reshape(-1, *block.shape[block.ndim - page_dims :])


def pages_in_plane_order(axes: str, spatial_dims: int = 2) -> bool:
    """Whether TIFF page order equals our plane (volume) order: every stack
    axis comes before the others, and Y, X end the axes (a channel may follow)."""
    kept = ("ZYX" if spatial_dims == 3 else "YX") + "CS"
    core = axes.lstrip("".join(a for a in axes if a not in kept))
    return all(a in kept for a in core) and core.endswith(("YX", "YXC", "YXS"))
