"""Version vectors and per-origin backlogs.

An *origin* is one life of one node: (node name, epoch). Each origin numbers its entries
1, 2, 3, ...; a version vector maps every origin to the highest sequence applied. Comparing
two vectors tells exactly which entries one node misses.

A backlog keeps an origin's recent entries so that a peer that missed some can catch up
incrementally; ``floor`` is the last sequence that is gone (a request for entries after an
earlier one cannot be served, and the peer needs a full sync). Entries are kept serialized
(a ``pb.Entry`` each), which costs a fraction of the objects they decode to; beside each, in
arrays of machine words, its sequence, when it was appended, and a hash of the record it
updates (for coalescing: equal hashes are confirmed against the entries themselves). A
100,000-entry backlog costs about 18 MB. Entries of a batch that were
coalesced away (superseded by a later update of the same record) are simply absent: the
backlog *covers* up to ``covered`` even where sequences are missing.

A backlog is bounded twice: by ``capacity`` entries and by ``max_bytes`` of serialized entries
(a stream of writes with large metadata would otherwise hold gigabytes in 100,000 entries).
Whichever bound is reached first evicts the oldest entries; a peer that needs them takes a
full sync.
"""

from __future__ import annotations

import bisect
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import repeat


OriginKey = tuple[str, int]  # (node name, epoch)


class VersionVector:
    __slots__ = ("_seqs",)

    def __init__(self, seqs: dict[OriginKey, int] | None = None) -> None:
        self._seqs: dict[OriginKey, int] = dict(seqs or {})

    def get(self, origin: OriginKey) -> int:
        return self._seqs.get(origin, 0)

    def advance(self, origin: OriginKey, seq: int) -> None:
        if seq > self._seqs.get(origin, 0):
            self._seqs[origin] = seq

    def merge(self, other: VersionVector) -> None:
        for origin, seq in other.items():
            self.advance(origin, seq)

    def items(self) -> Iterator[tuple[OriginKey, int]]:
        return iter(list(self._seqs.items()))


    def copy(self) -> VersionVector:
        return VersionVector(self._seqs)

    def missing_from(self, other: VersionVector) -> dict[OriginKey, tuple[int, int]]:
        """Origins where ``other`` is ahead of this vector: origin -> (mine, theirs)."""
        return {o: (self.get(o), s) for o, s in other.items() if s > self.get(o)}

    def to_json(self) -> dict[str, dict[str, int]]:
        return {f"{node}@{epoch}": {"node": node, "epoch": epoch, "seq": seq}  # type: ignore[dict-item]
                for (node, epoch), seq in sorted(self._seqs.items())}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VersionVector) and self._seqs == other._seqs

    def __repr__(self) -> str:
        return f"VersionVector({self._seqs!r})"


@dataclass
class Backlog:
    """Recent entries of one origin, bounded by ``capacity``."""

    capacity: int
    max_bytes: int = 64 * 1024 * 1024
    floor: int = 0  # entries up to here are gone
    covered: int = 0  # the backlog answers for every sequence up to here
    _seqs: array = field(default_factory=lambda: array("q"))
    _keys: array = field(default_factory=lambda: array("q"))  # hash of the record an entry updates; 0: none
    _entries: list[bytes] = field(default_factory=list)  # serialized pb.Entry
    _times: array = field(default_factory=lambda: array("d"))
    _start: int = 0
    bytes: int = 0  # of the entries held

    def __len__(self) -> int:
        return len(self._seqs) - self._start

    def append(self, seq: int, key: int, entry: bytes, *, at: float | None = None) -> None:
        self._seqs.append(seq)
        self._keys.append(key)
        self._entries.append(entry)
        self._times.append(time.monotonic() if at is None else at)
        self.bytes += len(entry)
        if seq > self.covered:
            self.covered = seq
        if len(self) > self.capacity:
            self._evict(len(self) - self.capacity)
        if self.bytes > self.max_bytes:
            count, excess = 0, self.bytes - self.max_bytes
            while excess > 0 and count < len(self) - 1:  # the newest entry stays, whatever its size
                excess -= len(self._entries[self._start + count])
                count += 1
            if count:
                self._evict(count)

    def cover(self, seq: int) -> None:
        """Entries up to ``seq`` were applied (some coalesced away): answer for them."""
        if seq > self.covered:
            self.covered = seq

    def _evict(self, count: int) -> None:
        start, stop = self._start, self._start + count
        self.bytes -= sum(map(len, self._entries[start:stop]))
        # the entries go now; their places in the arrays and the list go when half of them are
        # gone (an evicted entry kept until then held up to twice the backlog's bytes)
        self._entries[start:stop] = repeat(b"", count)
        self._start = stop
        self.floor = self._seqs[stop - 1]
        if self._start > 4096 and self._start * 2 > len(self._seqs):
            del self._seqs[:self._start], self._keys[:self._start], self._entries[:self._start]
            del self._times[:self._start]
            self._start = 0

    def available_after(self, seq: int) -> bool:
        return seq >= self.floor

    def after(self, seq: int, limit: int, *, max_bytes: int = 16 * 1024 * 1024
              ) -> tuple[list[tuple[int, int, bytes]], int]:
        """Up to ``limit`` entries (seq, key hash, serialized entry) after ``seq``, at most
        ``max_bytes`` of them (at least one: a bulk import's entry is large), and the sequence
        the answer covers up to."""
        index = bisect.bisect_right(self._seqs, seq, lo=self._start)
        stop = min(index + limit, len(self._seqs))
        size, entries = 0, self._entries
        for position in range(index, stop):
            size += len(entries[position])
            if size > max_bytes and position > index:
                stop = position
                break
        entries = list(zip(self._seqs[index:stop], self._keys[index:stop], self._entries[index:stop]))
        covered = self.covered if stop == len(self._seqs) else self._seqs[stop] - 1
        return entries, covered

    def appended_at(self, seq: int) -> float | None:
        """When the first entry after ``seq`` was appended (for lag in seconds)."""
        index = bisect.bisect_right(self._seqs, seq, lo=self._start)
        return self._times[index] if index < len(self._seqs) else None
