"""Full sync: a fuzzy snapshot streamed in chunks, and its merge on the receiving side.

The sender records its version vector, then streams definitions and every bucket in rank
order, ``chunk_records`` records per chunk, yielding to the event loop between chunks while
writes go on (ZooKeeper's fuzzy snapshot). Records are walked by sort key, not by index, so
a record that does not change during the stream is sent exactly once; one that does change
is also in the log after the recorded vector, and the receiver's catch-up from that vector
brings its final state. Merges are idempotent, so receiving both is harmless.

Records travel as the rank cache holds them, packed elements (``record_codec``), so neither
side decodes or re-packs a record: the sender joins a slice of its sorted list, the receiver
checks each element's framing, re-points its node indexes when the two processes' name tables
differ, and builds the bucket from the elements at once (they arrive in rank order, which
makes the sort linear). The bucket's digest is settled afterwards, a slice at a time
(``Bucket.settle``), so a node turns ready without hashing every record first. A bucket that
already has records here (writes that arrived live meanwhile, or an anti-entropy sync of a
node that is not empty) is merged record by record.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from ..domain.changes import DeliveryProgress, EventPut, LeaderboardKill, LeaderboardPut, TournamentJoin
from ..domain.rank_cache import Bucket, digest_of
from ..domain.record_codec import adopt_framed, origin_table, pack_lengths
from ..domain.records import Slots
from ..domain.store import LeaderboardStore
from . import binarylog_pb2 as pb
from .protocol import (
    FormatTooNew,
    ProtocolError,
    checked_hlc,
    checked_text,
    definition_from_pb,
    definition_to_pb,
    erase_from_pb,
    erase_to_pb,
    event_from_pb,
    event_to_pb,
    grant_from_pb,
    grant_to_pb,
    join_from_pb,
    join_to_pb,
    kill_from_pb,
    kill_to_pb,
    parse,
    progress_from_pb,
    progress_to_pb,
    setting_from_pb,
    setting_to_pb,
    slot_from_pb,
    slot_to_pb,
)
from .versions import VersionVector

log = logging.getLogger("leaderboard_node.sync")


def vector_to_pb(vector: VersionVector, out: pb.VersionVector, floors: dict[tuple[str, int], int] | None = None) -> None:
    for (node, epoch), seq in vector.items():
        position = out.positions.add()
        position.origin.node, position.origin.epoch, position.seq = node, epoch, seq
        if floors:
            position.floor = floors.get((node, epoch), 0)


def vector_from_pb(message: pb.VersionVector) -> VersionVector:
    vector = VersionVector()
    for position in message.positions:
        if not position.origin.node:
            raise ProtocolError("a version vector names an origin without a node")
        vector.advance((position.origin.node, position.origin.epoch), position.seq)
    return vector


# Of the snapshots and full syncs this build writes (SyncHeader.format): 3 since they carry owner
# erasures, attempt grants, live settings, events and delivery progress (an older build would
# drop an erasure and let the erased records come back); 2 since records hold a slot per life
# and fold slots (an older build would take a fold slot for a node's own and count it twice);
# formats 2, 1 and 0 are still read (they hold none of those), 1 and 0 with node-name origins
# read as lives of epoch 0.
SYNC_FORMAT = 3
EVENTS_PER_CHUNK = 50  # an event holds up to events.top records


async def snapshot_chunks(
    store: LeaderboardStore, *, source: tuple[str, int], vector: VersionVector, chunk_records: int,
    format_number: int = SYNC_FORMAT,
) -> AsyncIterator[bytes]:
    """Serialized ``SyncChunk`` messages of a fuzzy snapshot taken at ``vector`` (``format_number``
    is another only in tests: a newer build's snapshot)."""
    header = pb.SyncChunk()
    header.header.SetInParent()
    header.header.source.node, header.header.source.epoch = source
    vector_to_pb(vector, header.header.vector)
    header.header.records = store.record_count()
    header.header.format = format_number
    definitions = pb.SyncChunk()
    definitions.definitions.SetInParent()
    for leaderboard in store.leaderboards.definitions():
        definition_to_pb(leaderboard, definitions.definitions.leaderboards.add())
    for leaderboard_id, (generation, incarnations) in store.leaderboards.tombstones().items():
        kill_to_pb(LeaderboardKill(leaderboard_id, tuple(incarnations), generation),
                   definitions.definitions.tombstones.add())
    for leaderboard_id, incarnation, expiry, owners in store.joins():
        for owner, joined in sorted(owners.items()):
            join_to_pb(TournamentJoin(leaderboard_id, incarnation, expiry, owner, joined),
                       definitions.definitions.joins.add())
    for erasure in store.erasures():
        erase_to_pb(erasure, definitions.definitions.erasures.add())
    for grant in store.attempt_grants():
        grant_to_pb(grant, definitions.definitions.attempts.add())
    for setting in store.setting_puts():
        setting_to_pb(setting, definitions.definitions.settings.add())
    for target, reached in list(store.events.progress.items()):
        for life, number in reached.items():
            progress_to_pb(DeliveryProgress(target, life, number), definitions.definitions.progress.add())
    d = definitions.definitions
    header.header.definitions = _definition_count(d)
    header.header.tombstones = sum(len(bucket.tombstones()) for _, _, bucket in store.buckets())
    events = list(store.events)
    header.header.events = len(events)
    yield header.SerializeToString()
    yield definitions.SerializeToString()

    chunks = 2
    for start in range(0, len(events), EVENTS_PER_CHUNK):
        chunk = pb.SyncChunk()
        for event in events[start:start + EVENTS_PER_CHUNK]:
            event_to_pb(event, chunk.events.events.add())
        yield chunk.SerializeToString()
        chunks += 1
        await asyncio.sleep(0)

    sent = 0
    for leaderboard_id, incarnation, bucket in store.buckets():
        after: bytes | None = None
        while True:
            elements = bucket.elements_after(after, chunk_records)
            if not elements:
                break
            after = elements[-1]
            chunk = _records_chunk(leaderboard_id, incarnation, bucket)
            chunk.records.elements = b"".join(elements)
            chunk.records.lengths = pack_lengths(elements)
            chunk.records.origins.extend(origin_table())
            chunk.records.digest = digest_of(elements, descending=bucket.descending).to_bytes(16, "big")
            yield chunk.SerializeToString()
            chunks += 1
            sent += len(elements)
            await asyncio.sleep(0)
        tombstones = bucket.tombstones()
        for start in range(0, len(tombstones), chunk_records):
            chunk = _records_chunk(leaderboard_id, incarnation, bucket)
            for owner, slots in tombstones[start:start + chunk_records]:
                record = chunk.records.records.add()
                record.owner_id = owner
                for slot in slots:
                    slot_to_pb(slot, record.slots.add())
            yield chunk.SerializeToString()
            chunks += 1
            await asyncio.sleep(0)
        if len(bucket) == 0 and not tombstones:  # an empty bucket still exists on the receiver
            yield _records_chunk(leaderboard_id, incarnation, bucket).SerializeToString()
            chunks += 1
    trailer = pb.SyncChunk()
    trailer.trailer.SetInParent()
    trailer.trailer.records, trailer.trailer.chunks = sent, chunks + 1
    trailer.trailer.hlc = store.clock.now()
    yield trailer.SerializeToString()


def _records_chunk(leaderboard_id: str, incarnation: str, bucket: Bucket) -> pb.SyncChunk:
    chunk = pb.SyncChunk()
    records = chunk.records
    records.SetInParent()
    records.leaderboard_id, records.incarnation, records.expiry = leaderboard_id, incarnation, bucket.expiry
    records.ascending = not bucket.descending
    return chunk


@dataclass
class SyncResult:
    vector: VersionVector
    records: int
    chunks: int
    source: tuple[str, int]


# What a receiver takes beyond what its source announced: records and deleted records written
# while the snapshot streams (the definitions are counted as they are sent: no slack). Streams of
# format 1 or 0 announced no definitions or deleted records: they get fixed limits.
RECORD_SLACK = 100_000
TOMBSTONE_SLACK = 10_000
UNANNOUNCED_DEFINITIONS = 100_000
UNANNOUNCED_TOMBSTONES = 1_000_000
EVENT_SLACK = 1_000  # events produced while a snapshot streams
MERGE_SLICE = 2_000  # synced records merged into a held bucket per step (a few ms; ``merge_step``)


def _definition_count(d: pb.SyncDefinitions) -> int:
    """Everything a definitions chunk holds, as its header announces it."""
    return (len(d.leaderboards) + len(d.tombstones) + len(d.joins) + len(d.erasures) + len(d.attempts)
            + len(d.settings) + len(d.progress))


def _bound(announced: int, slack: int) -> int:
    return 2 * announced + slack


class SnapshotReceiver:
    """Merges a stream of ``SyncChunk`` messages into a store.

    Bounded by what the header announced: a source that sends more definitions than it
    announced, more records or deleted records than about twice that (``_bound``), or a second
    definitions chunk, is refused (``ProtocolError``) before the excess is held.

    A bucket this node holds already (a running node's repair) is merged into a slice at a
    time (``merge_step``, ``LeaderboardStore.merge_synced``) so that the node goes on serving;
    one it lacks is built at once from the packed records (``Bucket.from_sync``).
    """

    def __init__(self, store: LeaderboardStore, *, merge_slice: int = MERGE_SLICE) -> None:
        self.store = store
        self._merge_slice = merge_slice
        self._merges: deque[Iterator[None]] = deque()
        self.header: pb.SyncHeader | None = None
        self.done = False
        self.records = 0
        self.tombstones = 0
        self.events = 0
        self.chunks = 0
        self._definitions_seen = False
        self._current: tuple[str, str, int, bool] | None = None
        self._elements: list[bytes] = []
        self._digest: int | None = 0  # the sum of the current bucket's chunk digests (None: one had none)
        self._tombstones: list[tuple[str, Slots]] = []

    def feed(self, data: bytes) -> None:
        chunk = parse(pb.SyncChunk, data)
        part = chunk.WhichOneof("part")
        self.chunks += 1
        if part == "header":
            if self.header is not None:
                raise ProtocolError("a snapshot has two headers")
            if chunk.header.format > SYNC_FORMAT:
                raise FormatTooNew(f"the snapshot is in format {chunk.header.format}, which a newer build wrote; "
                                   f"this build reads formats up to {SYNC_FORMAT}")
            self.header = chunk.header
            return
        if self.header is None:
            raise ProtocolError("a snapshot must start with its header")
        if self.done:
            raise ProtocolError("a snapshot goes on after its trailer")
        if part == "definitions":
            definitions = chunk.definitions
            allowed = self.header.definitions if self.header.format >= 2 else UNANNOUNCED_DEFINITIONS
            if self._definitions_seen or _definition_count(definitions) > allowed:
                raise ProtocolError(f"the snapshot sends more definitions than it announced ({allowed})")
            self._definitions_seen = True
            for message in definitions.erasures:  # first: the records that follow are merged with them
                self.store.apply(erase_from_pb(message))
            for message in definitions.tombstones:
                self.store.apply(kill_from_pb(message))
            for message in definitions.leaderboards:
                self.store.apply(LeaderboardPut(definition_from_pb(message)))
            for message in definitions.joins:
                self.store.apply(join_from_pb(message))
            for message in definitions.attempts:
                self.store.apply(grant_from_pb(message))
            for message in definitions.settings:
                self.store.apply(setting_from_pb(message))
            for message in definitions.progress:
                self.store.apply(progress_from_pb(message))
        elif part == "events":
            self.events += len(chunk.events.events)
            if self.events > _bound(self.header.events, EVENT_SLACK):  # format 3 on: older streams hold none
                raise ProtocolError(f"the snapshot sends more events than it announced ({self.header.events})")
            for message in chunk.events.events:
                self.store.apply(EventPut(event_from_pb(message)))
        elif part == "records":
            records = chunk.records
            target = (records.leaderboard_id, records.incarnation, records.expiry, not records.ascending)
            checked_text(records.leaderboard_id, what="leaderboard id")
            checked_text(records.incarnation, what="incarnation")
            try:
                elements = adopt_framed(records.elements, records.lengths, list(records.origins),
                                        descending=not records.ascending)
            except ValueError as exc:
                raise ProtocolError(f"synced records of {records.leaderboard_id}: {exc}") from None
            tombstones = []
            for record in records.records:
                if not record.slots:
                    raise ProtocolError("a record synced as slots has none")
                owner = checked_text(record.owner_id, what="owner id")
                tombstones.append((owner, tuple(slot_from_pb(s, folds=True) for s in record.slots)))
            if target != self._current:
                self._install()
                self._current = target
            if records.elements:
                if len(records.digest) != 16:
                    self._digest = None
                elif self._digest is not None:
                    self._digest += int.from_bytes(records.digest, "big")
            self.records += len(elements)
            self.tombstones += len(tombstones)
            tombstones_allowed = (_bound(self.header.tombstones, TOMBSTONE_SLACK) if self.header.format >= 2
                                  else UNANNOUNCED_TOMBSTONES)
            if self.records > _bound(self.header.records, RECORD_SLACK) or self.tombstones > tombstones_allowed:
                raise ProtocolError(f"the snapshot sends more records than it announced ({self.header.records})")
            self._elements += elements
            self._tombstones += tombstones
        elif part == "trailer":
            self._install()
            if chunk.trailer.chunks != self.chunks:
                raise ProtocolError(f"the snapshot announced {chunk.trailer.chunks} chunks, {self.chunks} arrived")
            self.store.clock.observe(checked_hlc(chunk.trailer.hlc, what="snapshot trailer hlc"))
            self.done = True
        else:
            raise ProtocolError("an empty snapshot chunk")

    def _install(self) -> None:
        if self._current is None:
            return
        leaderboard_id, incarnation, expiry, descending = self._current
        elements, tombstones, digest = self._elements, self._tombstones, self._digest
        self._current, self._elements, self._tombstones, self._digest = None, [], [], 0
        for _, slots in tombstones:
            for slot in slots:
                self.store.clock.observe(slot.hlc)
        merging = self.store.merge_synced(leaderboard_id, incarnation, expiry, elements, tombstones,
                                          slice_records=self._merge_slice)
        if merging is not None:
            self._merges.append(merging)
            return
        try:
            bucket = Bucket.from_sync(elements, tombstones, descending=descending, expiry=expiry,
                                      horizons=self.store.horizons, digest=digest)
        except ValueError as exc:
            raise ProtocolError(str(exc)) from None
        self.store.install_bucket(leaderboard_id, incarnation, bucket)

    def merge_step(self) -> bool:
        """Merge one slice of a synced bucket into the one held here; True while slices remain
        (the caller lets the event loop run between steps)."""
        while self._merges:
            for _ in self._merges[0]:
                return True
            self._merges.popleft()
        return False

    def result(self) -> SyncResult:
        if self.header is None or not self.done:
            raise ProtocolError("the snapshot ended early")
        while self.merge_step():  # what the caller left unmerged
            pass
        source = (self.header.source.node, self.header.source.epoch)
        return SyncResult(vector_from_pb(self.header.vector), self.records, self.chunks, source)
