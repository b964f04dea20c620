"""Snapshot files: the full-sync stream (``SyncChunk`` messages), each in a checksummed frame.

A snapshot is written to a temporary file, fsynced and renamed into place, so a crash while
writing leaves the previous snapshot untouched. Reading checks every frame and the trailer;
a damaged snapshot is reported and the caller falls back to an older one.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from . import frames
from .wal import fsync_directory

SNAPSHOT = re.compile(r"^snapshot-(\d{8})\.snap$")


def snapshot_path(directory: Path, index: int) -> Path:
    return directory / f"snapshot-{index:08d}.snap"


def snapshots(directory: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := SNAPSHOT.match(p.name)))


async def write_snapshot(directory: Path, index: int, chunks: AsyncIterator[bytes]) -> tuple[Path, int]:
    """Write the framed chunks as snapshot ``index``; returns its path and size."""
    final = snapshot_path(directory, index)
    temporary = final.with_suffix(".tmp")
    size = 0
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        async for chunk in chunks:
            data = frames.encode(chunk)
            os.write(fd, data)
            size += len(data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, final)
    fsync_directory(directory)
    return final, size


@dataclass
class SnapshotRead:
    index: int
    chunks: list[bytes]


def read_snapshot(directory: Path, index: int) -> tuple[list[bytes] | None, str | None]:
    """(chunks, None) for a sound snapshot; (None, problem) for a damaged one."""
    data = snapshot_path(directory, index).read_bytes()
    result = frames.ScanResult()
    chunks = list(frames.scan(data, result))
    if result.problem is not None:
        return None, result.problem
    return chunks, None
