"""The peer endpoint: BinaryLog messages over HTTP, on a port of its own.

    POST /peer/v1/batch     Batch (zstd when X-Leaderboard-Compression says so) -> BatchAck
    GET  /peer/v1/status    -> Status
    POST /peer/v1/catchup   CatchUpRequest -> CatchUpResponse
    GET  /peer/v1/snapshot  -> a stream of length-prefixed SyncChunk messages

When a peer token is configured, every request must carry ``Authorization: Bearer TOKEN``
(compared in constant time); anything else is a 401 that changes nothing. Malformed,
truncated or oversized messages get a 4xx, are counted, and change nothing.

With node identities (``identity``, see ``identity.py``) the TLS handshake has verified the
caller's client certificate; a certificate that names no member of this cluster is a 403
(``not_a_member``), and a batch whose origin is not the caller's own name is a 403
(``origin_mismatch``): nothing of it is applied.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..replication import binarylog_pb2 as pb
from ..replication.protocol import COMPRESSION_HEADER, ZSTD_ENCODING, ProtocolError, decompress, frame, parse
from ..replication.replicator import NotAccepting, Replicator
from .identity import NOT_A_MEMBER, ORIGIN_MISMATCH, IdentityPolicy, NotAMember, peercert_of
from .json_body import json_response

log = logging.getLogger("leaderboard_node.peer_api")

PROTOBUF = "application/x-protobuf"
Rejected = Callable[[str], None]
_CALLER: Any = web.RequestKey("leaderboard_peer_caller", str) if hasattr(web, "RequestKey") else "leaderboard_peer_caller"
MAX_LOGGED_REFUSALS = 64  # distinct (caller, origin) pairs logged; later ones are only counted


def _reply(message: object) -> web.Response:
    return web.Response(body=message.SerializeToString(), content_type=PROTOBUF)  # type: ignore[attr-defined]


def create_peer_app(
    replicator: Replicator,
    *,
    token: str | None,
    max_message_bytes: int,
    on_rejected: Rejected = lambda reason: None,
    identity: IdentityPolicy | None = None,
) -> web.Application:
    logged: set[tuple[str, str]] = set()

    def forbidden(reason: str, message: str) -> web.Response:
        on_rejected(reason)
        return json_response({"error": {"code": reason, "message": message}}, status=403)

    @web.middleware
    async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        if token is not None:
            given = request.headers.get("Authorization", "")
            # Only visible ASCII can match (a token travels in a header): anything else is a wrong
            # token, not a failure to compare it.
            presented = given.encode() if given.isascii() else b""
            if not hmac.compare_digest(presented, f"Bearer {token}".encode()):
                on_rejected("unauthorized")
                return json_response({"error": {"code": "unauthorized", "message": "peer token missing or wrong"}},
                                         status=401)
        if identity is not None:
            try:
                request[_CALLER] = identity.member(peercert_of(request.transport))
            except NotAMember as exc:
                return forbidden(NOT_A_MEMBER, f"not a member of this cluster: {exc}")
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            on_rejected("too_large")
            return json_response({"error": {"code": "message_too_large",
                                                "message": f"peer messages are at most {max_message_bytes} bytes"}},
                                     status=413)
        except NotAccepting as exc:
            return json_response({"error": {"code": "not_accepting", "message": str(exc)}}, status=503)
        except ProtocolError as exc:
            on_rejected("malformed")
            log.warning("peer_message_rejected", extra={"path": request.path, "error": str(exc),
                                                        "remote": request.remote})
            return json_response({"error": {"code": "malformed_message", "message": str(exc)}}, status=400)

    async def body(request: web.Request) -> bytes:
        raw = await request.read()
        if request.headers.get(COMPRESSION_HEADER, "") == ZSTD_ENCODING:
            raw = decompress(raw, max_size=max_message_bytes)
        return raw

    async def batch(request: web.Request) -> web.Response:
        raw = await body(request)
        message = parse(pb.Batch, raw)
        if identity is not None and message.origin.node != request[_CALLER]:
            caller, origin = request[_CALLER], message.origin.node
            if len(logged) < MAX_LOGGED_REFUSALS and (caller, origin) not in logged:
                logged.add((caller, origin))
                log.warning("peer_batch_refused", extra={"caller": caller, "origin": origin, "remote": request.remote,
                                                         "reason": ORIGIN_MISMATCH})
            return forbidden(ORIGIN_MISMATCH, f"a node pushes only its own entries: this batch is of {origin!r}, "
                                              f"the caller's certificate names {caller!r}")
        return _reply(replicator.receive_batch(message, raw=raw))

    async def status(request: web.Request) -> web.Response:
        return _reply(replicator.status())

    async def catch_up(request: web.Request) -> web.Response:
        message = parse(pb.CatchUpRequest, await body(request))
        return web.Response(body=replicator.catch_up(message), content_type=PROTOBUF)

    async def snapshot(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        async for chunk in replicator.snapshot():
            await response.write(frame(chunk))
        await response.write_eof()
        return response

    app = web.Application(middlewares=[guard], client_max_size=max_message_bytes)
    app.router.add_post("/peer/v1/batch", batch)
    app.router.add_get("/peer/v1/status", status)
    app.router.add_post("/peer/v1/catchup", catch_up)
    app.router.add_get("/peer/v1/snapshot", snapshot)
    return app
