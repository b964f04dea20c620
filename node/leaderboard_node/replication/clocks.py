"""How far this node's wall clock is from its peers', from the status exchange.

Every status poll is an NTP-style exchange: this node notes its wall clock when it sends the
request (``sent``) and when the answer arrives (``received``); the answer carries the peer's
wall clock when it answered (``peer``). Assuming the answer took as long as the request, the
peer's clock is ``peer - (sent + received) / 2`` ahead of this one, give or take half the
round trip (the answer may have taken longer than the request, or the other way round).
Each peer keeps the last few samples and trusts the one with the shortest round trip (NTP's
clock filter: a sample delayed by a busy event loop or a slow link says little).

A peer's clock is *off* when its offset exceeds ``cluster.max_clock_offset`` by more than the
sample's uncertainty (half its round trip): a slow or lopsided link makes the estimate
uncertain, never a skew. A node is *skewed* when more than half of the peers it can reach,
and has samples of, see it off: then it, not they, is the odd one out. It reports not ready
until its clock is back. With two nodes, a skew marks both: neither can tell which clock is
wrong.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from statistics import median


@dataclass(frozen=True, slots=True)
class Sample:
    offset_ms: float  # how far the peer's clock is ahead of this node's
    round_trip_ms: float


@dataclass
class ClockFilter:
    """The recent samples of one peer."""

    samples: deque[Sample] = field(default_factory=lambda: deque(maxlen=8))

    def add(self, *, sent_ms: int, received_ms: int, peer_ms: int) -> None:
        if not peer_ms or received_ms < sent_ms:
            return  # a peer of an older build sends no time; a wall clock stepped back meanwhile
        self.samples.append(Sample(peer_ms - (sent_ms + received_ms) / 2, received_ms - sent_ms))

    @property
    def best(self) -> Sample | None:
        """The sample with the shortest round trip."""
        return min(self.samples, key=lambda s: s.round_trip_ms) if self.samples else None

    @property
    def offset_ms(self) -> float | None:
        """The peer's clock minus this node's, from the sample with the shortest round trip."""
        best = self.best
        return None if best is None else best.offset_ms

    def off(self, *, bound_ms: float) -> bool:
        """Whether the peer's clock is surely further than ``bound_ms`` from this node's."""
        best = self.best
        return best is not None and abs(best.offset_ms) - best.round_trip_ms / 2 > bound_ms


def own_offset_ms(peer_offsets: list[float]) -> float | None:
    """How far this node's clock is from its peers' (positive: ahead), the median over peers."""
    return -median(peer_offsets) if peer_offsets else None


def skewed(peers: list[ClockFilter], *, bound_ms: float) -> bool:
    """Whether more than half of the peers (with samples) surely see this node's clock off."""
    sampled = [peer for peer in peers if peer.samples]
    off = sum(1 for peer in sampled if peer.off(bound_ms=bound_ms))
    return off * 2 > len(sampled) > 0
