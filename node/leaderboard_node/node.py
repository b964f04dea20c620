"""The node: one leaderboard store, its clock, its readiness, and what it tells peers.

``Node`` is the seam between transports and the rest: the client API calls its operations,
each operation runs against the store and hands the resulting changes to ``publish`` (the
replication layer plugs in there), and readiness (``/readyz``) is decided here.

Every operation is synchronous and short: the event loop is single-threaded, so an
operation's critical section is its whole body and no lock is needed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from .config import Settings
from .domain.changes import Change
from .domain.clock import HybridLogicalClock, wall_ms
from .domain.errors import NotReady
from .domain.leaderboards import RankBlacklist
from .domain.store import LeaderboardStore

log = logging.getLogger("leaderboard_node.node")


class NodeState(StrEnum):
    STARTING = "starting"
    SYNCING = "syncing"
    READY = "ready"
    STOPPING = "stopping"


@dataclass(frozen=True, slots=True)
class Now:
    """Where a node reads the time from; tests give nodes a clock of their own."""

    seconds: Callable[[], int] = lambda: int(time.time())
    milliseconds: Callable[[], int] = wall_ms

    @classmethod
    def offset(cls, seconds: float) -> Now:
        """The wall clock ``seconds`` off (a node whose clock is wrong; tests only)."""
        if not seconds:
            return cls()
        offset_ms = int(seconds * 1000)
        return cls(seconds=lambda: int(time.time() + seconds), milliseconds=lambda: wall_ms() + offset_ms)


class Node:
    def __init__(self, settings: Settings, *, now: Now | None = None) -> None:
        self.settings = settings
        self.name = settings.node.name
        self.now = now or Now.offset(settings.cluster.leaderboard_sync.faults.clock_offset)
        self.clock = HybridLogicalClock(wall=self.now.milliseconds,
                                        max_ahead_ms=int(settings.cluster.max_clock_offset * 1000))
        patterns = tuple(settings.leaderboard.blacklist_rank_cache) + tuple(
            settings.cluster.leaderboard_sync.blacklist_cache)
        self.store = LeaderboardStore(
            node=self.name, clock=self.clock, blacklist=RankBlacklist(patterns),
            retention=int(settings.leaderboard.bucket_retention),
            erasure_retention=int(settings.leaderboard.erasure_retention),
        )
        self.state = NodeState.STARTING
        self.started_at = time.time()
        # Since when (Unix seconds) this node's clock is off from most of its peers by more than
        # cluster.max_clock_offset (None: it is not): the node then reports not ready.
        self.clock_skewed_since: float | None = None
        # What a starting node waits for before it can sync (its certificate), for /readyz.
        self.waiting_for: str | None = None
        self._publishers: list[Callable[[list[Change]], int | None]] = []
        self._write_checks: list[Callable[[], None]] = []
        self._acknowledge: Callable[..., Awaitable[None]] | None = None
        # Resolved (and replaced) whenever an event is added, wherever it came from: what a
        # long poll of GET /v1/events waits on.
        self._event_added: asyncio.Future[None] | None = None
        self.store.events.listeners.append(self._wake_event_readers)

    # ------------------------------------------------------------------ state

    @property
    def ready(self) -> bool:
        """Serving: synced, and its clock within bounds."""
        return self.state is NodeState.READY and self.clock_skewed_since is None

    @property
    def not_ready_reason(self) -> str | None:
        if self.state is not NodeState.READY:
            return self.waiting_for or self.state.value
        return "clock_skew" if self.clock_skewed_since is not None else None

    def set_state(self, state: NodeState) -> None:
        if state is not self.state:
            log.info("node_state_changed", extra={"node": self.name, "from_state": self.state.value,
                                                  "to_state": state.value})
            self.state = state
            if state is NodeState.STOPPING:  # long polls answer now, not after the pod's grace period
                self._wake_event_readers()

    def on_write_check(self, check: Callable[[], None]) -> None:
        """``check`` raises a ``DomainError`` when a write must be refused before it is applied."""
        self._write_checks.append(check)

    def require_ready(self) -> None:
        if self.state is not NodeState.READY:
            raise NotReady(f"node {self.name} is {self.state.value}; retry on another node or later")
        if self.clock_skewed_since is not None:
            raise NotReady(f"node {self.name}'s clock is off from its peers' by more than "
                           f"{self.settings.cluster.max_clock_offset:g} s; retry on another node")
        for check in self._write_checks:
            check()

    # ------------------------------------------------------------- replication

    def on_publish(self, publisher: Callable[[list[Change]], int | None]) -> None:
        self._publishers.append(publisher)

    def on_acknowledge(self, acknowledge: Callable[..., Awaitable[None]]) -> None:
        self._acknowledge = acknowledge

    def publish(self, changes: Iterable[Change]) -> int:
        """Hand local changes to the log and replication; returns the log sequence they end at."""
        batch = list(changes)
        seq = 0
        if batch:
            for publisher in self._publishers:
                seq = publisher(batch) or seq
        return seq

    async def acknowledge(self, seq: int, *, replicated: bool = False, timeout: float = 5.0) -> None:
        """Wait until published changes are as durable as asked (see ``Replicator.acknowledge``)."""
        if self._acknowledge is not None and seq:
            await self._acknowledge(seq, replicated=replicated, timeout=timeout)

    def seconds(self) -> int:
        return self.now.seconds()

    # ------------------------------------------------------------------ events

    def _wake_event_readers(self) -> None:
        waiting, self._event_added = self._event_added, None
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    async def wait_for_event(self, timeout: float) -> bool:
        """Wait until an event is added (True), ``timeout`` seconds pass or the node stops (False)."""
        if self.state is NodeState.STOPPING:
            return False
        if self._event_added is None:
            self._event_added = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._event_added)
        except TimeoutError:
            return False
        return self.state is not NodeState.STOPPING
