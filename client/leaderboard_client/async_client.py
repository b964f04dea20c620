"""The asyncio client: a pool of keep-alive HTTP/1.1 connections, for game servers that talk
to the cluster from an event loop.

Each connection is an ``asyncio.Protocol`` whose answers are parsed by ``httptools`` (the
llhttp parser uvicorn uses); a request takes an idle connection or opens one, up to
``connections`` at once (more callers wait for one to come free). A general-purpose HTTP
client costs two to three times as much per request, which next to a millisecond-scale
round trip is most of what a caller spends.

Caveats, as in the blocking client: a request that finds its reused connection closed by
the server before any byte of an answer arrived is sent again once, on a new connection
(a node restarting, or an idle connection closed at its keep-alive timeout). A request that
times out or is cancelled closes its connection, so a late answer is never read as the next
one's.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, cast

import httptools

from .client import Endpoint
from .operations import ApiError, Operations

__all__ = ["ApiError", "AsyncLeaderboardClient"]


class _Closed(ConnectionError):
    """The connection closed before an answer began: safe to send the request again."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[tuple[int, bytes]] | None = None
        self._body: list[bytes] = []
        self._begun = False
        self._lost = False

    @property
    def usable(self) -> bool:
        return not self._lost and self.transport is not None and not self.transport.is_closing()

    def send(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None and self._answer is None
        self._answer = asyncio.get_running_loop().create_future()
        self._begun = False
        self.transport.write(data)
        return self._answer

    def close(self) -> None:
        self._lost = True
        if self.transport is not None:
            self.transport.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        if self._answer is None:  # bytes nobody asked for: whatever follows cannot be trusted
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"the server's answer is not valid HTTP: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._begun:
            self._fail(ConnectionError("the server closed the connection in the middle of an answer"))
        else:
            self._fail(_Closed("the server closed the connection"))

    def _fail(self, error: Exception) -> None:
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_exception(error)

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self._answer is None:  # a second answer in the same bytes as the first
            self.close()
        self._begun = True
        self._body = []

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self.parser.get_status_code() < 200:  # an interim answer (100 Continue): the real one follows
            self._begun = False
            return
        if not self.parser.should_keep_alive():
            self.close()
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_result((self.parser.get_status_code(), b"".join(self._body)))


class AsyncLeaderboardClient(Operations[Awaitable[Any]]):
    """Every operation of ``LeaderboardClient``, awaited::

        async with AsyncLeaderboardClient("http://127.0.0.1:7350", connections=8) as client:
            await client.write_record("weekly", "player-1", score=100)
            page = await client.around("weekly", "player-1", limit=10)
    """

    def __init__(self, url: str, *, connections: int = 10, timeout: float = 10.0, api_key: str | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        if connections < 1:
            raise ValueError("connections must be at least 1")
        self._endpoint = Endpoint(url)
        self.url = self._endpoint.url
        self._timeout = timeout
        self._ssl: ssl.SSLContext | None = None
        if self._endpoint.tls:
            self._ssl = ssl_context if ssl_context is not None else ssl.create_default_context()
        host = self._endpoint.host
        fixed = {"Host": f"{f'[{host}]' if ':' in host else host}:{self._endpoint.port}",
                 **self._endpoint.headers(api_key)}
        self._fixed_headers = "".join(f"{name}: {value}\r\n" for name, value in fixed.items())
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._slots = asyncio.Semaphore(connections)
        self._closed = False

    async def close(self) -> None:
        """Close every connection; requests after this raise."""
        self._closed = True
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()

    async def __aenter__(self) -> AsyncLeaderboardClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _connect(self) -> _Connection:
        endpoint = self._endpoint
        _, connection = await asyncio.get_running_loop().create_connection(
            _Connection, endpoint.host, endpoint.port, ssl=self._ssl,
            server_hostname=endpoint.host if self._ssl is not None else None)
        self._open.add(connection)
        return connection

    def _message(self, method: str, path: str, body: bytes | None, headers: dict[str, str] | None) -> bytes:
        head = f"{method} {path} HTTP/1.1\r\n{self._fixed_headers}"
        if body is not None:
            content_type = (headers or {}).get("Content-Type", "application/json")
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            if headers and "Content-Type" in headers:
                headers = {name: value for name, value in headers.items() if name != "Content-Type"}
        elif method in ("POST", "PUT", "PATCH"):
            head += "Content-Length: 0\r\n"
        if headers:
            head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        data = (head + "\r\n").encode("latin-1")
        return data + body if body is not None else data

    async def _send(self, message: bytes) -> tuple[int, bytes]:
        if self._closed:  # closed while this request waited for a connection
            raise RuntimeError("the client is closed")
        connection = None
        while self._idle and connection is None:
            connection = self._idle.pop()
            if not connection.usable:
                self._open.discard(connection)
                connection = None
        if connection is None:
            return await self._exchange(await self._connect(), message)
        try:
            return await self._exchange(connection, message)
        except _Closed:  # the server had closed this idle connection: once more, on a new one
            if self._closed:
                raise RuntimeError("the client was closed during the request") from None
            return await self._exchange(await self._connect(), message)

    async def _exchange(self, connection: _Connection, message: bytes) -> tuple[int, bytes]:
        try:
            answer = await connection.send(message)
        except BaseException:
            self._open.discard(connection)
            connection.close()  # a late answer must not be read as the next request's
            raise
        if connection.usable and not self._closed:
            self._idle.append(connection)
        else:
            self._open.discard(connection)
            connection.close()
        return answer

    async def request_raw(self, method: str, path: str, body: bytes | None = None,  # type: ignore[override]
                          headers: dict[str, str] | None = None, *, timeout: float | None = None
                          ) -> tuple[int, bytes]:
        """Send one request as given; (status, body bytes), whatever the status."""
        if self._closed:
            raise RuntimeError("the client is closed")
        if method == "HEAD":  # an answer without the body its headers announce: not parsed here
            raise ValueError("the asyncio client does not send HEAD requests")
        message = self._message(method, path, body, headers)
        async with self._slots:
            async with asyncio.timeout(timeout or self._timeout):
                return await self._send(message)

    def _then(self, result: Awaitable[Any], reshape: Callable[[Any], Any]) -> Awaitable[Any]:
        async def reshaped() -> Any:
            return reshape(await result)

        return reshaped()
