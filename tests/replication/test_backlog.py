"""Backlogs: what they answer for, and the memory they hold."""

from __future__ import annotations

import tracemalloc

from leaderboard_node.replication.versions import Backlog


def _entry(seq: int, size: int) -> bytes:
    return seq.to_bytes(8, "big") * (size // 8)


def test_a_backlog_answers_for_its_newest_entries_only():
    backlog = Backlog(capacity=10_000)
    for seq in range(1, 30_001):
        backlog.append(seq, seq, _entry(seq, 64))
    assert len(backlog) == 10_000
    assert backlog.floor == 20_000
    assert not backlog.available_after(19_999)
    entries, covered = backlog.after(20_000, 5)
    assert [seq for seq, _, _ in entries] == [20_001, 20_002, 20_003, 20_004, 20_005]
    assert entries[0][2] == _entry(20_001, 64)
    assert covered == 20_005


def test_evicted_entries_are_released_at_once():
    # an evicted entry used to stay referenced until half the backlog was evicted: up to twice
    # the memory its bounds promise
    capacity, size = 20_000, 1_000
    backlog = Backlog(capacity=capacity)
    tracemalloc.start()
    try:
        peak_after_fill = 0
        for seq in range(1, 5 * capacity + 1):
            backlog.append(seq, seq, _entry(seq, size))
            if seq == capacity:
                peak_after_fill = tracemalloc.get_traced_memory()[0]
            elif seq > capacity and seq % 5_000 == 0:
                held = tracemalloc.get_traced_memory()[0]
                assert held < peak_after_fill * 1.2, (seq, held, peak_after_fill)
    finally:
        tracemalloc.stop()


def test_the_byte_bound_evicts_as_the_entry_bound_does():
    backlog = Backlog(capacity=1_000_000, max_bytes=100_000)
    for seq in range(1, 2_001):
        backlog.append(seq, 0, _entry(seq, 1_000))
    assert backlog.bytes <= 100_000
    assert len(backlog) == 100
    assert backlog.floor == 1_900
