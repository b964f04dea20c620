"""The write-ahead log: append-only segments of checksummed frames, with an fsync policy.

Appends go straight to the file with ``os.write`` (no user-space buffer), so a process that is
killed loses nothing the kernel has received; the fsync policy decides what survives a power
loss or a kernel crash:

* ``always``: a write is acknowledged only after an fsync covers it. Appends made while an
  fsync runs are covered by the next one (group commit), so concurrent writers share fsyncs.
* ``everysec``: a background task fsyncs once a second; a power loss can lose about a second.
* ``no``: the kernel flushes when it likes (typically within 30 s).

fsync runs in a worker thread so the event loop keeps serving while the disk works, on a
descriptor of its own (a duplicate): rotation may close the segment's descriptor meanwhile,
and the flush still syncs the file it meant to.

A write or an fsync that fails *breaks* the log: what it holds may have a hole (a page the
kernel dropped), so appending after it could make a log whose replay stops at the hole.
While broken, appends are refused (the caller refuses the write before applying it) and the
journal takes a snapshot, which makes everything the node holds durable by other means; once
it is written, ``heal`` mends the log and appends go on in a fresh segment. Nothing is failed
for good, and nothing acknowledged depends on a segment that failed to sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterator
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
    def __init__(self, directory: Path, *, fsync: str, sync: Callable[[int], None] = os.fsync,
                 on_broken: Callable[[], None] = lambda: None) -> None:
        self.directory = directory
        self.fsync_policy = fsync
        self._sync = sync  # os.fsync; tests put a slow or failing one in its place
        self.on_broken = on_broken
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
        self.broken: BaseException | None = None  # until a snapshot heals it (see the module docstring)
        self._broken_segment = 0  # the segment that failed: a snapshot taken after it was rotated away heals

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

    @property
    def writable(self) -> bool:
        return self.broken is None

    @property
    def position(self) -> int:
        """Bytes appended since start: what ``wait_durable`` takes."""
        return self._written

    def _break(self, exc: BaseException, *, segment: int) -> None:
        self._broken_segment = max(self._broken_segment, segment)
        if self.broken is None:
            self.broken = exc
            log.error("wal_broken", extra={"error": str(exc), "hint": "appends are refused until a snapshot is "
                                           "written; check the data directory's disk"})
            self.on_broken()
        self._synced_event.set()  # waiters find out

    def heal(self, position: int, *, segment: int) -> None:
        """A snapshot made everything up to ``position`` durable, where ``segment`` began: take
        appends again, unless the failure was in ``segment`` or later (then the next snapshot)."""
        if position > self._synced:
            self._synced = position
        if self.broken is not None and self._broken_segment < segment:
            log.info("wal_healed", extra={"after": str(self.broken)})
            self.broken = None
        self._synced_event.set()

    def append(self, payload: bytes) -> int:
        """Append one record; returns the position a later ``wait_durable`` can wait for."""
        if self.broken is not None:
            raise OSError(f"the write-ahead log is broken until a snapshot is written: {self.broken}")
        data = frames.encode(payload)
        try:
            written = os.write(self._fd, data)
            while written < len(data):  # pragma: no cover - short writes on odd filesystems
                written += os.write(self._fd, data[written:])
        except OSError as exc:
            self._break(exc, segment=self.index)
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
        """Close the current segment (synced) and start the next; returns the new segment's index.

        A flush in flight syncs the old segment on a descriptor of its own, so closing this one
        under it is harmless."""
        old = self._fd
        self._open_segment(self.index + 1)
        self.index += 1
        if old >= 0:
            try:
                self._sync(old)
                self._synced = max(self._synced, self._written)
            except OSError as exc:  # the snapshot that follows every rotation heals it
                self._break(exc, segment=self.index - 1)
            finally:
                os.close(old)
        return self.index

    async def wait_durable(self, position: int) -> None:
        """Return once an fsync covers ``position`` (immediately unless the policy is ``always``)."""
        if self.fsync_policy != "always":
            return
        while self._synced < position:
            if self.broken is not None:
                raise OSError(f"the write-ahead log could not be forced to disk: {self.broken}")
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
            if target <= self._synced or self.broken is not None:
                self._synced_event.set()
                continue
            fd, segment = os.dup(self._fd), self.index  # this flush's own: rotation may close the other
            try:
                await asyncio.to_thread(self._sync, fd)
            except OSError as exc:
                log.error("wal_fsync_failed", extra={"error": str(exc)})
                self._break(exc, segment=segment)
                continue
            finally:
                os.close(fd)
            self.stats.fsyncs += 1
            self._synced = max(self._synced, target)
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
