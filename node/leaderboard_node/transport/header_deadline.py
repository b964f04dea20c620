"""A deadline on receiving a request's headers, for servers whose HTTP stack has none.

aiohttp bounds an idle keep-alive connection and a request body (the client API's
``limits.body_timeout``), but not the time between a request's first byte and the end of its
headers: a client that sends one header line a second holds a connection (and its buffers)
until the idle timeout. ``HeaderDeadline`` sits between the transport and aiohttp's protocol,
follows the byte stream with its own parser (httptools, llhttp: the request framing only), and
when a request has begun but its headers are not complete within ``timeout`` seconds, answers
``408`` with a JSON error and closes the connection. Everything else passes through untouched.

The peer port uses it (``DeadlineSite``); the client port's server (``transport.http_server``)
parses with httptools itself and keeps the same deadline without a second parser.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httptools
from aiohttp import web

_TIMEOUT_BODY = json.dumps({"error": {"code": "header_timeout", "message": "the request's headers did not arrive in time",
                                      "field": "headers"}}).encode()
_TIMEOUT_ANSWER = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nConnection: close\r\n"
                   b"Content-Length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY)


class HeaderDeadline(asyncio.Protocol):
    """Forwards everything to ``inner`` (an aiohttp request handler) and times each request's headers."""

    def __init__(self, inner: asyncio.Protocol, *, timeout: float, loop: asyncio.AbstractEventLoop) -> None:
        self._inner = inner
        self._timeout = timeout
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._parser: Any = httptools.HttpRequestParser(self)
        self._shadowing = True  # until the connection is upgraded, or the stream is not HTTP/1

    # ------------------------------------------------- httptools callbacks (the shadow parser)

    def on_message_begin(self) -> None:
        if self._timer is None:
            self._timer = self._loop.call_later(self._timeout, self._expire)

    def on_headers_complete(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(_TIMEOUT_ANSWER)
            transport.close()

    # ------------------------------------------------------------- protocol, forwarded

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._shadowing:
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                self._stop_shadowing()
            except httptools.HttpParserError:
                self._stop_shadowing()  # aiohttp answers malformed requests itself
        self._inner.data_received(data)

    def _stop_shadowing(self) -> None:
        self._shadowing = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_shadowing()
        self._transport = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


def guarded(factory: Callable[[], asyncio.Protocol], *, timeout: float) -> Callable[[], asyncio.Protocol]:
    """A protocol factory for ``loop.create_server``: ``factory``'s protocols behind a header deadline."""
    def make() -> asyncio.Protocol:
        return HeaderDeadline(factory(), timeout=timeout, loop=asyncio.get_running_loop())
    return make


class DeadlineSite(web.TCPSite):
    """A ``TCPSite`` whose connections have a header deadline (``HeaderDeadline``)."""

    __slots__ = ("_header_timeout",)

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self._header_timeout = header_timeout

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner, as TCPSite.start does
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            guarded(server, timeout=self._header_timeout), self._host, self._port, ssl=self._ssl_context,
            backlog=self._backlog, reuse_address=self._reuse_address, reuse_port=self._reuse_port,
        )
