"""Keep glibc from handing tensor memory back to the OS on every step.

By default glibc serves large allocations with mmap and trims the heap as
soon as they are freed, so each training step page-faults its activations
in again: measured here at up to 3.7x slower training on CPU. Inside
`keep_memory` large blocks stay in the heap and are reused; on exit the
defaults are restored and the heap trimmed. A no-op where glibc is absent.

Inference asks for less (``mmap_above``): blocks of at least that size stay
mapped, so the image-sized arrays of a large plane go back to the OS when
freed instead of fragmenting the heap, while a tile's smaller activations
are reused from it.

Open contexts combine: each gets the most any of them asks, and whenever one
closes with no training context left the heap is trimmed. Once an inference
context has set the mmap threshold, glibc's dynamic threshold stays off (any
mallopt call turns it off), so after the last context the threshold is
pinned at that dynamic threshold's ceiling, 32 MB, rather than the 128 kB it
starts at.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
import threading
from collections import Counter
from collections.abc import Iterator

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -2, -3, -4
_DEFAULTS = {_M_TRIM_THRESHOLD: 128 * 1024, _M_TOP_PAD: 0, _M_MMAP_MAX: 65536}
#: Any mallopt call turns off glibc's dynamic mmap threshold, which rises with the
#: blocks freed up to this ceiling (64-bit); restoring one sets it there.
_DYNAMIC_MMAP_CEILING = 32 * 2**20
#: Inference's ``mmap_above``. In 2D a default tile's largest activations (512² x
#: 32 channels in fp32: 32 MB) are reused and the float32 arrays of a 4096² plane
#: (64 MB) are mapped, so they cannot fragment the heap (4096² fp32 ``visible``
#: 11.3 -> 7.9 s, peak memory lower: docs/benchmarks.md). A 3D tile's activations
#: (128 MB in bf16) are as large as a 64 x 1024² volume's arrays: 256 MB saved 9 %
#: of the time for 200 MB more, so volumes keep this too.
INFERENCE_MMAP_ABOVE = 64 * 2**20
_lock = threading.Lock()
_users: Counter = Counter()  # mmap_above of each active context (None: keep everything)
_threshold_set = False


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018  (absent on musl)
        return libc
    except (OSError, AttributeError):
        return None


def active() -> int:
    """How many `keep_memory` contexts are open."""
    return sum(_users.values())


def _apply(libc: ctypes.CDLL) -> None:
    """Set glibc to what the active contexts need: the most any of them asks."""
    global _threshold_set
    if not _users:
        for option, value in _DEFAULTS.items():
            libc.mallopt(option, value)
        if _threshold_set:
            libc.mallopt(_M_MMAP_THRESHOLD, _DYNAMIC_MMAP_CEILING)
    elif None in _users:
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, 2**30)
        libc.mallopt(_M_TOP_PAD, 64 * 2**20)
    else:
        above = max(_users)
        libc.mallopt(_M_MMAP_MAX, _DEFAULTS[_M_MMAP_MAX])
        libc.mallopt(_M_MMAP_THRESHOLD, above)
        libc.mallopt(_M_TRIM_THRESHOLD, 2 * above)
        libc.mallopt(_M_TOP_PAD, 0)
        _threshold_set = True


@contextlib.contextmanager
def keep_memory(mmap_above: int | None = None) -> Iterator[None]:
    """Context in which freed memory is kept for reuse (nests, thread-safe).

    ``mmap_above``: blocks of at least this many bytes are still mapped and
    returned when freed, and at most twice it is kept free at the heap's top;
    without it every block is kept (training). Nested or concurrent contexts
    get the most any of them asks.
    """
    libc = _libc()
    if libc is None:
        yield
        return
    with _lock:
        _users[mmap_above] += 1
        _apply(libc)
    try:
        yield
    finally:
        with _lock:
            _users[mmap_above] -= 1
            if not _users[mmap_above]:
                del _users[mmap_above]
            _apply(libc)
            if None not in _users:  # what training kept (or a tile's spare) goes back now
                libc.malloc_trim(0)
