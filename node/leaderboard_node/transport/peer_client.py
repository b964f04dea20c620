"""The HTTP side of ``PeerTransport``: aiohttp client calls to peers' endpoints.

With node identities (``identity``, see ``identity.py``) every call goes to the name
discovery gives the peer: TLS verifies that the peer's certificate carries that name
(``server_hostname``), and a status is accepted only if the peer says it is that node. A
peer without a name, or a failed check, is a ``PeerUnavailable``, as an unreachable peer is.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable

import aiohttp

from ..replication import binarylog_pb2 as pb
from ..replication.peers import Peer, PeerUnavailable
from ..replication.protocol import EncodedBatch
from ..replication.protocol import COMPRESSION_HEADER, ZSTD_ENCODING, ProtocolError, compress, parse, read_frames
from .identity import IdentityPolicy

PROTOBUF = "application/x-protobuf"


class HttpPeerTransport:
    def __init__(
        self,
        *,
        token: str | None,
        compression: bool,
        timeout: float = 5.0,
        snapshot_timeout: float = 600.0,
        stall_timeout: float = 10.0,
        on_bytes: Callable[[Peer, int, int], None] = lambda peer, raw, wire: None,
        ssl_context: ssl.SSLContext | None = None,
        server_name: str | None = None,
        identity: IdentityPolicy | None = None,
        https: bool = False,
    ) -> None:
        self.scheme = "https" if ssl_context is not None or https else "http"
        self.ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self.server_name = server_name
        self.identity = identity
        self.token = token
        self.compression = compression
        self.timeout = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 2.0))
        # A full sync may take long, as long as it moves: every frame must arrive within
        # stall_timeout of the one before (a source that trickles bytes is dropped, not waited for).
        self.snapshot_timeout = aiohttp.ClientTimeout(total=snapshot_timeout, connect=2.0, sock_read=stall_timeout)
        self.stall_timeout = stall_timeout
        self.on_bytes = on_bytes
        self._session: aiohttp.ClientSession | None = None

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": PROTOBUF}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit_per_host=4, force_close=False),
                auto_decompress=False,
            )
        return self._session

    def use_ssl_context(self, context: ssl.SSLContext | None) -> None:
        """Call peers with a new context (a rotated certificate) from now on; pooled connections
        of the old one are not reused (aiohttp keys connections by their context)."""
        if context is not None:
            self.ssl = context

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _server_name(self, peer: Peer) -> str | None:
        """The name the peer's certificate must carry."""
        if self.identity is None:
            return self.server_name
        if not peer.name:
            raise PeerUnavailable(f"{peer.address}: discovery gives it no name, and node identities need one "
                                  "(static peers as NAME=HOST:PORT, or kubernetes discovery)")
        return self.identity.dns_name(peer.name)

    def _check_status(self, peer: Peer, status: pb.Status) -> None:
        if self.identity is not None and status.self.node != peer.name:
            raise PeerUnavailable(f"{peer.address}: not trusted: its certificate names {peer.name!r}, "
                                  f"but it says it is {status.self.node!r}")

    async def _call(self, peer: Peer, method: str, path: str, message: object | None,
                    reply: type, *, compressible: bool = False) -> object:
        headers = self._headers()
        data = None
        if message is not None:
            data = message if isinstance(message, bytes) else message.SerializeToString()  # type: ignore[attr-defined]
            raw = len(data)
            if compressible and self.compression and raw > 256:
                data = compress(data)
                headers[COMPRESSION_HEADER] = ZSTD_ENCODING
            self.on_bytes(peer, raw, len(data))
        url = f"{self.scheme}://{peer.address}{path}"
        server_name = self._server_name(peer)
        try:
            async with self._client().request(method, url, data=data, headers=headers, timeout=self.timeout,
                                              ssl=self.ssl, server_hostname=server_name) as response:
                body = await response.read()
                if response.status != 200:
                    raise PeerUnavailable(f"{peer.address}{path} answered {response.status}: {body[:200]!r}")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise PeerUnavailable(f"{peer.address}{path}: {exc!r}") from None
        try:
            answer = parse(reply, body)
        except ProtocolError as exc:
            raise PeerUnavailable(f"{peer.address}{path} sent a bad answer: {exc}") from None
        if isinstance(answer, pb.Status):
            self._check_status(peer, answer)
        return answer

    async def status(self, peer: Peer) -> pb.Status:
        return await self._call(peer, "GET", "/peer/v1/status", None, pb.Status)  # type: ignore[return-value]

    async def send_batch(self, peer: Peer, batch: EncodedBatch) -> pb.BatchAck:
        return await self._call(peer, "POST", "/peer/v1/batch", batch.data, pb.BatchAck,  # type: ignore[return-value]
                                compressible=True)

    async def catch_up(self, peer: Peer, request: pb.CatchUpRequest) -> pb.CatchUpResponse:
        return await self._call(peer, "POST", "/peer/v1/catchup", request,  # type: ignore[return-value]
                                pb.CatchUpResponse)

    async def snapshot(self, peer: Peer) -> AsyncIterator[bytes]:
        url = f"{self.scheme}://{peer.address}/peer/v1/snapshot"
        buffer = bytearray()
        try:
            async with self._client().get(url, headers=self._headers(), timeout=self.snapshot_timeout,
                                          ssl=self.ssl, server_hostname=self._server_name(peer)) as response:
                if response.status != 200:
                    raise PeerUnavailable(f"{peer.address} refused a snapshot: {response.status}")
                progress = time.monotonic()
                async for data in response.content.iter_chunked(1 << 20):
                    buffer.extend(data)
                    for message in read_frames(buffer):
                        progress = time.monotonic()
                        yield message
                    if time.monotonic() - progress > self.stall_timeout:
                        raise PeerUnavailable(f"{peer.address} snapshot stalled: no complete frame in "
                                              f"{self.stall_timeout:g} s")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise PeerUnavailable(f"{peer.address} snapshot: {exc!r}") from None
        if buffer:
            raise ProtocolError("the snapshot stream ended inside a frame")
