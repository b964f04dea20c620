"""Process memory, measured the way the benchmarks report it."""

from __future__ import annotations

import gc
import os


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (Linux)."""
    gc.collect()
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
