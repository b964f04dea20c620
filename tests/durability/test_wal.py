"""The write-ahead log's flushes, rotations and failures, in process (the disk's answers are
played by the ``sync`` function the log calls in place of ``os.fsync``)."""

from __future__ import annotations

import asyncio
import errno
import os
import threading

import pytest

from leaderboard_node.config import DurabilitySettings
from leaderboard_node.durability.journal import Journal
from leaderboard_node.durability.wal import WriteAheadLog, segments


async def test_a_rotation_during_a_flush_in_flight_leaves_the_log_healthy(tmp_path):
    entered, release = threading.Event(), threading.Event()

    def slow_sync(fd: int) -> None:  # the disk takes its time, while the loop rotates
        entered.set()
        release.wait(10)
        os.fsync(fd)

    wal = WriteAheadLog(tmp_path, fsync="always", sync=slow_sync)
    wal.open()
    wal.start()
    try:
        position = wal.append(b"first")
        waiting = asyncio.ensure_future(wal.wait_durable(position))
        await asyncio.to_thread(entered.wait, 10)
        wal._sync = os.fsync
        wal.rotate()  # closes the descriptor the flush was handed before the fix
        release.set()
        await asyncio.wait_for(waiting, 10)
        assert wal.writable
        later = wal.append(b"second")
        await asyncio.wait_for(wal.wait_durable(later), 10)
        assert wal.stats.fsyncs >= 1
    finally:
        release.set()
        await wal.close()
    assert [list(WriteAheadLog(tmp_path, fsync="no").replay(start=1))] == [[b"first", b"second"]]


async def test_a_failed_fsync_refuses_appends_until_a_snapshot_heals_the_log(tmp_path):
    failures = iter([OSError(errno.EIO, "Input/output error")])

    def flaky_sync(fd: int) -> None:
        error = next(failures, None)
        if error is not None:
            raise error
        os.fsync(fd)

    wal = WriteAheadLog(tmp_path, fsync="always", sync=flaky_sync)
    wal.open()
    wal.start()
    try:
        position = wal.append(b"lost-sync")
        with pytest.raises(OSError):
            await asyncio.wait_for(wal.wait_durable(position), 10)
        assert not wal.writable
        with pytest.raises(OSError):
            wal.append(b"refused")
        index = wal.rotate()  # what a snapshot does first; then the snapshot is written, and:
        wal.heal(wal.position, segment=index)
        assert wal.writable
        later = wal.append(b"after")
        await asyncio.wait_for(wal.wait_durable(later), 10)
    finally:
        await wal.close()


async def test_a_failure_in_the_segment_after_the_rotation_waits_for_the_next_snapshot(tmp_path):
    wal = WriteAheadLog(tmp_path, fsync="no")
    wal.open()
    index = wal.rotate()
    rotated_at = wal.position
    wal._break(OSError(errno.EIO, "late"), segment=index)  # a write into the new segment failed
    wal.heal(rotated_at, segment=index)  # the snapshot that began at that rotation
    assert not wal.writable
    wal.heal(wal.position, segment=wal.rotate())
    assert wal.writable
    await wal.close()


async def test_the_journal_takes_a_snapshot_when_the_log_breaks_and_appends_go_on(tmp_path):
    failures = iter([OSError(errno.EIO, "Input/output error")])

    def flaky_sync(fd: int) -> None:
        error = next(failures, None)
        if error is not None:
            raise error
        os.fsync(fd)

    journal = Journal(tmp_path, DurabilitySettings(fsync="everysec", snapshot_interval=3600))
    journal.wal._sync = flaky_sync

    async def source():
        yield b"a snapshot chunk"

    journal.wal.open()
    journal.start(source)
    try:
        journal.record(b"batch-1")
        for _ in range(100):  # the flusher fails once, a second or so later; a snapshot mends it
            await asyncio.sleep(0.05)
            if journal.snapshots_written:
                break
        assert journal.snapshots_written == 1 and journal.writable
        journal.record(b"batch-2")
    finally:
        await journal.close()
    assert segments(tmp_path)
