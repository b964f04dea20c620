"""Producing reset and end events, and delivering them to webhooks.

**Production.** Every ready node scans, a few times a second, the leaderboards and tournaments
whose periods end (``domain.events.periods_ending``) for periods that ended more than
``events.grace`` ago and have no event yet. Each such period has one *producer*: the ready
member chosen by rendezvous hashing of the period over the names of the members this node sees
as ready (itself included), so every node with the same view picks the same one. The producer
takes the period's final standings from its own copy (every write accepted before the end
reached it during the grace, unless replication lagged longer) and publishes the event as a
replicated change: other nodes hold the event as data and never recompute it. When the
producer dies, the others stop seeing it as ready within one ``anti_entropy_interval`` and
choose another; and once an event is ``events.takeover`` seconds overdue, any ready node
produces it, whatever its view. Two copies of one event can result; every node shows the same
one (``domain.events``).

A period that ended while the whole cluster was down gets its event when a node is back,
if it ended less than ``events.catch_up`` ago (and its records are still kept).

**Delivery.** Each webhook (*target*: a node-wide one of ``events.webhooks``, or a board's own
``webhook_url``, which receives that board's events) has one *deliverer*, chosen the same way
among the ready members. It POSTs the target's events one at a time in event order (the order
``GET /v1/events`` lists them in), each until the receiver acknowledges it, retrying with
exponential backoff and jitter (``events.retry_initial`` doubling up to ``events.retry_max``);
a receiver that is down holds back the events after the one it misses, so it receives them in
order once it is up. After each acknowledged delivery the deliverer publishes the target's
progress (``DeliveryProgress``), so a node that takes over starts after the last event whose
progress reached it: a failover redelivers at most the event in flight and those whose
progress had not replicated yet, with the same idempotency key.

**Caveats.** A target receives every event in its scope that is still kept (``events.retention``)
and not yet delivered to it: a webhook added later first receives that backlog. Every node must
have the same ``events`` settings (one ConfigMap does that): the deliverer's are the ones used.
Nothing is produced while a reachable member runs an older build (protocol below 3), which
would refuse the entries; such a cluster produces the events once every member is upgraded,
within ``events.catch_up``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tenacity import AsyncRetrying, retry_if_exception_type, stop_never, wait_exponential_jitter

from ..config import EventSettings
from ..domain.changes import Change, Setting
from ..domain.errors import DomainError
from ..domain.events import Event, periods_ending
from ..domain.leaderboards import MAX_UNIX_TIME
from ..node import Node
from ..transport.webhooks import DeliveryFailed, WebhookClient

if TYPE_CHECKING:
    from .replicator import Replicator

log = logging.getLogger("leaderboard_node.events")

EVENTS_PROTOCOL = 3  # Status.protocol from which members hold events (replicator.PROTOCOL)
_TICK = 0.1  # seconds between scans for due periods and between looks at who delivers what
_SCAN_LIMIT = 50  # periods looked at per leaderboard per scan (a catch-up goes on at the next)
_TRIM_INTERVAL = 5.0


class EventMetrics(Protocol):
    def event_produced(self, kind: str) -> None: ...

    def event_delivery(self, webhook: str, *, outcome: str, seconds: float | None = None) -> None: ...


class _NoMetrics:
    def event_produced(self, kind: str) -> None: ...

    def event_delivery(self, webhook: str, *, outcome: str, seconds: float | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class Target:
    """A webhook and the events it receives."""

    id: str  # what its delivery progress is kept under
    url: str
    label: str  # for metrics and logs
    board: tuple[str, str] | None = None  # (leaderboard id, incarnation): only that board's events

    def wants(self, event: Event) -> bool:
        return self.board is None or (event.leaderboard_id, event.incarnation) == self.board


def choose(key: str, members: set[str]) -> str | None:
    """The member chosen for ``key`` (rendezvous hashing): the same on every node that sees the
    same members, and only the keys of a member that leaves move to others."""
    return max(members, key=lambda name: hashlib.blake2b(f"{key}\x00{name}".encode(), digest_size=8).digest(),
               default=None)


class EventService:
    def __init__(self, *, node: Node, replicator: Replicator, settings: EventSettings,
                 render: Callable[[Event], dict[str, Any]], metrics: EventMetrics | None = None) -> None:
        self.node = node
        self.store = node.store
        self.replicator = replicator
        self.settings = settings
        self.render = render
        self.metrics: EventMetrics = metrics or _NoMetrics()
        secret = settings.secret()  # a ConfigError here stops the node at start
        self.client = WebhookClient(secret=secret, timeout=settings.webhook_timeout) if secret is not None else None
        self._scanned: dict[tuple[str, str], int] = {}  # per incarnation: periods ending up to here are done
        self._due: dict[tuple[str, str], int] = {}  # per incarnation: when its next period ends
        self._deliveries: dict[str, asyncio.Task[None]] = {}
        self.lag: dict[str, float] = {}  # per webhook label: age of the oldest event it is waiting for
        self._tasks: list[asyncio.Task[None]] = []
        self._last_trim = 0.0

    # ------------------------------------------------------------------- members

    def ready_members(self) -> set[str] | None:
        """The names of the members this node sees as ready (itself included when it is); None
        while a reachable member runs a build that does not know events."""
        members = {self.node.name} if self.node.ready else set()
        for member in list(self.replicator.members.values()):
            if member.is_self or not member.reachable:
                continue
            if member.protocol < EVENTS_PROTOCOL:
                return None
            if member.state == "ready" and member.name:
                members.add(member.name)
        return members

    # ---------------------------------------------------------------- production

    def produce_due(self, now_ms: int | None = None) -> int:
        """Produce the events this node should produce now; how many."""
        if not self.settings.enabled or not self.node.ready:
            return 0
        members = self.ready_members()
        if members is None:
            return 0
        try:
            self.node.require_ready()  # the write checks too: a broken log takes no entries
        except DomainError:
            return 0
        now_ms = self.node.now.milliseconds() if now_ms is None else now_ms
        grace_ms = int(self.settings.grace * 1000)
        until = (now_ms - grace_ms) // 1000
        # never further back than records and events are kept: a trimmed event must not come back
        window = int(min(self.settings.catch_up, self.store.retention, self.settings.retention))
        produced = 0
        for leaderboard in self.store.leaderboards.live():
            t = leaderboard.tournament
            if leaderboard.reset_schedule is None and (t is None or not t.end_time):
                continue
            key = (leaderboard.id, leaderboard.incarnation)
            if self._due.get(key, 0) > until:
                continue  # its next period has not ended yet (most boards, most of the time)
            after = self._scanned.get(key)
            if after is None:
                after = max((leaderboard.create_hlc >> 16) // 1000, now_ms // 1000 - window)
            for period in periods_ending(leaderboard, after=after, until=until, limit=_SCAN_LIMIT):
                event_key = (leaderboard.id, leaderboard.incarnation, period.expiry)
                if not self.store.events.has(event_key):
                    overdue = now_ms >= period.expiry * 1000 + grace_ms + self.settings.takeover * 1000
                    if not overdue and choose(f"produce\x00{leaderboard.id}\x00{leaderboard.incarnation}\x00"
                                              f"{period.expiry}", members) != self.node.name:
                        break  # the chosen member's to produce; looked at again at the next scan
                    top = self.store.setting(leaderboard, Setting.EVENT_TOP)
                    changes = self.store.produce_event(leaderboard, period,
                                                       top=int(top) if top is not None else self.settings.top)
                    self._publish(changes)
                    produced += 1
                    event = changes[0].event  # type: ignore[union-attr]
                    self.metrics.event_produced(event.kind.value)
                    log.info("event_produced", extra={
                        "node": self.node.name, "event_id": event.id, "kind": event.kind.value,
                        "leaderboard": leaderboard.id, "period_end": period.expiry, "records": event.rank_count,
                        "late_ms": now_ms - period.expiry * 1000, "overdue": overdue})
                after = period.expiry
            self._scanned[key] = after
            following = periods_ending(leaderboard, after=after, until=MAX_UNIX_TIME, limit=1)
            self._due[key] = following[0].expiry if following else MAX_UNIX_TIME + 1
        return produced

    def _publish(self, changes: list[Change]) -> None:
        self.node.publish(changes)

    def trim(self, now: int) -> None:
        dropped = self.store.trim_events(now - int(self.settings.retention))
        if dropped:
            log.info("events_trimmed", extra={"node": self.node.name, "events": dropped})
        live = {(lb.id, lb.incarnation) for lb in self.store.leaderboards.all()}
        for key in [key for key in self._scanned if key not in live]:
            del self._scanned[key]
            self._due.pop(key, None)

    # ------------------------------------------------------------------ delivery

    def targets(self) -> list[Target]:
        found = [Target(f"node:{hook.url}", hook.url, hook.name or _host(hook.url)) for hook in self.settings.webhooks]
        for leaderboard in self.store.leaderboards.all():
            url = self.store.setting(leaderboard, Setting.WEBHOOK_URL)
            if url:
                found.append(Target(f"board:{leaderboard.id}/{leaderboard.incarnation}:{url}", str(url),
                                    f"board:{leaderboard.id}", (leaderboard.id, leaderboard.incarnation)))
        return found

    def _delivers(self, target: Target, members: set[str] | None) -> bool:
        return bool(self.settings.enabled and self.client is not None and self.node.ready and members is not None
                    and choose(f"deliver\x00{target.id}", members) == self.node.name)

    def dispatch(self) -> None:
        """Start delivering to the targets this node is chosen for; stop the others."""
        members = self.ready_members()
        wanted = {target.id: target for target in self.targets() if self._delivers(target, members)}
        for target_id in [t for t in self._deliveries if t not in wanted or self._deliveries[t].done()]:
            task = self._deliveries.pop(target_id)
            task.cancel()
        for target_id, target in wanted.items():
            if target_id not in self._deliveries:
                self._deliveries[target_id] = asyncio.create_task(self._deliver(target), name=f"deliver-{target_id}")

    def _next(self, target: Target, scanned: dict[str, int]) -> tuple[Event | None, dict[str, int]]:
        reached = self.store.events.progress.get(target.id, {})
        cursor = {life: max(number, reached.get(life, 0)) for life, number in scanned.items()}
        for life, number in reached.items():
            cursor.setdefault(life, number)
        events, advanced = self.store.events.after(cursor, limit=1, wanted=target.wants)
        return (events[0] if events else None), advanced

    async def _deliver(self, target: Target) -> None:
        assert self.client is not None
        scanned: dict[str, int] = {}  # beyond the replicated progress: events skipped as not the target's
        log.info("delivery_started", extra={"node": self.node.name, "webhook": target.label})
        try:
            while True:
                event, advanced = self._next(target, scanned)
                if event is None:
                    scanned = advanced
                    self.lag[target.label] = 0.0
                    await self.node.wait_for_event(1.0)
                    continue
                # what was skipped before it (others' events, copies not shown), and not the event itself
                scanned = {life: number for life, number in advanced.items() if life != event.origin}
                scanned[event.origin] = event.number - 1
                if not await self._deliver_one(target, event):
                    return
        except asyncio.CancelledError:
            raise
        except Exception:  # pragma: no cover - logged; the dispatcher starts the delivery again
            log.exception("delivery_crashed", extra={"node": self.node.name, "webhook": target.label})
        finally:
            self.lag.pop(target.label, None)

    async def _deliver_one(self, target: Target, event: Event) -> bool:
        """Deliver one event until the receiver acknowledges it; False when this node is no
        longer the target's deliverer (the delivery stops, another node goes on)."""
        assert self.client is not None
        body = json.dumps(self.render(event), separators=(",", ":")).encode()
        attempts = 0
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(DeliveryFailed), stop=stop_never, reraise=True,
            wait=wait_exponential_jitter(initial=self.settings.retry_initial, max=self.settings.retry_max),
        ):
            with attempt:
                if not self._delivers(target, self.ready_members()):
                    return False
                if self.store.events.kept(event.key) is None:  # trimmed meanwhile: nothing to deliver
                    return True
                self.lag[target.label] = max(0.0, time.time() - event.period_end)
                attempts += 1
                try:
                    await self.client.deliver(target.url, body, event_id=event.id, kind=event.kind.value)
                except DeliveryFailed as exc:
                    self.metrics.event_delivery(target.label, outcome="failed")
                    log.warning("event_delivery_failed", extra={
                        "node": self.node.name, "webhook": target.label, "event_id": event.id, "attempt": attempts,
                        "error": str(exc)})
                    raise
        seconds = max(0.0, time.time() - event.period_end)
        self.metrics.event_delivery(target.label, outcome="delivered", seconds=seconds)
        log.info("event_delivered", extra={"node": self.node.name, "webhook": target.label, "event_id": event.id,
                                           "attempts": attempts, "since_period_end_s": round(seconds, 3)})
        self._publish(self.store.record_delivery(target.id, event))
        return True

    # ----------------------------------------------------------------- lifecycle

    async def _loop(self) -> None:
        while True:
            try:
                self.produce_due()
                self.dispatch()
                now = time.monotonic()
                if now - self._last_trim > _TRIM_INTERVAL:
                    self._last_trim = now
                    self.trim(self.node.seconds())
            except Exception:  # pragma: no cover - logged, and the loop goes on
                log.exception("events_loop_failed", extra={"node": self.node.name})
            await asyncio.sleep(_TICK)

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._loop(), name="events"))

    async def stop(self) -> None:
        tasks = self._tasks + list(self._deliveries.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._deliveries.clear()
        if self.client is not None:
            await self.client.close()


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc or url
