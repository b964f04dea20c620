"""The write-ahead log: append-only segments of checksummed frames, with an fsync policy.

Appends go straight to the file with ``os.write`` (no user-space buffer), so a process that is
killed loses nothing the kernel has received; the fsync policy decides what survives a power
loss or a kernel crash:

* ``always``: a write is acknowledged only after an fsync covers it. Appends made while an
  fsync runs are covered by the next one (group commit), so concurrent writers share fsyncs.
* ``everysec``: a background task fsyncs once a second; a power loss can lose about a second.
* ``no``: the kernel flushes when it likes (typically within 30 s).

fsync runs in a worker thread so the event loop keeps serving while the disk works.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import frames

log = logging.getLogger("leaderboard_node.wal")
SEGMENT = re.compile(r"^wal-(\d{8})\.log$")


def segment_path(directory: Path, index: int) -> Path:
    return directory / f"wal-{index:08d}.log"


def segments(directory: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := SEGMENT.match(p.name)))


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Corruption:
    path: str
    problem: str
    kept_bytes: int
    cut_bytes: int


@dataclass
class WalStats:
    appended_bytes: int = 0
    appends: int = 0
    fsyncs: int = 0
    corruptions: list[Corruption] = field(default_factory=list)


class WriteAheadLog:
    def __init__(self, directory: Path, *, fsync: str) -> None:
        self.directory = directory
        self.fsync_policy = fsync
        directory.mkdir(parents=True, exist_ok=True)
        self.stats = WalStats()
        existing = segments(directory)
        self.index = existing[-1] if existing else 1
        self._fd = -1
        self._written = 0  # bytes appended since start (a log sequence number)
        self._synced = 0
        self._segment_bytes = 0
        self._wakeup = asyncio.Event()
        self._synced_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.failed: BaseException | None = None

    # ----------------------------------------------------------------- recovery

    def replay(self, *, start: int) -> Iterator[bytes]:
        """Payloads of every segment from ``start`` on; a damaged segment is cut at the damage."""
        for index in segments(self.directory):
            if index < start:
                continue
            path = segment_path(self.directory, index)
            data = path.read_bytes()
            result = frames.ScanResult()
            yield from frames.scan(data, result)
            if result.problem is not None:
                corruption = Corruption(str(path), result.problem, result.good_bytes, len(data) - result.good_bytes)
                self.stats.corruptions.append(corruption)
                log.warning("wal_corruption_cut", extra={"path": str(path), "problem": result.problem,
                                                         "kept_bytes": result.good_bytes,
                                                         "cut_bytes": len(data) - result.good_bytes})
                with open(path, "r+b") as handle:
                    handle.truncate(result.good_bytes)
                    handle.flush()
                    os.fsync(handle.fileno())

    # ------------------------------------------------------------------ appends

    def open(self) -> None:
        """Start appending (after replay): to a fresh segment, never after a cut tail."""
        self.index = (segments(self.directory) or [0])[-1] + 1
        self._open_segment(self.index)

    def _open_segment(self, index: int) -> None:
        self._fd = os.open(segment_path(self.directory, index), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._segment_bytes = 0
        fsync_directory(self.directory)

    def append(self, payload: bytes) -> int:
        """Append one record; returns the position a later ``wait_durable`` can wait for."""
        if self.failed is not None:
            raise OSError(f"the write-ahead log failed earlier: {self.failed}")
        data = frames.encode(payload)
        try:
            written = os.write(self._fd, data)
            while written < len(data):  # pragma: no cover - short writes on odd filesystems
                written += os.write(self._fd, data[written:])
        except OSError as exc:
            self.failed = exc
            raise
        self._written += len(data)
        self._segment_bytes += len(data)
        self.stats.appended_bytes += len(data)
        self.stats.appends += 1
        if self.fsync_policy == "always":
            self._wakeup.set()
        return self._written

    @property
    def segment_bytes(self) -> int:
        return self._segment_bytes

    def rotate(self) -> int:
        """Close the current segment and start the next; returns the new segment's index."""
        old = self._fd
        self.index += 1
        self._open_segment(self.index)
        if old >= 0:
            os.fsync(old)
            os.close(old)
        return self.index

    async def wait_durable(self, position: int) -> None:
        """Return once an fsync covers ``position`` (immediately unless the policy is ``always``)."""
        if self.fsync_policy != "always":
            return
        while self._synced < position:
            if self.failed is not None:
                raise OSError(f"the write-ahead log failed: {self.failed}")
            self._synced_event.clear()
            self._wakeup.set()
            await self._synced_event.wait()

    async def _flusher(self) -> None:
        interval = 1.0 if self.fsync_policy == "everysec" else None
        while True:
            if interval is None:
                await self._wakeup.wait()
                self._wakeup.clear()
            else:
                await asyncio.sleep(interval)
            target = self._written
            if target == self._synced:
                self._synced_event.set()
                continue
            try:
                await asyncio.to_thread(os.fsync, self._fd)
            except OSError as exc:  # a disk that cannot sync fails every later write
                self.failed = exc
                log.error("wal_fsync_failed", extra={"error": str(exc)})
                self._synced_event.set()
                return
            self.stats.fsyncs += 1
            self._synced = target
            self._synced_event.set()

    def start(self) -> None:
        if self.fsync_policy != "no":
            self._task = asyncio.create_task(self._flusher(), name="wal-flusher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1

    def delete_segments_before(self, index: int) -> None:
        for number in segments(self.directory):
            if number < index:
                segment_path(self.directory, number).unlink(missing_ok=True)
