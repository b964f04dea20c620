"""The node's own binary log, and one sender per peer that ships it in batches.

Nothing is queued per peer: the log's backlog *is* the queue, and a sender only remembers
how far its peer has got. A slow peer therefore costs no memory; one that falls behind the
backlog is told so by its own anti-entropy (our backlog no longer reaches its position) and
takes a full sync instead of losing entries.

A batch holds at most ``batch_size`` entries. A sender that has sent nothing for
``batch_timeout`` sends new entries at once (a quiet node's writes are not held back); a busy
one waits until ``batch_timeout`` after its previous batch for the next to fill, so that a
stream of single writes costs one request per peer per ``batch_timeout``, not one per write.
Within a batch, updates of the same record coalesce to the latest (record changes carry the
slot's whole state, so the latest one subsumes the others); the batch still declares the
whole range of sequences it covers, so the receiver's position moves past the ones left
out. The receiver answers with its position: a sender whose batch left a gap (lost or
reordered delivery) rewinds to it and resends from the backlog.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from tenacity import AsyncRetrying, retry_if_exception_type, stop_never, wait_exponential_jitter

from ..domain.changes import Change
from . import binarylog_pb2 as pb
from .peers import Peer, PeerTransport, PeerUnavailable
from .protocol import EncodedBatch, encode_batch, encode_entry, record_key, same_record
from .versions import Backlog, OriginKey

log = logging.getLogger("leaderboard_node.outbox")


class LocalLog:
    """This node's own entries, numbered within its epoch."""

    def __init__(self, origin: OriginKey, *, capacity: int, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.origin = origin
        self.backlog = Backlog(capacity=capacity, max_bytes=max_bytes)
        self._changed = asyncio.Event()

    @property
    def last_seq(self) -> int:
        return self.backlog.covered

    def append(self, changes: list[Change]) -> list[bytes]:
        """Number and serialize the changes; returns their serialized entries."""
        seq = self.backlog.covered
        now = time.monotonic()
        entries = []
        for change in changes:
            seq += 1
            entry = encode_entry(seq, change)
            entries.append(entry)
            self.backlog.append(seq, record_key(change), entry, at=now)
        self._changed.set()
        return entries

    async def wait_beyond(self, seq: int, *, timeout: float | None = None) -> bool:
        """Wait until the log holds entries after ``seq``; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.last_seq <= seq:
            self._changed.clear()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return self.last_seq > seq
        return True


def build_batch(origin: OriginKey, sender: str, entries: list[tuple[int, int, bytes]], *, first_seq: int,
                last_seq: int, hlc: int) -> EncodedBatch:
    """A batch covering ``first_seq..last_seq``, with updates of one record coalesced."""
    latest: dict[int, int] = {}
    for index, (_, key, _) in enumerate(entries):
        if key:
            latest[key] = index
    kept = [entry for index, (_, key, entry) in enumerate(entries)
            if not key or latest[key] == index or not same_record(entry, entries[latest[key]][2])]
    return encode_batch(origin, sender=sender, hlc=hlc, first_seq=first_seq, last_seq=last_seq, entries=kept)


class PeerSender:
    """Ships the local log to one peer, from wherever that peer stands."""

    def __init__(
        self,
        *,
        peer: Peer,
        node: str,
        local: LocalLog,
        transport: PeerTransport,
        batch_size: int,
        batch_timeout: float,
        clock: Callable[[], int],
        retry_interval: float,
        on_batch: Callable[[Peer, EncodedBatch, int], None] | None = None,
        on_retry: Callable[[Peer], None] | None = None,
    ) -> None:
        self.peer = peer
        self.node = node
        self.local = local
        self.transport = transport
        self.batch_size = batch_size
        self.batch_timeout = batch_timeout
        self.clock = clock
        self.retry_interval = retry_interval
        self.on_batch = on_batch
        self.on_retry = on_retry
        self.position: int | None = None  # the peer's applied sequence of our origin
        self._last_sent = 0.0

    def lag_entries(self) -> int:
        return max(0, self.local.last_seq - (self.position or 0))

    def lag_seconds(self) -> float:
        if self.position is None or self.position >= self.local.last_seq:
            return 0.0
        appended = self.local.backlog.appended_at(self.position)
        return 0.0 if appended is None else max(0.0, time.monotonic() - appended)

    async def _call(self, call: Callable[[], object]) -> object:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(PeerUnavailable), stop=stop_never, reraise=True,
            wait=wait_exponential_jitter(initial=0.05, max=self.retry_interval),
        ):
            with attempt:
                try:
                    return await call()  # type: ignore[misc]
                except PeerUnavailable:
                    if self.on_retry is not None:
                        self.on_retry(self.peer)
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _locate(self) -> int:
        status = await self._call(lambda: self.transport.status(self.peer))
        assert isinstance(status, pb.Status)
        for position in status.vector.positions:
            if (position.origin.node, position.origin.epoch) == self.local.origin:
                return position.seq
        return 0

    async def run(self) -> None:
        while True:
            if self.position is None:
                self.position = await self._locate()
            if not self.local.backlog.available_after(self.position):
                # Too far behind for our backlog: the peer's anti-entropy takes a full sync.
                await asyncio.sleep(self.retry_interval)
                self.position = None
                continue
            await self.local.wait_beyond(self.position)
            linger = self._last_sent + self.batch_timeout - time.monotonic()
            if linger > 0 and self.local.last_seq - self.position < self.batch_size:
                await self.local.wait_beyond(self.position + self.batch_size - 1, timeout=linger)
            self._last_sent = time.monotonic()
            await self.send_once()

    async def send_once(self) -> None:
        position = self.position or 0
        entries, covered = self.local.backlog.after(position, self.batch_size)
        if covered <= position:
            return
        batch = build_batch(self.local.origin, self.node, entries, first_seq=position + 1, last_seq=covered,
                            hlc=self.clock())
        ack = await self._call(lambda: self.transport.send_batch(self.peer, batch))
        assert isinstance(ack, pb.BatchAck)
        self.position = ack.applied_seq  # a refused batch (a gap) rewinds to where the peer stands
        if ack.accepted and self.on_batch is not None:
            self.on_batch(self.peer, batch, len(entries))
