"""The journal: what replication calls to make applied batches durable, and recovery.

* ``record(batch)`` appends an applied batch to the write-ahead log and returns the log
  position an acknowledgement waits for (``wait_durable``) under the ``always`` policy.
* ``recover(...)`` loads the newest sound snapshot, replays the log after it through the
  same code that applies batches from peers (so order and gaps are checked the same way),
  and reports what it found (damaged files included).
* A background task writes a snapshot every ``snapshot_interval`` seconds, when the log
  grows past ``snapshot_log_bytes``, or on request (after a full sync), and deletes what the
  kept snapshots no longer need.

A snapshot is fuzzy: writes go on while it is written. The log is rotated first, so every
change made during the snapshot is also in the log after it, and replaying it over the
snapshot is harmless (merges are idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import DurabilitySettings
from ..replication import binarylog_pb2 as pb
from ..replication.protocol import FormatTooNew, ProtocolError, parse
from .snapshots import read_snapshot, snapshots, write_snapshot
from .wal import WriteAheadLog

log = logging.getLogger("leaderboard_node.journal")


class RecoveryRefused(RuntimeError):
    """The data directory holds state this build must not read or discard: the node stops."""


@dataclass
class RecoveryReport:
    snapshot: int | None = None
    snapshot_records: int = 0
    replayed_batches: int = 0
    refused_batches: int = 0
    damaged_snapshots: list[dict[str, Any]] = field(default_factory=list)
    damaged_log: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def has_state(self) -> bool:
        return self.snapshot is not None or self.replayed_batches > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot, "snapshot_records": self.snapshot_records,
            "replayed_batches": self.replayed_batches, "refused_batches": self.refused_batches,
            "damaged_snapshots": self.damaged_snapshots, "damaged_log": self.damaged_log,
            "seconds": round(self.seconds, 3),
        }


class Journal:
    def __init__(self, directory: Path, settings: DurabilitySettings) -> None:
        self.directory = Path(directory)
        self.settings = settings
        self.wal = WriteAheadLog(self.directory, fsync=settings.fsync, on_broken=self.request_snapshot)
        self.report = RecoveryReport()
        self.snapshots_written = 0
        self.last_snapshot: dict[str, Any] | None = None
        self._snapshot_requested = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._snapshot_source: Callable[[], AsyncIterator[bytes]] | None = None
        self._lock = asyncio.Lock()

    # ---------------------------------------------------------------- recovery

    async def recover(
        self, *, load_snapshot: Callable[[list[bytes]], Awaitable[int]], apply_batch: Callable[[pb.Batch], bool]
    ) -> RecoveryReport:
        """Load the newest sound snapshot and replay the log after it."""
        started = time.monotonic()
        report = self.report
        start_segment = 1
        for index in reversed(snapshots(self.directory)):
            chunks, problem = read_snapshot(self.directory, index)
            if chunks is None:
                report.damaged_snapshots.append({"snapshot": index, "problem": problem})
                log.warning("snapshot_damaged", extra={"snapshot": index, "problem": problem})
                continue
            try:
                report.snapshot_records = await load_snapshot(chunks)
            except FormatTooNew as exc:
                # Sound, but a newer build's: falling back would start from less than the disk
                # holds, and the next snapshot would delete the log this one covers.
                raise RecoveryRefused(f"snapshot {index} in {self.directory}: {exc}. Run the build that wrote "
                                      "it, or move the data directory aside to start empty and full-sync") from None
            except ProtocolError as exc:
                report.damaged_snapshots.append({"snapshot": index, "problem": str(exc)})
                log.warning("snapshot_unreadable", extra={"snapshot": index, "problem": str(exc)})
                continue
            report.snapshot = index
            start_segment = index
            break
        if report.snapshot is None and report.damaged_snapshots:
            # Without a sound snapshot the log alone is incomplete: start empty and full-sync.
            start_segment = 1 << 62
        for count, payload in enumerate(self.wal.replay(start=start_segment)):
            if count % 1000 == 999:
                await asyncio.sleep(0)  # keep /healthz answering during a long replay
            try:
                batch = parse(pb.Batch, payload)
                applied = apply_batch(batch)
            except ProtocolError as exc:
                report.refused_batches += 1
                log.warning("log_record_unreadable", extra={"error": str(exc)})
                continue
            if applied:
                report.replayed_batches += 1
            else:
                report.refused_batches += 1
        report.damaged_log = [c.__dict__ for c in self.wal.stats.corruptions]
        report.seconds = time.monotonic() - started
        self.wal.open()
        log.info("recovered", extra=report.to_json())
        return report

    # ------------------------------------------------------------------ appends

    def record(self, batch: bytes) -> int:
        """Append a serialized ``Batch``; returns the log position to wait for."""
        position = self.wal.append(batch)
        if self.wal.segment_bytes > self.settings.snapshot_log_bytes:
            self._snapshot_requested.set()
        return position

    async def wait_durable(self, position: int) -> None:
        await self.wal.wait_durable(position)

    @property
    def writable(self) -> bool:
        """False while the log is broken (a write or fsync failed) and no snapshot has mended it:
        writes are refused before they are applied, so the log never skips one."""
        return self.wal.writable

    # --------------------------------------------------------------- snapshots

    def start(self, snapshot_source: Callable[[], AsyncIterator[bytes]]) -> None:
        self._snapshot_source = snapshot_source
        self.wal.start()
        self._task = asyncio.create_task(self._loop(), name="snapshots")

    def request_snapshot(self) -> None:
        self._snapshot_requested.set()

    async def _loop(self) -> None:
        retry = 1.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._snapshot_requested.wait(), self.settings.snapshot_interval)
            self._snapshot_requested.clear()
            try:
                await self.snapshot()
                retry = 1.0
            except OSError as exc:
                log.error("snapshot_failed", extra={"error": str(exc)})
                if not self.wal.writable:  # the log waits for a snapshot: try again soon
                    await asyncio.sleep(retry)
                    retry = min(retry * 2, 30.0)
                    self._snapshot_requested.set()

    async def snapshot(self) -> Path:
        """Rotate the log, write a snapshot, and delete what the kept snapshots no longer need."""
        assert self._snapshot_source is not None
        async with self._lock:
            started = time.monotonic()
            index = self.wal.rotate()
            rotated_at = self.wal.position
            source = self._snapshot_source()  # taken in the same tick as the rotation
            path, size = await write_snapshot(self.directory, index, source)
            self.wal.heal(rotated_at, segment=index)  # what the log held before is in the snapshot, synced
            kept = snapshots(self.directory)[-self.settings.keep_snapshots:]
            for old in snapshots(self.directory):
                if old not in kept:
                    path_old = self.directory / f"snapshot-{old:08d}.snap"
                    path_old.unlink(missing_ok=True)
            self.wal.delete_segments_before(kept[0])
            self.snapshots_written += 1
            self.last_snapshot = {"snapshot": index, "bytes": size, "seconds": round(time.monotonic() - started, 3),
                                  "at": int(time.time())}
            log.info("snapshot_written", extra=self.last_snapshot)
            return path

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.wal.close()
