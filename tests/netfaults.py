"""A faulty network for real node processes: one TCP proxy per directed peer link.

Node ``a`` reaches peer ``b`` through the proxy of link ``a -> b`` (its static peer list names
the proxy's address), so every request ``a`` makes of ``b`` (batches it pushes, status polls,
catch-ups and full syncs it pulls) crosses that link, and the answers come back on it. A test
breaks a link as a network would:

* ``cut()``: connections are reset at once, new and open ones (a firewall that rejects);
* ``black_hole()``: connections are accepted and nothing is ever forwarded or answered (a
  firewall that drops: the caller waits for its own timeout);
* ``delay(seconds)``: every byte waits that long before it is forwarded, in both directions;
* ``duplicate(True)``: every request is delivered a second time, on a connection of its own;
* ``record(True)`` then ``replay()``: requests are kept and delivered again later, when the
  test chooses (a message that arrives long after it was sent).

``heal()`` restores the link. Cutting both links of a pair (``Network.partition``) isolates two
nodes; cutting one is a one-way fault: ``a`` cannot reach ``b`` while ``b`` still reaches ``a``.

Requests are told apart by their HTTP framing (the peer client sends ``Content-Length``
bodies); a duplicated or replayed request is sent with ``Connection: close`` and its answer
is read and thrown away. The proxies run on an event loop in a thread of the test process,
so a test drives them with plain calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from typing import Any

_hosts = itertools.count(2)


def _proxy_host() -> str:
    return f"127.0.1.{next(_hosts) % 250 + 2}"


def _split_request(buffer: bytearray) -> bytes | None:
    """Pop one complete HTTP/1.1 request from the front of ``buffer`` (None: not complete yet)."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).decode("latin-1")
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
        elif name.strip().lower() == "transfer-encoding":
            raise ValueError("the proxy reads Content-Length bodies only")
    total = end + 4 + length
    if len(buffer) < total:
        return None
    request = bytes(buffer[:total])
    del buffer[:total]
    return request


def _closing(request: bytes) -> bytes:
    """The same request asking the server to close the connection after answering."""
    end = request.index(b"\r\n\r\n")
    lines = [line for line in request[:end].split(b"\r\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join(lines) + b"\r\nConnection: close\r\n\r\n" + request[end + 4:]


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset, as a rejecting firewall or a dead host's kernel would answer."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


class Link:
    """The directed link ``source -> target``: a proxy in front of ``target``'s peer port."""

    def __init__(self, network: Network, source: str, target: str, upstream: tuple[str, int]) -> None:
        self.network = network
        self.source, self.target = source, target
        self.upstream = upstream
        self.host = _proxy_host()
        self.port = 0
        self.mode = "up"  # up | cut | black_hole
        self.latency = 0.0
        self.duplicating = False
        self.recording = False
        self.recorded: list[bytes] = []
        self.requests = 0
        self._connections: set[asyncio.StreamWriter] = set()
        self._server: asyncio.base_events.Server | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"Link({self.source}->{self.target}, {self.mode})"

    # ------------------------------------------------------------- faults (any thread)

    def cut(self) -> None:
        self.network.call(self._set_mode, "cut")

    def black_hole(self) -> None:
        self.network.call(self._set_mode, "black_hole")

    def heal(self) -> None:
        self.latency = 0.0
        self.duplicating = False
        self.network.call(self._set_mode, "up")

    def delay(self, seconds: float) -> None:
        self.latency = seconds

    def duplicate(self, on: bool = True) -> None:
        self.duplicating = on

    def record(self, on: bool = True) -> None:
        self.recording = on

    def replay(self) -> int:
        """Deliver every recorded request again, in order; how many were sent."""
        requests, self.recorded = self.recorded, []
        self.network.run(self._replay_all(requests))
        return len(requests)

    # ------------------------------------------------------------------ the proxy

    async def _set_mode(self, mode: str) -> None:
        self.mode = mode
        if mode != "up":  # what was open goes down with the link
            for writer in list(self._connections):
                _reset(writer) if mode == "cut" else None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._connections):
            _reset(writer)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "cut":
            _reset(writer)
            return
        self._connections.add(writer)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            if self.mode == "black_hole":
                while await reader.read(65536):
                    pass
                return
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
            self._connections.add(upstream_writer)
            await asyncio.gather(self._requests(reader, upstream_writer),
                                 self._answers(upstream_reader, writer))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self._connections.discard(writer)
            _reset(writer) if self.mode == "cut" else writer.close()
            if upstream_writer is not None:
                self._connections.discard(upstream_writer)
                upstream_writer.close()

    async def _requests(self, reader: asyncio.StreamReader, upstream: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()
        forward = asyncio.ensure_future(self._forward(queue, upstream, requests=True))
        try:
            buffer = bytearray()
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                buffer.extend(data)
                while (request := _split_request(buffer)) is not None:
                    if self.mode == "black_hole":
                        continue  # swallowed: neither forwarded nor answered
                    if self.mode == "cut":
                        raise OSError("link cut")
                    queue.put_nowait((self._due(), request))
        finally:
            queue.put_nowait((0.0, None))
            await forward

    async def _answers(self, upstream: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()
        forward = asyncio.ensure_future(self._forward(queue, writer, requests=False))
        try:
            while True:
                data = await upstream.read(65536)
                if not data:
                    return
                if self.mode == "black_hole":
                    continue
                if self.mode == "cut":
                    raise OSError("link cut")
                queue.put_nowait((self._due(), data))
        finally:
            queue.put_nowait((0.0, None))
            await forward

    def _due(self) -> float:
        """When what was read now is to be forwarded: every byte waits the link's delay, the
        bytes behind it no longer than that (a slow link, not a queue that grows)."""
        return asyncio.get_running_loop().time() + self.latency

    async def _forward(self, queue: asyncio.Queue[tuple[float, bytes | None]], writer: asyncio.StreamWriter, *,
                       requests: bool) -> None:
        try:
            while True:
                due, data = await queue.get()
                if data is None:
                    writer.close()
                    return
                wait = due - asyncio.get_running_loop().time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if self.mode != "up":
                    continue
                writer.write(data)
                await writer.drain()
                if requests:
                    self.requests += 1
                    if self.recording:
                        self.recorded.append(data)
                    if self.duplicating:
                        asyncio.ensure_future(self._deliver(data))
        except OSError:
            writer.close()

    async def _deliver(self, request: bytes) -> None:
        """Send one request on a connection of its own and throw its answer away."""
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            reader, writer = await asyncio.open_connection(*self.upstream)
            try:
                writer.write(_closing(request))
                await writer.drain()
                async with asyncio.timeout(10):
                    while await reader.read(65536):
                        pass
            finally:
                writer.close()

    async def _replay_all(self, requests: list[bytes]) -> None:
        for request in requests:
            await self._deliver(request)


class Network:
    """Every link proxy of a test, on one event loop in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="netfaults", daemon=True)
        self._thread.start()
        self.links: dict[tuple[str, str], Link] = {}

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call(self, function: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
        return self.run(function(*args))

    def link(self, source: str, target: str, upstream: str) -> Link:
        host, _, port = upstream.rpartition(":")
        link = Link(self, source, target, (host, int(port)))
        self.run(link.start())
        self.links[(source, target)] = link
        return link

    def __getitem__(self, pair: tuple[str, str]) -> Link:
        return self.links[pair]

    def partition(self, a: str, b: str, *, how: str = "cut") -> None:
        """Break both directions between ``a`` and ``b`` (``how``: cut or black_hole)."""
        for pair in ((a, b), (b, a)):
            getattr(self.links[pair], how)()

    def connect(self, a: str, b: str) -> None:
        """Heal both directions between ``a`` and ``b``."""
        for pair in ((a, b), (b, a)):
            self.links[pair].heal()

    def isolate(self, node: str, *, how: str = "cut") -> None:
        for (source, target), link in self.links.items():
            if node in (source, target):
                getattr(link, how)()

    def heal(self, *nodes: str) -> None:
        """Heal every link (of ``nodes`` only, when given)."""
        for (source, target), link in self.links.items():
            if not nodes or source in nodes or target in nodes:
                link.heal()

    def close(self) -> None:
        for link in self.links.values():
            with contextlib.suppress(Exception):
                self.run(link.stop(), timeout=5)
        with contextlib.suppress(Exception):
            self.run(self._cancel_tasks(), timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()

    async def _cancel_tasks(self) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
