"""What replication needs from the network, and nothing more.

``PeerTransport`` is the seam between replication and HTTP: the aiohttp implementation is
in ``leaderboard_node.transport.peer_client``; tests wrap it to drop, duplicate and reorder
batches (``FaultyTransport``). ``Peer`` is a peer as discovery reports it: an address, and
a name once the peer told us (DNS and Kubernetes discovery only know addresses at first).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from . import binarylog_pb2 as pb
from .protocol import EncodedBatch


@dataclass(frozen=True, slots=True)
class Peer:
    address: str  # HOST:PORT of the peer endpoint
    name: str | None = None


class PeerUnavailable(Exception):
    """The peer could not be reached or answered with an error; try again later."""


class PeerTransport(Protocol):
    async def status(self, peer: Peer) -> pb.Status: ...

    async def send_batch(self, peer: Peer, batch: EncodedBatch) -> pb.BatchAck: ...

    async def catch_up(self, peer: Peer, request: pb.CatchUpRequest) -> pb.CatchUpResponse: ...

    def snapshot(self, peer: Peer) -> AsyncIterator[bytes]: ...

    async def close(self) -> None: ...


@dataclass
class Faults:
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    seed: int | None = None


class FaultyTransport:
    """A transport that loses, repeats and reorders batches, as a bad network would.

    A dropped batch is acknowledged as if it arrived (the sender moves on and the receiver
    sees a gap later, or anti-entropy notices); a reordered batch is held back and delivered
    after the next one.
    """

    def __init__(self, inner: PeerTransport, faults: Faults) -> None:
        self.inner = inner
        self.faults = faults
        self._random = random.Random(faults.seed)
        self._held: dict[str, EncodedBatch] = {}
        self._lock = asyncio.Lock()

    async def status(self, peer: Peer) -> pb.Status:
        return await self.inner.status(peer)

    async def catch_up(self, peer: Peer, request: pb.CatchUpRequest) -> pb.CatchUpResponse:
        return await self.inner.catch_up(peer, request)

    def snapshot(self, peer: Peer) -> AsyncIterator[bytes]:
        return self.inner.snapshot(peer)

    async def close(self) -> None:
        await self.inner.close()

    def _lie(self, batch: EncodedBatch) -> pb.BatchAck:
        return pb.BatchAck(applied_seq=batch.last_seq, accepted=True)

    async def send_batch(self, peer: Peer, batch: EncodedBatch) -> pb.BatchAck:
        roll = self._random.random()
        if roll < self.faults.drop:
            return self._lie(batch)
        held = self._held.pop(peer.address, None)
        if held is None and roll < self.faults.drop + self.faults.reorder:
            self._held[peer.address] = batch
            return self._lie(batch)
        ack = await self.inner.send_batch(peer, batch)
        if held is not None:
            await self.inner.send_batch(peer, held)
        if self._random.random() < self.faults.duplicate:
            ack = await self.inner.send_batch(peer, batch)
        return ack
