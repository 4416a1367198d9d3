"""napari-b2u: self-supervised Blind2Unblind denoising for napari.

The package root stays light (no torch, no Qt) so that napari can read the
plugin manifest cheaply; import `napari_b2u.api` for the Python API.
"""

try:
    from napari_b2u._version import version as __version__
except ImportError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
