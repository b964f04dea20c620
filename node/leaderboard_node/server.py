"""Runs a node: its HTTP listeners, its background tasks, and an orderly stop.

``NodeServer`` wires the pieces together (the node, its metrics, the client API, and, when
configured, replication over the peer endpoint) and owns their lifetimes. It is what the
``leaderboard-node`` command runs and what in-process tests start.

The client API is an aiohttp ``Application`` (routes, middlewares, the per-route metrics of
``_measure``) served by ``transport.http_server`` (httptools, a fraction of aiohttp's cost per
request); the peer endpoint is served by aiohttp itself, behind ``transport.header_deadline``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import errno
import logging
import os
import ssl
import time
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .config import ConfigError, Settings, parse_host_port
from .domain.lives import life_id
from .metrics import NodeMetrics
from .node import Node, NodeState, Now
from .replication.events import EventService
from .replication.peers import Faults, FaultyTransport, PeerTransport
from .replication.replicator import Replicator
from .transport.client_api import create_client_app, render_event
from .durability.journal import Journal
from .transport.certificate_request import CertificateRequester
from .transport.header_deadline import DeadlineSite
from .transport.http_server import HttpServer
from .transport.discovery import StaticDiscovery, create_discovery
from .transport.identity import TlsFiles
from .transport.peer_api import create_peer_app
from .transport.json_body import json_response
from .transport.peer_client import HttpPeerTransport
from .version import VERSION

log = logging.getLogger("leaderboard_node.server")
FREEZE_INTERVAL = 120.0  # seconds between gc.freeze() calls (see NodeServer._freeze_loop)


class NodeServer:
    def __init__(self, settings: Settings, *, now: Now | None = None) -> None:
        self.settings = settings
        self.node = Node(settings, now=now)
        self.metrics = NodeMetrics(self.node)
        self._runners: list[web.AppRunner] = []
        self._client_server: HttpServer | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._request_series: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._recovering = False
        self.client_app = create_client_app(self.node, extra_routes=self._extra_routes)
        self.client_app.middlewares.insert(0, self._measure)
        sync = settings.cluster.leaderboard_sync
        tls = settings.tls
        token = read_secret(settings.auth.peer_token_file, setting="auth.peer_token_file")
        # The peer certificates are loaded at start (a Kubernetes node may have to ask for its own).
        self.peer_transport = HttpPeerTransport(
            token=token, compression=sync.compression, on_bytes=self.metrics.peer_bytes, https=tls.peer_tls,
            server_name=tls.peer_server_name, stall_timeout=sync.sync_stall_timeout,
        )
        self.tls_files = TlsFiles(tls, node=self.node.name, on_client_context=self.peer_transport.use_ssl_context)
        self.peer_transport.identity = self.tls_files.policy
        self.certificates = (CertificateRequester(tls.certificate_request, tls=tls, node=self.node.name,
                                                  api=settings.cluster.discovery.kubernetes,
                                                  on_written=self.tls_files.check)
                             if tls.certificate_request is not None else None)
        transport: PeerTransport = self.peer_transport
        if token is None and sync.enabled:
            log.warning("peer_endpoint_open", extra={"node": self.node.name,
                                                     "hint": "set auth.peer_token_file to authenticate peers"})
        if sync.faults.active:
            transport = FaultyTransport(transport, Faults(drop=sync.faults.drop, duplicate=sync.faults.duplicate,
                                                          reorder=sync.faults.reorder, seed=sync.faults.seed))
        peer_host, peer_port = parse_host_port(settings.node.peer_listen)
        client_host, client_port = parse_host_port(settings.node.listen)
        advertise = settings.node.advertise_host or peer_host
        discovery = (create_discovery(settings.cluster.discovery, self_address=f"{advertise}:{peer_port}",
                                      self_host=advertise) if sync.enabled else StaticDiscovery([]))
        self.journal = (Journal(settings.node.data_dir, settings.durability)
                        if settings.node.data_dir is not None else None)
        self.replicator = Replicator(
            node=self.node, settings=sync, transport=transport, discovery=discovery,
            epoch=self.node.now.milliseconds(), events=self.metrics,
            client_address=f"{settings.node.advertise_host or client_host}:{client_port}",
            bootstrap_timeout=sync.bootstrap_timeout, flush_timeout=sync.flush_timeout, journal=self.journal,
        )
        self.node.on_acknowledge(self.replicator.acknowledge)
        self.peer_app = create_peer_app(self.replicator, token=token, max_message_bytes=sync.max_message_bytes,
                                        on_rejected=lambda reason: self.metrics.peer_rejected.labels(reason).inc(),
                                        identity=self.tls_files.policy)
        self.events = EventService(node=self.node, replicator=self.replicator, settings=settings.events,
                                   render=render_event, metrics=self.metrics)
        self.metrics.watch_replication(self)

    def _extra_routes(self, app: web.Application) -> None:
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/v1/cluster", self._cluster)

    @web.middleware
    async def _measure(self, request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.perf_counter()
        response = await handler(request)
        resource = request.match_info.route.resource
        key = (resource.canonical if resource is not None else "unmatched", response.status)
        series = self._request_series.get(key)
        if series is None:  # labels() takes a lock and builds a key: look each pair up once
            series = self._request_series[key] = (self.metrics.requests.labels(key[0], str(key[1])),
                                                  self.metrics.request_seconds.labels(key[0]))
        series[0].inc()
        series[1].observe(time.perf_counter() - started)
        return response

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _cluster(self, request: web.Request) -> web.Response:
        return json_response(self.cluster_status())

    def cluster_status(self) -> dict[str, Any]:
        node = self.node
        replicator: Replicator | None = self.replicator
        body: dict[str, Any] = {
            "node": {
                "name": node.name,
                "version": VERSION,
                "state": node.state.value,
                "ready": node.ready,
                "synced": node.ready,
                "records": node.store.record_count(),
                "record_bytes": node.store.packed_bytes(),
                "leaderboards": len(node.store.leaderboards),
                "started_at": int(node.started_at),
                "replication": replicator is not None,
                "identity": None if self.tls_files.policy is None else {
                    "name": node.name,
                    "dns_name": self.tls_files.policy.dns_name(node.name),
                    "not_after": None if self.tls_files.not_after is None else int(self.tls_files.not_after),
                    "reloads": self.tls_files.reloads,
                    "certificates_issued": None if self.certificates is None else self.certificates.issued,
                },
            },
            "members": [],
        }
        if replicator is not None:
            journal = self.journal
            body["node"].update({
                "durability": None if journal is None else {
                    "fsync": journal.settings.fsync, "recovery": replicator.recovery,
                    "snapshots_written": journal.snapshots_written, "last_snapshot": journal.last_snapshot,
                    "log_bytes": journal.wal.stats.appended_bytes, "fsyncs": journal.wal.stats.fsyncs,
                },
                "epoch": replicator.origin[1],
                "life": life_id(*replicator.origin),
                "clock": {
                    "max_offset_ms": round(self.settings.cluster.max_clock_offset * 1000),
                    "offset_ms": None if (offset := replicator.clock_offset_ms()) is None else round(offset, 1),
                    "skewed": node.clock_skewed_since is not None,
                    "since": None if node.clock_skewed_since is None else int(node.clock_skewed_since),
                },
                "retired_lives": {name: horizon for name, horizon in node.store.horizons.items()},
                "client_address": replicator.client_address,
                "version_vector": replicator.vector.to_json(),
                "log_seq": replicator.local.last_seq,
                "state_digest": replicator.state_digest(),
                "full_syncs_taken": replicator.full_syncs_taken,
                "full_syncs_served": replicator.full_syncs_served,
                "catch_ups_taken": replicator.catch_ups_taken,
                "last_full_sync": replicator.last_sync,
            })
            body["members"] = replicator.members_json()
        return body

    async def _serve_clients(self, ssl_context: ssl.SSLContext | None) -> None:
        listen = self.settings.node.listen
        host, port = parse_host_port(listen)
        server = self._client_server = HttpServer(self.client_app, limits=self.settings.limits,
                                                  ssl_context=ssl_context)  # stop() stops it, however far it got
        try:
            await server.start(host, port)
        except OSError as exc:
            self._client_server = None
            await server.stop()
            raise _listen_error(exc, listen, port, setting="node.listen", flag="--listen") from None
        log.info("listening", extra={"node": self.node.name, "address": listen})

    async def _serve_peers(self, ssl_context: ssl.SSLContext | None) -> None:
        listen = self.settings.node.peer_listen
        host, port = parse_host_port(listen)
        runner = web.AppRunner(self.peer_app, access_log=None, handle_signals=False,
                               **self.settings.limits.server_options())
        await runner.setup()
        site = DeadlineSite(runner, host, port, reuse_address=True, ssl_context=ssl_context,
                            header_timeout=self.settings.limits.header_timeout)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise _listen_error(exc, listen, port, setting="node.peer_listen", flag="--peer-listen") from None
        self._runners.append(runner)
        log.info("listening", extra={"node": self.node.name, "address": listen})

    async def start(self) -> None:
        context = self.tls_files.load_client_port()  # fails here, at start, when the certificate or key is wrong
        # The client port first, so /healthz answers during a long recovery or while the node
        # waits for its certificate (writes are refused until the node is ready); the peer port
        # only once the log is open for their batches.
        await self._serve_clients(context)
        if self.certificates is not None:
            self.node.waiting_for = "certificate"
            await self.certificates.obtain()
            self.node.waiting_for = None
        self.tls_files.load_peer()
        self._recovering = True
        await self.replicator.recover()
        if self.settings.cluster.leaderboard_sync.enabled:
            await self._serve_peers(self.tls_files.peer_server)
        self._tasks.append(asyncio.create_task(self._trim_loop(), name="trim"))
        self._tasks.append(asyncio.create_task(self._freeze_loop(), name="gc-freeze"))
        self.tls_files.start()
        if self.certificates is not None:
            self.certificates.start()
        await self.replicator.start()
        self.events.start()

    async def _freeze_loop(self) -> None:
        """Keep the rank cache out of Python's full garbage collections.

        A million records live in a few huge containers (a bucket's sorted list and owner index);
        a full collection walks every pointer in them, about 36 ms at 1M records, and with
        requests churning objects it runs every few seconds: that is the tail of replication
        lag and request latency on a big board. ``gc.freeze`` moves what exists now to a
        generation collections skip (reference counting still frees it). It runs once the node
        is ready (after its start-up sync) and again every ``FREEZE_INTERVAL`` seconds, for the
        sorted lists' new sublists and new buckets. What it freezes that later becomes cyclic
        garbage (a request in flight at that moment) is never collected: a few objects each time.
        """
        while self.node.state is not NodeState.READY:
            await asyncio.sleep(0.2)
        while True:
            gc.collect()
            gc.freeze()
            await asyncio.sleep(FREEZE_INTERVAL)

    async def _trim_loop(self) -> None:
        interval = self.settings.leaderboard.trim_interval
        while True:
            await asyncio.sleep(interval)
            dropped = self.node.store.trim(self.node.seconds())
            if dropped:
                log.info("buckets_trimmed", extra={"node": self.node.name, "buckets": dropped})

    async def stop(self) -> None:
        self.node.set_state(NodeState.STOPPING)
        await self.events.stop()
        if self._recovering:  # else stopped while waiting for its certificate: nothing of it runs
            await self.replicator.stop()
        await self.replicator.transport.close()
        await self.tls_files.stop()
        if self.certificates is not None:
            await self.certificates.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        if self._client_server is not None:  # last: requests in flight finish, answered
            await self._client_server.stop()
            self._client_server = None
        self._tasks.clear()


def _listen_error(exc: OSError, listen: str, port: int, *, setting: str, flag: str) -> ConfigError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)  # uvloop's errors carry no strerror
    fix = (f"stop the process that holds port {port} or choose another ({flag} HOST:PORT)"
           if exc.errno == errno.EADDRINUSE else
           f"use an address of this machine ({flag} HOST:PORT)")
    return ConfigError(setting, f"cannot listen on {listen}: {reason.lower()}", fix)


def read_secret(path: Any, *, setting: str) -> str | None:
    """A secret from a file (a mounted Kubernetes Secret), stripped of surrounding whitespace."""
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            value = handle.read().strip()
    except OSError as exc:
        raise ConfigError(setting, f"cannot read {path}: {exc.strerror or exc}",
                          "mount the Secret there or fix the path") from None
    if not value:
        raise ConfigError(setting, f"{path} is empty", "write the secret into it")
    return value


async def serve_forever(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then stop in order (flushing what peers have not received)."""
    import signal

    server = NodeServer(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.create_task(server.start(), name="start")
    stopping = asyncio.create_task(stop.wait(), name="stop-signal")
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if starting.done():
        starting.result()  # a ConfigError at start propagates
        await stopping
    else:  # SIGTERM while starting (waiting for a certificate): stop at once
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
    log.info("stopping", extra={"node": server.node.name})
    await server.stop()
