"""The CLI process's memory allocator.

glibc hands a freed block back to the system when it was larger than its mmap threshold, or when the free memory
at the top of its heap passes its trim threshold; the next batch of a pass over a dataset then faults the same
pages in afresh. On the fashion-mnist examples pass that was most of the time: 12.6 million page faults, 22 s of
system time in 24 s (docs/measured.md, "Dataset passes"). The CLI owns its process, so it keeps freed memory for reuse.
The library runs in other people's processes (notebooks) and leaves their allocator alone.
"""
from __future__ import annotations

import ctypes
import sys

# mallopt's parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap (glibc's largest mmap threshold on 64-bit systems).
MMAP_THRESHOLD = 32 * 2 ** 20
#: Free memory kept at the top of the heap before any goes back to the system.
TRIM_THRESHOLD = 256 * 2 ** 20


def keep_freed_memory() -> bool:
    """Ask glibc to serve blocks up to 32 MiB from its heap and keep up to 256 MiB of freed heap. Returns
    whether it took both settings (False without glibc: macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) & bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
