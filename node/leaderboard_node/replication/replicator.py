"""Replication of one node: its log to every peer, every peer's log to it, and repairs.

* **Publishing.** Each local change is appended to the node's own log (``LocalLog``) and
  acknowledged; one ``PeerSender`` per peer ships it in batches.
* **Receiving.** ``receive_batch`` applies each origin's entries in sequence order: a batch
  that starts beyond the next expected sequence is refused (the answer names where this
  node stands, and the sender rewinds), a batch already applied is ignored.
* **Anti-entropy.** Every ``anti_entropy_interval`` the node reads each peer's status. An
  origin the peer was already ahead on at the previous round is caught up from that peer's
  backlog (so entries of a dead node still arrive, from anyone who has them; entries newer
  than a round are usually pushes in flight, and pulling them too would fetch and apply
  everything twice under load); when the backlog no longer reaches that
  far, the node takes a full sync from the peer. When both vectors are equal but the
  content digests differ twice in a row, it merges a full snapshot too.
* **Start.** A node that starts empty asks every peer for its status, full-syncs from a
  peer that reports itself ready (the one holding the most records; never a fixed one),
  catches up to that peer's position, and only then reports ready. A cluster starting
  empty (every peer reachable, none ready, none holding records) is ready at once.

Everything here is free of HTTP: peers are reached through a ``PeerTransport``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..config import LeaderboardSyncSettings
from ..domain.changes import Change
from ..domain.errors import LogUnavailable
from ..domain.lives import life_id
from ..node import Node, NodeState
from . import binarylog_pb2 as pb
from . import clocks, retirement
from .outbox import LocalLog, PeerSender, build_batch
from .peers import Peer, PeerTransport, PeerUnavailable
from .protocol import (
    EncodedBatch,
    FormatTooNew,
    ProtocolError,
    catch_up_response,
    checked_hlc,
    encode_batch,
    entry_from_pb,
    record_key,
)
from .sync import SYNC_FORMAT, SnapshotReceiver, SyncResult, snapshot_chunks, vector_from_pb, vector_to_pb
from .versions import Backlog, OriginKey, VersionVector

if TYPE_CHECKING:
    from ..durability.journal import Journal

log = logging.getLogger("leaderboard_node.replication")
_SETTLE_SLICE = 2_000  # records hashed per turn of the event loop while a digest settles (a few ms)
_FOLD_SLICE = 1_000  # records settled per turn of the event loop after lives are retired
PROTOCOL = 3  # Status.protocol: 2 lives are retired and folded (``retirement``); 3 events (``events``)
MAX_BATCH_SPAN = 1_000_000  # sequences one batch may cover (a sender's batch_size is at most 100,000)
MAX_SEQ = (1 << 63) - 1

_STATES = {
    NodeState.STARTING: pb.NODE_STATE_STARTING,
    NodeState.SYNCING: pb.NODE_STATE_SYNCING,
    NodeState.READY: pb.NODE_STATE_READY,
    NodeState.STOPPING: pb.NODE_STATE_STOPPING,
}
STATE_NAMES = {v: k.value for k, v in _STATES.items()}


class Discovery(Protocol):
    async def peers(self) -> list[Peer]: ...


class ReplicationEvents(Protocol):
    """What replication reports (metrics); every method must be cheap and must not raise."""

    def batch_sent(self, peer: Peer, batch: pb.Batch, entries_covered: int) -> None: ...

    def batch_received(self, batch: pb.Batch, *, outcome: str) -> None: ...

    def full_sync(self, *, role: str, seconds: float, records: int, ok: bool) -> None: ...

    def catch_up(self, *, role: str, entries: int) -> None: ...

    def sync_failure(self, *, kind: str) -> None: ...


class _NoEvents:
    def batch_sent(self, peer: Peer, batch: pb.Batch, entries_covered: int) -> None: ...
    def batch_received(self, batch: pb.Batch, *, outcome: str) -> None: ...
    def full_sync(self, *, role: str, seconds: float, records: int, ok: bool) -> None: ...
    def catch_up(self, *, role: str, entries: int) -> None: ...
    def sync_failure(self, *, kind: str) -> None: ...


@dataclass
class Member:
    peer: Peer
    name: str | None = None
    state: str = "unknown"
    reachable: bool = False
    vector: VersionVector = field(default_factory=VersionVector)
    previous_vector: VersionVector = field(default_factory=VersionVector)  # at the poll before
    state_digest: str = ""
    records: int = 0
    client_address: str = ""
    last_seen: float = 0.0
    digest_mismatches: int = 0
    is_self: bool = False
    life: tuple[str, int] | None = None  # the member's current life: (name, epoch)
    protocol: int = 0
    clock: clocks.ClockFilter = field(default_factory=clocks.ClockFilter)
    polled_at: float = 0.0  # monotonic, of the last poll that got an answer
    unreachable_since: float | None = None  # Unix seconds
    # Until then (monotonic), the member's snapshots are in a format a newer build wrote: not a
    # source of full syncs. Asked again after that: it may have been rolled back meanwhile.
    newer_format_until: float = 0.0
    # Until then (monotonic), the member is not asked for a start-up sync: its last one failed
    # (it went away, stalled, or sent more than it announced); another ready member is asked.
    sync_failed_until: float = 0.0

    def sends_newer_format(self) -> bool:
        return time.monotonic() < self.newer_format_until

    def can_serve_a_sync(self) -> bool:
        now = time.monotonic()
        return now >= self.newer_format_until and now >= self.sync_failed_until


class NeedFullSync(Exception):
    pass


class NotAccepting(Exception):
    """This node cannot take a peer's batch now (its log is broken until a snapshot): try later."""


NEWER_FORMAT_RETRY = 60.0  # seconds before a peer that sent a newer format is asked for a full sync again
FAILED_SYNC_RETRY = 10.0  # seconds before a peer whose start-up sync failed is asked again


class Replicator:
    def __init__(
        self,
        *,
        node: Node,
        settings: LeaderboardSyncSettings,
        transport: PeerTransport,
        discovery: Discovery,
        epoch: int,
        client_address: str = "",
        events: ReplicationEvents | None = None,
        bootstrap_timeout: float = 30.0,
        flush_timeout: float = 10.0,
        journal: Journal | None = None,
    ) -> None:
        self.node = node
        self.store = node.store
        self.settings = settings
        self.transport = transport
        self.discovery = discovery
        self.events: ReplicationEvents = events or _NoEvents()
        self.origin: OriginKey = (node.name, epoch)
        self.store.node = life_id(node.name, epoch)
        self.client_address = client_address
        self.local = LocalLog(self.origin, capacity=settings.backlog_size, max_bytes=settings.backlog_bytes)
        self.vector = VersionVector()
        self.backlogs: dict[OriginKey, Backlog] = {self.origin: self.local.backlog}
        self.members: dict[str, Member] = {}
        self.senders: dict[str, tuple[PeerSender, asyncio.Task[None]]] = {}
        self.bootstrap_timeout = bootstrap_timeout
        self.flush_timeout = flush_timeout
        self.full_syncs_taken = 0
        self.full_syncs_served = 0
        self.catch_ups_taken = 0
        self.last_sync: dict[str, Any] | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._repair_lock = asyncio.Lock()
        self.journal = journal
        self.recovery: dict[str, Any] | None = None
        self._has_state = False
        self._durable_position = 0
        # Resolved (and replaced) whenever a peer confirms a batch: what ack=replicated waits on.
        self._acked: asyncio.Future[None] | None = None
        self._dead_since: dict[OriginKey, float] = {}  # dead lives of other nodes, and when first seen dead
        node.on_publish(self._publish)
        if journal is not None:
            node.on_write_check(self._require_writable_log)

    # ------------------------------------------------------------------ publishing

    def _publish(self, changes: list[Change]) -> int:
        first = self.local.last_seq + 1
        entries = self.local.append(changes)
        seq = self.local.last_seq
        self.vector.advance(self.origin, seq)
        if self.journal is not None:
            batch = encode_batch(self.origin, sender=self.node.name, hlc=self.store.clock.last, first_seq=first,
                                 last_seq=seq, entries=entries)
            self._durable_position = self.journal.record(batch.data)
        return seq

    def _require_writable_log(self) -> None:
        if self.journal is not None and not self.journal.writable:
            raise LogUnavailable("this node's write-ahead log failed and is being mended by a snapshot; "
                                 "retry in a few seconds or on another node", field="body")

    def _outlive(self, vector: VersionVector) -> None:
        """Make this life's epoch larger than any earlier life of this node in ``vector`` (a
        recovered log, a peer's vector): lives of one name are ordered by epoch, and a wall
        clock set back since the last run must not make this life look older. Only before this
        life wrote anything."""
        name, epoch = self.origin
        floor = max((e for (n, e), _ in vector.items() if n == name and (n, e) != self.origin), default=0)
        if floor < epoch or self.local.last_seq:
            return
        new = (name, floor + 1)
        log.info("epoch_raised", extra={"node": name, "from_epoch": epoch, "to_epoch": floor + 1})
        self.backlogs[new] = self.backlogs.pop(self.origin)
        self.origin = self.local.origin = new
        self.store.node = life_id(*new)

    async def acknowledge(self, seq: int, *, replicated: bool = False, timeout: float = 5.0) -> None:
        """Return once the write that ended at ``seq`` is as safe as asked.

        Always: in the log on disk as the fsync policy promises. With ``replicated``: also
        applied by at least one peer (``TimeoutError`` when none confirms in time; the write
        stays applied here and still replicates).
        """
        if self.journal is not None:
            await self.journal.wait_durable(self._durable_position)
        if not replicated:
            return
        if not self.senders:  # alone: no peer will ever confirm
            raise TimeoutError("no peer to replicate to")
        async with asyncio.timeout(timeout):
            while self.replicated_seq() < seq:
                if self._acked is None:
                    self._acked = asyncio.get_running_loop().create_future()
                await asyncio.shield(self._acked)

    def replicated_seq(self) -> int:
        """The highest sequence of this node's log that some peer has applied."""
        return max((sender.position or 0 for sender, _ in self.senders.values()), default=0)

    def _batch_sent(self, peer: Peer, batch: EncodedBatch, entries_covered: int) -> None:
        self.events.batch_sent(peer, batch, entries_covered)
        waiting, self._acked = self._acked, None
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    # ------------------------------------------------------------------- receiving

    def _backlog(self, origin: OriginKey) -> Backlog:
        backlog = self.backlogs.get(origin)
        if backlog is None:
            applied = self.vector.get(origin)
            backlog = self.backlogs[origin] = Backlog(capacity=self.settings.backlog_size,
                                                      max_bytes=self.settings.backlog_bytes, floor=applied,
                                                      covered=applied)
        return backlog

    def receive_batch(self, batch: pb.Batch, *, record: bool = True, raw: bytes | None = None) -> pb.BatchAck:
        """Apply a batch of one origin's entries, in order; all or nothing.

        Applied batches go to the journal (unless ``record`` is false: replaying the journal).
        """
        node_name, epoch = batch.origin.node, batch.origin.epoch
        if not node_name or batch.first_seq < 1 or batch.last_seq < batch.first_seq:
            raise ProtocolError("a batch needs an origin and a valid range of sequences")
        if batch.last_seq > MAX_SEQ or batch.last_seq - batch.first_seq >= MAX_BATCH_SPAN:
            raise ProtocolError(f"a batch covers at most {MAX_BATCH_SPAN} sequences, each below 2^63")
        entries = batch.entries
        if not entries or entries[-1].seq != batch.last_seq:
            # A position moves only as far as entries applied: the last one is never coalesced away.
            raise ProtocolError("a batch ends with its last entry (last_seq is that entry's sequence)")
        checked_hlc(batch.sent_hlc, what="sent_hlc")
        origin = (node_name, epoch)
        if origin == self.origin:  # our own entries, relayed back: we have them
            return pb.BatchAck(applied_seq=self.vector.get(origin), accepted=True)
        if self._retired(origin):  # a retired life's: folded here already, nothing to apply
            self.events.batch_received(batch, outcome="duplicate")
            return pb.BatchAck(applied_seq=batch.last_seq, accepted=True)
        applied = self.vector.get(origin)
        if batch.last_seq <= applied:
            self.events.batch_received(batch, outcome="duplicate")
            return pb.BatchAck(applied_seq=applied, accepted=True)
        if batch.first_seq > applied + 1:
            self.events.batch_received(batch, outcome="gap")
            return pb.BatchAck(applied_seq=applied, accepted=False)
        if record and self.journal is not None and not self.journal.writable:
            raise NotAccepting("the write-ahead log is broken until a snapshot mends it")
        decoded: list[tuple[int, Change, pb.Entry]] = []
        previous = 0
        for entry in entries:
            seq = entry.seq
            if seq < batch.first_seq or seq > batch.last_seq or seq <= previous:
                raise ProtocolError(f"entry {seq} is out of order or outside its batch")
            previous = seq
            if seq > applied:  # the rest overlaps what a catch-up brought already
                decoded.append((seq, entry_from_pb(entry), entry))
        self.store.clock.observe(batch.sent_hlc)
        backlog = self._backlog(origin)
        for seq, change, entry in decoded:
            self.store.apply(change)
            backlog.append(seq, record_key(change), entry.SerializeToString())
        backlog.cover(batch.last_seq)
        self.vector.advance(origin, batch.last_seq)
        if record and self.journal is not None:
            self.journal.record(raw if raw is not None else batch.SerializeToString())
        self.events.batch_received(batch, outcome="applied")
        return pb.BatchAck(applied_seq=batch.last_seq, accepted=True)

    # ------------------------------------------------------------------ serving peers

    def state_digest(self) -> str:
        """A hash of every bucket's digest and every definition, to compare replicas; empty
        while some bucket's digest is not settled yet (nothing to compare)."""
        if not self.store.digests_settled():
            return ""
        horizon = self.node.seconds() - self.store.retention + 120
        parts = sorted(
            f"{lid}/{inc}/{bucket.expiry}/{bucket.digest}"
            for lid, inc, bucket in self.store.buckets() if bucket.expiry == 0 or bucket.expiry > horizon
        )
        parts += sorted(f"def/{lb.id}/{lb.incarnation}" for lb in self.store.leaderboards.definitions())
        return hashlib.blake2b("\n".join(parts).encode(), digest_size=16).hexdigest()

    def status(self) -> pb.Status:
        status = pb.Status(state=_STATES[self.node.state], hlc=self.store.clock.last,
                           state_digest=self.state_digest(), records=self.store.record_count(),
                           client_address=self.client_address, protocol=PROTOCOL,
                           time_ms=self.node.now.milliseconds())
        status.self.node, status.self.epoch = self.origin
        floors = {origin: backlog.floor for origin, backlog in self.backlogs.items()}
        vector_to_pb(self.vector, status.vector, floors)
        return status

    def catch_up(self, request: pb.CatchUpRequest) -> bytes:
        """A serialized ``CatchUpResponse``: entries of one origin from this node's backlog."""
        origin = (request.origin.node, request.origin.epoch)
        backlog = self.backlogs.get(origin)
        if backlog is None or not backlog.available_after(request.after_seq):
            return catch_up_response(None)
        limit = max(1, min(request.max_entries or self.settings.batch_size, 100_000))
        entries, covered = backlog.after(request.after_seq, limit)
        batch = build_batch(origin, self.node.name, entries, first_seq=request.after_seq + 1,
                            last_seq=max(covered, request.after_seq), hlc=self.store.clock.now())
        self.events.catch_up(role="served", entries=batch.entries)
        return catch_up_response(batch)

    async def snapshot(self) -> AsyncIterator[bytes]:
        """Serialized ``SyncChunk`` messages of a full sync served to a peer."""
        started = time.monotonic()
        vector = self.vector.copy()
        count = 0
        ok = False
        try:
            async for chunk in snapshot_chunks(self.store, source=self.origin, vector=vector,
                                               chunk_records=self.settings.sync_chunk_records,
                                               format_number=self.settings.faults.sync_format or SYNC_FORMAT):
                count += 1
                yield chunk
            ok = True
            self.full_syncs_served += 1
        finally:
            self.events.full_sync(role="served", seconds=time.monotonic() - started,
                                  records=self.store.record_count(), ok=ok)

    # -------------------------------------------------------------------- lifecycle

    async def recover(self) -> None:
        """Load this node's own state from disk (before peers may send anything)."""
        if self.journal is not None:
            await self._recover()

    async def start(self) -> None:
        """Start logging, then sync with peers; the node turns ready once synced."""
        if self.journal is not None:
            self.journal.start(self._snapshot_source)
        self.node.set_state(NodeState.SYNCING)
        self._tasks.append(asyncio.create_task(self._main(), name="replication"))
        self._tasks.append(asyncio.create_task(self._settle_digests(), name="digests"))

    def _snapshot_source(self) -> AsyncIterator[bytes]:
        return snapshot_chunks(self.store, source=self.origin, vector=self.vector.copy(),
                               chunk_records=self.settings.sync_chunk_records)

    async def _recover(self) -> None:
        assert self.journal is not None

        async def load_snapshot(chunks: list[bytes]) -> int:
            receiver = SnapshotReceiver(self.store)
            for chunk in chunks:
                receiver.feed(chunk)
                await asyncio.sleep(0)
            result = receiver.result()
            self._merge_vector(result.vector)
            return result.records

        def apply_batch(batch: pb.Batch) -> bool:
            before = self.vector.get((batch.origin.node, batch.origin.epoch))
            self.receive_batch(batch, record=False)
            return self.vector.get((batch.origin.node, batch.origin.epoch)) > before

        report = await self.journal.recover(load_snapshot=load_snapshot, apply_batch=apply_batch)
        self._outlive(self.vector)
        self._has_state = report.has_state
        self.recovery = report.to_json()

    def _merge_vector(self, vector: VersionVector) -> None:
        for origin, seq in vector.items():
            backlog = self._backlog(origin)
            if backlog.covered < seq:
                backlog.floor = max(backlog.floor, seq)
                backlog.covered = seq
        self.vector.merge(vector)

    async def _main(self) -> None:
        try:
            await self._bootstrap()
        except asyncio.CancelledError:
            raise
        except Exception:  # pragma: no cover - logged, and the node still serves
            log.exception("bootstrap_failed", extra={"node": self.node.name})
            self.node.set_state(NodeState.READY)
        while True:
            await self.anti_entropy_round()
            await asyncio.sleep(self.settings.anti_entropy_interval)

    async def _settle_digests(self) -> None:
        """Hash the records of buckets built at once (full sync, recovery), and fold what
        retired lives wrote, a slice at a time."""
        while True:
            if self.store.settle_digests(_SETTLE_SLICE) | self.store.settle_lives(_FOLD_SLICE):
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        """Flush what peers have not received (bounded in time), then stop every task."""
        deadline = time.monotonic() + self.flush_timeout
        while time.monotonic() < deadline and any(
            s.lag_entries() > 0 and self.members.get(a, Member(s.peer)).reachable
            for a, (s, _) in self.senders.items()
        ):
            await asyncio.sleep(0.02)
        tasks = self._tasks + [task for _, task in self.senders.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self.senders.clear()
        close = getattr(self.discovery, "close", None)
        if close is not None:
            await close()
        if self.journal is not None:
            await self.journal.close()

    # ---------------------------------------------------------------- membership

    async def _refresh_members(self) -> list[Member]:
        try:
            peers = await self.discovery.peers()
        except Exception as exc:  # discovery trouble must not stop replication
            log.warning("discovery_failed", extra={"node": self.node.name, "error": str(exc)})
            return [m for m in self.members.values() if not m.is_self]
        current = {peer.address for peer in peers}
        for address in [a for a in self.members if a not in current]:
            del self.members[address]
            sender = self.senders.pop(address, None)
            if sender is not None:
                sender[1].cancel()
        for peer in peers:
            if peer.address not in self.members:
                self.members[peer.address] = Member(peer=peer, name=peer.name)
        return [m for m in self.members.values() if not m.is_self]

    def _ensure_sender(self, member: Member) -> None:
        if member.is_self or member.peer.address in self.senders:
            return
        sender = PeerSender(
            peer=member.peer, node=self.node.name, local=self.local, transport=self.transport,
            batch_size=self.settings.batch_size, batch_timeout=self.settings.batch_timeout,
            clock=self.store.clock.now, retry_interval=max(0.2, self.settings.anti_entropy_interval),
            on_batch=self._batch_sent, on_retry=lambda peer: self.events.sync_failure(kind="send"),
        )
        task = asyncio.create_task(sender.run(), name=f"sender-{member.peer.address}")
        self.senders[member.peer.address] = (sender, task)

    async def _poll(self, member: Member) -> pb.Status | None:
        wall = self.node.now.milliseconds
        sent = wall()
        try:
            status = await self.transport.status(member.peer)
            checked_hlc(status.hlc, what="status hlc")
        except (PeerUnavailable, ProtocolError) as exc:
            if member.reachable or member.unreachable_since is None:
                member.unreachable_since = time.time()
                if member.reachable:  # a transition, logged once (not once per poll)
                    log.warning("peer_unreachable", extra={"node": self.node.name, "peer": member.name,
                                                           "address": member.peer.address, "error": str(exc)})
            member.reachable = False
            return None
        if not member.reachable and member.last_seen:
            log.info("peer_reachable", extra={"node": self.node.name, "peer": status.self.node,
                                              "address": member.peer.address,
                                              "down_seconds": round(time.time() - (member.unreachable_since or 0), 1)})
        member.clock.add(sent_ms=sent, received_ms=wall(), peer_ms=status.time_ms)
        member.reachable = True
        member.unreachable_since = None
        member.last_seen = member.polled_at = time.monotonic()
        member.life = (status.self.node, status.self.epoch)
        member.protocol = status.protocol
        member.name = status.self.node
        member.state = STATE_NAMES.get(status.state, "unknown")
        member.previous_vector, member.vector = member.vector, vector_from_pb(status.vector)
        member.state_digest = status.state_digest
        member.records = status.records
        member.client_address = status.client_address
        if status.self.node == self.node.name:
            member.is_self = True
            sender = self.senders.pop(member.peer.address, None)
            if sender is not None:
                sender[1].cancel()
        self.store.clock.observe(status.hlc)
        return status

    # ------------------------------------------------------------------ bootstrap

    async def _bootstrap(self) -> None:
        deadline = time.monotonic() + self.bootstrap_timeout
        while True:
            members = await self._refresh_members()
            for member in members:
                self._ensure_sender(member)
            if not members:
                log.info("bootstrap_alone", extra={"node": self.node.name})
                break
            await asyncio.gather(*(self._poll(m) for m in members))
            self._check_clock(members)
            for member in members:
                self._outlive(member.vector)
            members = [m for m in members if not m.is_self]
            if not members:
                break
            ready = [m for m in members if m.reachable and m.state == NodeState.READY.value]
            readable = [m for m in ready if m.can_serve_a_sync()]
            if readable:
                source = max(readable, key=lambda m: (m.records, random.random()))
                try:
                    if self._has_state:
                        try:  # recovered from disk: what peers wrote since may still be in their backlogs
                            await self._catch_up_with(source)
                            break
                        except NeedFullSync:
                            pass
                    await self._full_sync(source, reason="bootstrap")
                    await self._catch_up_with(source)
                    break
                except (PeerUnavailable, ProtocolError, NeedFullSync) as exc:
                    self.events.sync_failure(kind="bootstrap")
                    log.warning("bootstrap_sync_failed", extra={"node": self.node.name,
                                                                "source": source.name, "error": str(exc)})
                    if not isinstance(exc, FormatTooNew):
                        source.sync_failed_until = time.monotonic() + FAILED_SYNC_RETRY
                    continue  # another source at once (the deadline does not make an empty node ready)
            elif ready:
                # Every ready peer serves a format this build cannot read (a rollback, or an old pod
                # among upgraded ones), or its last sync failed (it stalled, or sent more than it
                # announced). A node with its own state serves it, and catches up with peers'
                # batches as usual; an empty one would serve nothing and take writes on no data: it
                # stays not ready until a peer it can read and sync from is there.
                if self._has_state:
                    log.warning("bootstrap_from_own_state", extra={
                        "node": self.node.name, "reason": "no ready peer could serve a full sync"})
                    break
                if time.monotonic() > deadline:
                    log.error("bootstrap_refused", extra={
                        "node": self.node.name, "peers": [m.name for m in ready],
                        "hint": "no ready peer could serve a full sync: their snapshots are in a newer format "
                                "(run the build they run), or their syncs failed (see bootstrap_sync_failed)"})
                    deadline = time.monotonic() + self.bootstrap_timeout
                await asyncio.sleep(0.2)
                continue
            elif all(m.reachable for m in members) and (self._has_state or all(m.records == 0 for m in members)):
                # Nobody is ready: the whole cluster is starting. Nodes with state serve it and
                # anti-entropy reconciles them; empty nodes wait for one of them to be ready.
                log.info("bootstrap_cluster_start", extra={"node": self.node.name, "peers": len(members),
                                                           "has_state": self._has_state})
                break
            if time.monotonic() > deadline:
                log.warning("bootstrap_timeout", extra={"node": self.node.name,
                                                        "seconds": self.bootstrap_timeout})
                break
            await asyncio.sleep(0.2)
        self._outlive(self.vector)
        self.node.set_state(NodeState.READY)

    async def _catch_up_with(self, member: Member, *, rounds: int = 50) -> None:
        """Catch up until this node has everything ``member`` had when we asked."""
        for _ in range(rounds):
            status = await self._poll(member)
            if status is None:
                raise PeerUnavailable(f"{member.name} went away during catch-up")
            missing = {o: v for o, v in self.vector.missing_from(member.vector).items()
                       if o != self.origin and not self._retired(o)}
            if not missing:
                return
            for origin in missing:
                await self._catch_up_origin(member, origin)
        raise NeedFullSync(f"could not catch up with {member.name}")

    # ---------------------------------------------------------------- anti-entropy

    async def anti_entropy_round(self) -> None:
        members = await self._refresh_members()
        started = time.monotonic()
        await asyncio.gather(*(self._poll(m) for m in members))
        self._check_clock(members)
        self._retire(members, polled_since=started)
        for member in members:
            if member.is_self or not member.reachable:
                continue
            self._ensure_sender(member)
            try:
                await self._repair_from(member)
            except (PeerUnavailable, ProtocolError) as exc:
                self.events.sync_failure(kind="anti_entropy")
                log.info("repair_failed", extra={"node": self.node.name, "peer": member.name, "error": str(exc)})

    async def _repair_from(self, member: Member) -> None:
        # What the peer held both at the previous poll and now (it may have restarted empty since)
        settled = VersionVector({o: min(s, member.vector.get(o)) for o, s in member.previous_vector.items()})
        missing = {o: v for o, v in self.vector.missing_from(settled).items()
                   if o != self.origin and not self._retired(o)}
        try:
            for origin in missing:
                await self._catch_up_origin(member, origin, target=settled.get(origin))
        except NeedFullSync:
            await self._full_sync(member, reason="behind_backlog")
            return
        if missing:
            return
        if (self._same_vectors(member.vector) and member.state == NodeState.READY.value and self.node.ready
                and member.protocol == PROTOCOL):  # digests of other builds are other hashes
            mine = self.state_digest()
            if not member.state_digest or not mine:
                return  # a digest is still settling after a full sync: nothing to compare yet
            if member.state_digest != mine:
                member.digest_mismatches += 1
                if member.digest_mismatches >= 2:
                    log.warning("digest_mismatch", extra={"node": self.node.name, "peer": member.name})
                    member.digest_mismatches = 0
                    await self._full_sync(member, reason="digest_mismatch")
            else:
                member.digest_mismatches = 0

    async def _catch_up_origin(self, member: Member, origin: OriginKey, *, target: int | None = None) -> None:
        """Pull ``origin``'s entries from ``member`` up to ``target`` (default: all it has)."""
        if target is None:
            target = member.vector.get(origin)
        while self.vector.get(origin) < target:
            request = pb.CatchUpRequest(after_seq=self.vector.get(origin), max_entries=self.settings.batch_size)
            request.origin.node, request.origin.epoch = origin
            response = await self.transport.catch_up(member.peer, request)
            if not response.available:
                raise NeedFullSync(f"{member.name} no longer holds entries of {origin} after {request.after_seq}")
            before = self.vector.get(origin)
            ack = self.receive_batch(response.batch)
            if ack.applied_seq <= before:
                return  # no progress: the peer's answer did not reach further; try next round
            self.catch_ups_taken += 1
            self.events.catch_up(role="taken", entries=len(response.batch.entries))

    # ------------------------------------------------------------------- full sync

    async def _full_sync(self, member: Member, *, reason: str) -> SyncResult | None:
        """Merge a full snapshot of ``member``; None when its snapshots are in a format this build
        cannot read (it sent one lately: not asked again before ``newer_format_until``)."""
        if member.sends_newer_format():
            return None
        async with self._repair_lock:
            started = time.monotonic()
            log.info("full_sync_started", extra={"node": self.node.name, "source": member.name, "reason": reason})
            receiver = SnapshotReceiver(self.store)
            ok = False
            try:
                async for chunk in self.transport.snapshot(member.peer):
                    receiver.feed(chunk)
                    while receiver.merge_step():  # a repair: the node serves between slices
                        await asyncio.sleep(0)
                result = receiver.result()
                ok = True
            except FormatTooNew:
                member.newer_format_until = time.monotonic() + NEWER_FORMAT_RETRY
                raise
            finally:
                self.events.full_sync(role="taken", seconds=time.monotonic() - started,
                                      records=receiver.records, ok=ok)
            self._merge_vector(result.vector)
            self.full_syncs_taken += 1
            if self.journal is not None:
                self.journal.request_snapshot()
            seconds = time.monotonic() - started
            self.last_sync = {"source": member.name, "reason": reason, "records": result.records,
                              "seconds": round(seconds, 3), "at": int(time.time())}
            log.info("full_sync_done", extra={"node": self.node.name, "source": member.name, "reason": reason,
                                              "records": result.records, "seconds": round(seconds, 3)})
            return result

    # ------------------------------------------------------------- lives and clocks

    def _check_clock(self, members: list[Member]) -> None:
        """Turn not ready (and back) when this node's clock is off from most reachable peers'."""
        peers = [m.clock for m in members if not m.is_self and m.reachable]
        offsets = [offset for peer in peers if (offset := peer.offset_ms) is not None]
        bound_ms = self.node.settings.cluster.max_clock_offset * 1000
        skewed = clocks.skewed(peers, bound_ms=bound_ms)
        if skewed and self.node.clock_skewed_since is None:
            self.node.clock_skewed_since = time.time()
            log.error("clock_offset_exceeded", extra={
                "node": self.node.name, "offset_ms": round(clocks.own_offset_ms(offsets) or 0.0, 1),
                "max_offset_ms": bound_ms, "peers": len(offsets),
                "hint": "this node's wall clock is off from most of its peers'; fix its time source (NTP)"})
        elif not skewed and self.node.clock_skewed_since is not None:
            self.node.clock_skewed_since = None
            log.info("clock_offset_recovered", extra={"node": self.node.name,
                                                      "offset_ms": round(clocks.own_offset_ms(offsets) or 0.0, 1)})

    def clock_offset_ms(self) -> float | None:
        """How far this node's clock is from its reachable peers' (positive: ahead)."""
        return clocks.own_offset_ms([offset for m in self.members.values()
                                     if not m.is_self and m.reachable and (offset := m.clock.offset_ms) is not None])

    def _retire(self, members: list[Member], *, polled_since: float) -> None:
        """Retire the lives every member has settled on (``retirement``), when every member answered
        this round in the current protocol."""
        peers = [m for m in members if not m.is_self]
        if any(not m.reachable or m.polled_at < polled_since or m.life is None or m.protocol < PROTOCOL
               for m in peers):
            return
        views = [retirement.MemberView(self.origin, self.vector)]
        views += [retirement.MemberView(m.life, m.vector) for m in peers if m.life is not None]
        decided = retirement.horizons(views, dead_since=self._dead_since, now=time.monotonic(),
                                      fold_delay=self.settings.fold_delay)
        for name, horizon in decided.items():
            if self.store.retire(name, horizon):
                log.info("lives_retired", extra={"node": self.node.name, "of_node": name, "below_epoch": horizon})
        retirement.forget(self._dead_since, decided)
        for origin in [origin for origin in self.backlogs if self._retired(origin)]:
            # Nothing of a retired life is ever asked for again. Its position stays in the vector:
            # members still deciding read it there.
            del self.backlogs[origin]

    def _same_vectors(self, theirs: VersionVector) -> bool:
        """Whether a peer's vector equals this node's, lives retired here aside (a peer may not
        have forgotten them yet)."""
        def live(vector: VersionVector) -> dict[OriginKey, int]:
            return {origin: seq for origin, seq in vector.items() if not self._retired(origin)}
        return live(theirs) == live(self.vector)

    def _retired(self, origin: OriginKey) -> bool:
        return origin[1] < self.store.horizons.get(origin[0])

    # ------------------------------------------------------------------- reporting

    def members_json(self) -> list[dict[str, Any]]:
        out = []
        for address, member in sorted(self.members.items()):
            if member.is_self:
                continue
            sender = self.senders.get(address)
            out.append({
                "name": member.name,
                "address": address,
                "state": member.state if member.reachable else "unreachable",
                "reachable": member.reachable,
                "unreachable_since": None if member.unreachable_since is None else int(member.unreachable_since),
                "life": None if member.life is None else life_id(*member.life),
                "clock_offset_ms": None if member.clock.offset_ms is None else round(member.clock.offset_ms, 1),
                "synced": member.reachable and member.state == NodeState.READY.value
                and (sender is None or sender[0].lag_entries() == 0),
                "lag_entries": sender[0].lag_entries() if sender else None,
                "lag_seconds": round(sender[0].lag_seconds(), 4) if sender else None,
                "records": member.records,
                "client_address": member.client_address or None,
                "version_vector": member.vector.to_json(),
                "last_seen_seconds_ago": round(time.monotonic() - member.last_seen, 3) if member.last_seen else None,
            })
        return out
