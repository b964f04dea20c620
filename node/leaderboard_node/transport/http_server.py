"""The client port's HTTP/1.1 server: an ``asyncio.Protocol`` on httptools (llhttp) that serves
the routes and middlewares of an aiohttp ``Application`` without aiohttp's request machinery.

Why: aiohttp's server spent 65-100 us of CPU per request on this project's machine before any
handler ran (its protocol, parser wrappers, payload streams, request and response objects,
and a task per connection that polls them); a read of the rank cache costs 10-60 us. This
server keeps what costs little (llhttp parses, a task per request runs the handler) and does
the rest in a few attribute assignments.

**The application stays the registry.** ``create_client_app`` (and ``NodeServer``) build an
aiohttp ``Application`` as before; ``HttpServer`` compiles its routes and middlewares once, at
start, and serves them:

* routes come from ``app.router.routes()``, each resource's pattern from its ``get_info()``;
  they are tried in the order aiohttp's router tries them (longest literal prefix first,
  then registration order), so a path resolves to the same route and the same
  ``match_info`` (percent-decoded; ``%2F`` stays inside its segment);
* each route's handler is wrapped in the app's middlewares, outermost first, once;
* a path no route takes gets aiohttp's own ``MatchInfoError`` (404, or 405 with ``Allow``)
  and goes through the same middlewares, so the guard middleware answers it as before;
* the app's ``on_startup``/``on_shutdown``/``on_cleanup`` run at start and stop.

Handlers and middlewares get a ``Request`` with what an aiohttp request offers them (method,
path, query, headers, ``match_info``, ``app``, ``read()``, request-local storage, ``remote``,
...) and return ``web.Response`` objects or raise ``web.HTTPException``; both are written
here. A ``web.StreamResponse`` that is not a ``web.Response`` (streamed bodies, files) is not
supported: it is answered 500 and logged, so a route that needs one says so at once.

**HTTP.** Keep-alive; pipelining (requests of one connection run one at a time, in order;
reading pauses while ``PIPELINE_DEPTH`` of them wait, or while the client does not read its
answers); Content-Length and chunked bodies; gzip, deflate and zstd bodies, decompressed
within the body limit; ``Expect: 100-continue`` (the interim answer goes out when the handler
reads the body, so a request refused before that, a missing key say, never makes the client
send it); HEAD (the GET handler's answer without its body); TLS (the listening socket's
context, handshakes bounded by the header deadline); a client that shuts its sending side
still gets the answers to what it sent. An ``Upgrade`` request is answered as a plain one
and its connection closed. A body in another Content-Encoding is a 415 (aiohttp passed
unknown codings through as they were).

**Limits** (``LimitSettings``), each answered with a JSON error naming the part of the
request and the connection closed: the time from a request's first byte to the end of its
headers (408, ``header_timeout``), the request line (414, ``max_header_bytes``), each header
line (431, ``max_header_bytes``), the number of headers (431, ``max_headers``) and the whole
header section (431, a header that never ends), idle keep-alive connections (closed after
``idle_timeout``, also before their first request). The body limit
(``max_body_bytes``) is enforced where aiohttp enforced it: ``read()`` raises
``HTTPRequestEntityTooLarge`` (the guard middleware answers 413), as soon as the declared or
received size is beyond it, without keeping more. A request answered before its body arrived
gets ``Connection: close``; the rest of the body is read and dropped for up to
``LINGER_SECONDS`` (so the client reads the answer rather than a reset), then the
connection is closed. Malformed HTTP is a 400 with llhttp's reason, and so, as with aiohttp,
are an HTTP/1.1 request without ``Host`` and a header a request may carry once (Host,
Content-Length, Transfer-Encoding, Content-Type, ...) sent twice.

**Stopping** (``stop``): the socket stops listening and the app's shutdown signal runs; idle
connections close; requests in flight finish (their bodies still read) and are answered with
``Connection: close``, up to ``timeout`` (then they are cancelled and their connections
closed); then the app's cleanup runs.

Caveats: HTTP/1.1 and 1.0 only (no HTTP/2); a client that disconnects cancels its handler
only while the handler waits for the body (a write that has started finishes, as with
aiohttp); no access log (as before); requests refused here, before any route, are not
counted in the per-route request metrics (as with aiohttp's own refusals).
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import functools
import io
import logging
import re
import socket
import ssl
import zlib
from collections.abc import Awaitable, Callable, Iterator
from http import HTTPStatus
from typing import Any

import httptools
import orjson
from aiohttp import web
from aiohttp.http import HttpVersion10, HttpVersion11
from aiohttp.web_urldispatcher import MatchInfoError, UrlMappingMatchInfo
from multidict import CIMultiDict, CIMultiDictProxy, MultiDictProxy
from yarl import URL

from ..config import LimitSettings
from ..domain.errors import InvalidArgument
from .json_body import error_body

log = logging.getLogger("leaderboard_node.http")

Handler = Callable[["Request"], Awaitable[web.StreamResponse]]

PIPELINE_DEPTH = 16  # requests parsed ahead of the one being handled before reading pauses
LINGER_SECONDS = 10.0  # how long the rest of a body answered early is read and dropped (aiohttp's lingering_time)
SHUTDOWN_TIMEOUT = 60.0  # what stop() gives requests in flight (aiohttp's shutdown_timeout)
FEED_SLICE = 16 * 1024  # bytes fed to the parser at once, so that a full pipeline stops it within a slice
BACKLOG = 128

# Headers read while parsing: those a request may carry once (aiohttp's singletons; a bit each),
# and two more whose values are kept (negative).
_CONTENT_LENGTH, _HOST, _TRANSFER_ENCODING = 1, 2, 4
_CONTENT_ENCODING, _EXPECT = -1, -2
_SPECIAL_HEADERS = {b"content-length": _CONTENT_LENGTH, b"host": _HOST, b"transfer-encoding": _TRANSFER_ENCODING,
                    b"content-location": 8, b"content-range": 16, b"content-type": 32, b"etag": 64,
                    b"max-forwards": 128, b"server": 256, b"user-agent": 512,
                    b"content-encoding": _CONTENT_ENCODING, b"expect": _EXPECT}
_HEADERS_NOT_COPIED = frozenset({"content-length", "transfer-encoding", "connection", "date", "keep-alive"})
_NO_BODY_STATUSES = frozenset({204, 304})
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_VERSIONS = {"1.1": HttpVersion11, "1.0": HttpVersion10}
_METHODS: dict[bytes, str] = {}  # llhttp's method names, decoded once each

# Deadline kinds of a connection (one deadline at a time; checked by the server's clock)
_NONE, _IDLE, _HEADERS, _LINGER = 0, 1, 2, 3


class _Refused(Exception):
    """A request refused by the HTTP layer, before any route: answered, then the connection closed."""

    def __init__(self, status: int, code: str, message: str, field: str) -> None:
        super().__init__(message)
        self.answer = refusal(status, code, message, field)


def refusal(status: int, code: str, message: str, field: str) -> bytes:
    """A whole answer (status line, headers, JSON error body) that closes its connection."""
    body = orjson.dumps(error_body([{"code": code, "message": message, "field": field}]))
    return (f"HTTP/1.1 {status} {_reason(status)}\r\nContent-Type: application/json\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


# ------------------------------------------------------------------------------- routing


class _Resource:
    """One resource of the app: how its path matches, and its routes by method."""

    __slots__ = ("plain", "pattern", "slashes", "routes", "any", "allowed")

    def __init__(self, resource: Any) -> None:
        info = resource.get_info()
        if "path" in info:
            self.plain: str | None = info["path"]
            self.pattern: re.Pattern[str] | None = None
            self.slashes: int | None = info["path"].count("/")
        elif "pattern" in info:
            self.plain, self.pattern = None, info["pattern"]
            # Parameters that take one segment each ({name}, aiohttp's default) keep the
            # number of slashes of every path the resource matches fixed; a custom regex may not.
            rest = re.sub(r"\\.", "", _SEGMENT_PARAMETER.sub("", info["pattern"].pattern))
            self.slashes = resource.canonical.count("/") if not any(c in rest for c in _REGEX_SYNTAX) else None
        else:
            raise TypeError(f"transport.http_server serves plain and patterned routes only, not {resource!r}")
        self.routes: dict[str, tuple[Any, Handler]] = {}
        self.any: tuple[Any, Handler] | None = None
        self.allowed: set[str] = set()

    def match(self, path: str) -> dict[str, str] | None:
        if self.plain is not None:
            return {} if self.plain == path else None
        found = self.pattern.fullmatch(path)  # type: ignore[union-attr]
        return None if found is None else {key: _unquote_path_safe(value) for key, value in found.groupdict().items()}


_SEGMENT_PARAMETER = re.compile(r"\(\?P<[A-Za-z_][A-Za-z0-9_]*>\[\^\{\}/\]\+\)")
_REGEX_SYNTAX = frozenset(".[](){}*+?|^$")


class _Bucket:
    """The resources of one index key in registration order, and by the number of slashes of
    the paths they can match (a resource with a custom pattern is in every list)."""

    __slots__ = ("key", "resources", "by_slashes", "any_slashes")

    def __init__(self, key: str) -> None:
        self.key = key
        self.resources: list[_Resource] = []
        self.by_slashes: dict[int, list[_Resource]] = {}
        self.any_slashes: list[_Resource] = []

    def compile(self) -> None:
        counts = {r.slashes for r in self.resources if r.slashes is not None}
        self.by_slashes = {n: [r for r in self.resources if r.slashes in (n, None)] for n in counts}
        self.any_slashes = [r for r in self.resources if r.slashes is None]


def _index_key(canonical: str) -> str:
    """The literal prefix a resource is indexed by (aiohttp's ``_get_resource_index_key``)."""
    if "{" in canonical:
        canonical = canonical.partition("{")[0].rpartition("/")[0]
    return canonical.rstrip("/") or "/"


def _unquote_path_safe(value: str) -> str:
    if "%" not in value:
        return value
    return value.replace("%2F", "/").replace("%25", "%")


class Router:
    """The app's routes, compiled: ``resolve`` finds what aiohttp's router would.

    aiohttp indexes each resource by its literal prefix (the path up to its first
    parameter), walks the path back one segment at a time looking up each prefix, and tries
    the resources of a prefix in registration order; the first whose path matches and that
    has a route for the method wins, and the methods of those that matched without one make
    a 405. Here the prefixes a path can have are found from its first segment (longest
    first, as the walk meets them) and only the resources that can match its number of
    slashes are tried: the same answer, in a third of the time.
    """

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self._middlewares = list(app.middlewares)
        for middleware in self._middlewares:
            if getattr(middleware, "__middleware_version__", None) != 1:
                raise TypeError(f"{middleware!r} is an old-style middleware; decorate it with @web.middleware")
        buckets: dict[str, _Bucket] = {}
        compiled: dict[int, _Resource] = {}
        for route in app.router.routes():
            resource = route.resource
            if resource is None:
                raise TypeError(f"transport.http_server cannot serve the route {route!r}")
            entry = compiled.get(id(resource))
            if entry is None:
                entry = compiled[id(resource)] = _Resource(resource)
                key = _index_key(resource.canonical)
                buckets.setdefault(key, _Bucket(key)).resources.append(entry)
            chain = self.wrap(route.handler)
            if route.method == "*":
                entry.any = (route, chain)
            else:
                entry.routes[route.method] = (route, chain)
            entry.allowed.add(route.method)
        for bucket in buckets.values():
            bucket.compile()
        self._root = buckets.pop("/", None)  # met last by the walk, whatever the path
        self._by_first: dict[str, list[_Bucket]] = {}
        for key, bucket in sorted(buckets.items(), key=lambda item: -len(item[0])):
            self._by_first.setdefault(key.split("/", 2)[1], []).append(bucket)

    def wrap(self, handler: Handler) -> Handler:
        """``handler`` inside the app's middlewares, the first of them outermost (as aiohttp does)."""
        for middleware in reversed(self._middlewares):
            handler = functools.update_wrapper(functools.partial(middleware, handler=handler), handler)
        return handler

    def resolve(self, method: str, path: str) -> tuple[Any, Handler, dict[str, str]] | set[str]:
        """``(route, wrapped handler, match)`` for ``path`` (percent-decoded but for ``%2F``
        and ``%25``), or the methods allowed on it when none of its routes takes ``method``."""
        allowed: set[str] = set()
        slashes = path.count("/")
        buckets = self._by_first.get(path.split("/", 2)[1] if slashes > 1 else path[1:], ())
        for bucket in (*buckets, self._root) if self._root is not None else buckets:
            key = bucket.key
            if bucket is not self._root and path != key and not (path.startswith(key) and path[len(key)] == "/"):
                continue
            for entry in bucket.by_slashes.get(slashes, bucket.any_slashes):
                if entry.plain is not None:
                    if entry.plain != path:
                        continue
                    match: dict[str, str] = {}
                else:
                    found = entry.pattern.fullmatch(path)  # type: ignore[union-attr]
                    if found is None:
                        continue
                    match = found.groupdict()
                    if "%" in path:
                        match = {name: _unquote_path_safe(value) for name, value in match.items()}
                target = entry.routes.get(method) or entry.any
                if target is not None:
                    return target[0], target[1], match
                allowed |= entry.allowed
        return allowed


# ------------------------------------------------------------------------------- request


class Request:
    """What handlers and middlewares get: the parts of ``aiohttp.web.Request`` they use.

    A mapping for request-local storage (``request[key] = value``), as aiohttp's is.
    """

    __slots__ = ("method", "version", "headers", "keep_alive", "match_info", "app", "_conn", "_target",
                 "_raw_path", "_raw_query", "_url", "_state", "_chunks", "_size", "_declared", "complete",
                 "_too_large", "_error", "_waiter", "_body", "_encoding", "_expect_continue", "last", "_chunked")

    def __init__(self, conn: _Connection, method: str, target: str, version: Any, headers: CIMultiDictProxy[str],
                 keep_alive: bool, declared: int | None, encoding: str | None, expect_continue: bool,
                 chunked: bool) -> None:
        self.method = method
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.match_info: UrlMappingMatchInfo = None  # type: ignore[assignment]  # set before any handler runs
        self.app: web.Application = conn.server.app
        self._conn = conn
        self._target = target
        raw_path, sep, raw_query = target.partition("?")
        if "#" in raw_path:
            raw_path = raw_path.partition("#")[0]
        elif sep and "#" in raw_query:
            raw_query = raw_query.partition("#")[0]
        self._raw_path = raw_path
        self._raw_query = raw_query
        self._url: URL | None = None
        self._state: dict[Any, Any] = {}
        self._chunks: list[bytes] = []
        self._size = 0
        self._declared = declared
        self.complete = False
        self._too_large = declared is not None and declared > conn.server.max_body
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._body: bytes | None = None
        self._encoding = encoding
        self._expect_continue = expect_continue  # until the interim answer is sent
        self.last = False  # the connection closes after this request's answer
        self._chunked = chunked

    # --------------------------------------------------------------- the URL

    @property
    def rel_url(self) -> URL:
        url = self._url
        if url is None:
            url = self._url = URL.build(path=self._raw_path, query_string=self._raw_query, encoded=True)
        return url

    @property
    def path(self) -> str:
        """The path, percent-decoded."""
        return self._raw_path if "%" not in self._raw_path else self.rel_url.path

    @property
    def path_safe(self) -> str:
        """The path, percent-decoded but for ``%2F`` and ``%25`` (what routes match)."""
        return self._raw_path if "%" not in self._raw_path else self.rel_url.path_safe

    @property
    def raw_path(self) -> str:
        """The request target as sent (path and query)."""
        return self._target

    @property
    def path_qs(self) -> str:
        return str(self.rel_url)

    @property
    def query(self) -> MultiDictProxy[str]:
        return self.rel_url.query

    @property
    def query_string(self) -> str:
        return self.rel_url.query_string

    @property
    def raw_headers(self) -> tuple[tuple[bytes, bytes], ...]:
        return tuple((name.encode("latin-1"), value.encode("utf-8", "surrogateescape"))
                     for name, value in self.headers.items())

    @property
    def secure(self) -> bool:
        return self._conn.server.ssl_context is not None

    @property
    def scheme(self) -> str:
        return "https" if self.secure else "http"

    @property
    def host(self) -> str:
        return self.headers.get("Host") or socket.getfqdn()

    @property
    def url(self) -> URL:
        return URL.build(scheme=self.scheme, authority=self.host).join(self.rel_url)

    @property
    def remote(self) -> str | None:
        transport = self._conn.transport
        if transport is None:
            return None
        peer = transport.get_extra_info("peername")
        return str(peer[0]) if isinstance(peer, (list, tuple)) else None

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._conn.transport

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        transport = self._conn.transport
        return default if transport is None else transport.get_extra_info(name, default)

    @property
    def config_dict(self) -> web.Application:
        return self.app

    # --------------------------------------------------------------- the body

    @property
    def content_type(self) -> str:
        raw = self.headers.get("Content-Type")
        return raw.partition(";")[0].strip().lower() if raw else "application/octet-stream"

    @property
    def charset(self) -> str | None:
        raw = self.headers.get("Content-Type", "")
        for parameter in raw.split(";")[1:]:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "charset":
                return value.strip().strip('"') or None
        return None

    @property
    def content_length(self) -> int | None:
        return self._declared

    @property
    def body_exists(self) -> bool:
        return self._chunked or bool(self._declared)

    @property
    def can_read_body(self) -> bool:
        return self.body_exists and self._body is None

    @property
    def has_body(self) -> bool:
        return self.can_read_body

    async def read(self) -> bytes:
        """The whole body, decompressed (Content-Encoding gzip, deflate or zstd).

        Raises ``web.HTTPRequestEntityTooLarge`` beyond the body limit, as soon as the size
        declared or received is beyond it.
        """
        if self._body is not None:
            return self._body
        if not self.complete and not self._too_large and self._error is None:
            conn = self._conn
            if conn.transport is None:  # the client went away: nobody to answer
                raise asyncio.CancelledError
            if self._expect_continue:
                self._expect_continue = False
                conn.transport.write(_CONTINUE)
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        limit = self._conn.server.max_body
        if self._too_large:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=max(self._size, self._declared or 0))
        if self._error is not None:
            raise self._error
        chunks = self._chunks
        raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        if self._encoding is not None and raw:
            raw = _decompress(raw, self._encoding, limit)
        self._body = raw
        return raw

    async def text(self) -> str:
        return (await self.read()).decode(self.charset or "utf-8")

    async def json(self, *, loads: Callable[[str | bytes], Any] = orjson.loads) -> Any:
        return loads(await self.read())

    async def release(self) -> None:
        """Wait for the rest of the body and drop it."""
        await self.read()

    # called by the connection, as the body arrives

    def _feed(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._too_large:
            return
        if self._size > self._conn.server.max_body:
            self._too_large = True
            self._chunks = []
            self._wake()
            return
        self._chunks.append(chunk)

    def _finish(self) -> None:
        self.complete = True
        self._wake()

    def _fail(self, error: Exception) -> None:
        self._error = error
        self._wake()

    def _drop(self) -> None:
        """Answered already: the rest of the body is read and not kept."""
        self._too_large = True
        self._chunks = []

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --------------------------------------------------------------- request-local storage

    def __getitem__(self, key: Any) -> Any:
        return self._state[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._state[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._state[key]

    def __contains__(self, key: object) -> bool:
        return key in self._state

    def __iter__(self) -> Iterator[Any]:
        return iter(self._state)

    def __len__(self) -> int:
        return len(self._state)

    def get(self, key: Any, default: Any = None) -> Any:
        return self._state.get(key, default)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self._raw_path}>"


def _decompress(raw: bytes, encoding: str, limit: int) -> bytes:
    """``raw`` decoded, at most ``limit`` bytes of it (``HTTPRequestEntityTooLarge`` beyond)."""
    too_large = web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=limit + 1)
    if encoding == "zstd":
        import zstandard

        try:
            with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw), read_across_frames=True) as reader:
                out = reader.read(limit + 1)
        except zstandard.ZstdError:
            raise InvalidArgument("the body is not valid zstd (Content-Encoding: zstd)", field="body") from None
        if len(out) > limit:
            raise too_large
        return out
    parts: list[bytes] = []
    size = 0
    data = raw
    while data:  # concatenated members, each with a decoder of its own
        if encoding == "gzip":
            decoder = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        else:  # deflate: zlib-wrapped as the standard says, or raw as some clients send it
            decoder = zlib.decompressobj(wbits=zlib.MAX_WBITS if data[0] & 0x0F == 8 else -zlib.MAX_WBITS)
        try:
            out = decoder.decompress(data, limit + 1 - size)
        except zlib.error:
            raise InvalidArgument(f"the body is not valid {encoding} (Content-Encoding: {encoding})",
                                  field="body") from None
        size += len(out)
        if size > limit:
            raise too_large
        parts.append(out)
        if not decoder.eof:
            raise InvalidArgument(f"the {encoding} body is truncated", field="body")
        data = decoder.unused_data
    return b"".join(parts)


# ------------------------------------------------------------------------------- connections


class _Connection(asyncio.Protocol):
    """One client connection: parses requests, runs them one at a time, writes their answers."""

    __slots__ = ("server", "transport", "_parser", "_url", "_headers", "_seen", "_length", "_encoding", "_expect",
                 "_head_bytes", "_in_head", "_reading", "_queue", "_current", "_task", "_pending", "_parse_paused",
                 "_write_paused", "_stopped", "_lingering", "_linger_parse", "_eof", "deadline", "_deadline_kind")

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._seen = 0  # the singleton headers seen in the message (_SINGLETONS' bits)
        self._length: bytes | None = None  # Content-Length, Content-Encoding and Expect, as they arrive
        self._encoding: bytes | None = None
        self._expect: bytes | None = None
        self._head_bytes = 0
        self._in_head = False
        self._reading: Request | None = None  # the request whose body is arriving
        self._queue: collections.deque[Request | bytes] = collections.deque()  # bytes: a refusal, then close
        self._current: Request | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending: bytes = b""  # bytes received but not parsed while the pipeline is full
        self._parse_paused = False
        self._write_paused = False
        self._stopped = False  # no more bytes parsed: the connection closes once the queue is answered
        self._lingering = False  # the last answer is out: what the client still sends is dropped, then close
        self._linger_parse = False  # ... parsed, to find the end of the body that answer came before
        self._eof = False
        self.deadline = 0.0
        self._deadline_kind = _NONE

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - a socket closed already
                pass
        self.server._connections.add(self)
        if self.server.stopping:
            transport.close()
            return
        self._set_deadline(_IDLE, self.server.limits.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)
        self.transport = None
        self._queue.clear()
        self._pending = b""
        current = self._current
        if current is not None and current._waiter is not None and self._task is not None:
            self._task.cancel()  # its body can never arrive: nothing has been done yet
        self.server._closed(self)

    def eof_received(self) -> bool:
        self._eof = True
        if self._lingering:
            return False
        reading = self._reading
        if reading is not None and not reading.complete:
            reading._fail(InvalidArgument("the client stopped sending before the body was complete", field="body"))
            reading.last = True
        if self._in_head:  # a request cut short: nothing to answer
            self._stop_parsing()
        # Keep the socket open for the answers to what was asked before the client stopped
        # sending (TLS transports close regardless); an idle connection just closes.
        return self._current is not None or bool(self._queue)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._pump()

    def data_received(self, data: bytes) -> None:
        if self._stopped and not (self._lingering and self._linger_parse):
            return
        if self._parse_paused:
            self._pending += data
            return
        if len(data) <= FEED_SLICE:
            self._feed_slice(data)
        else:
            self._feed(data)
        if self._current is None and self._queue:
            self._pump()

    # ------------------------------------------------------------ parsing

    def _feed(self, data: bytes) -> None:
        if len(data) <= FEED_SLICE:
            self._feed_slice(data)
            return
        view = memoryview(data)
        for offset in range(0, len(data), FEED_SLICE):
            if self._stopped and not (self._lingering and self._linger_parse):
                return
            if self._parse_paused:
                self._pending = bytes(view[offset:]) + self._pending
                return
            self._feed_slice(view[offset:offset + FEED_SLICE])

    def _feed_slice(self, data: bytes | memoryview) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._stop_parsing()  # what follows is another protocol: answer what came before, then close
        except httptools.HttpParserError as exc:
            self._parse_failed(exc, data)
            return
        if self._in_head:
            self._head_bytes += len(data)
            limits = self.server.limits
            if self._head_bytes > limits.max_header_bytes * (limits.max_headers + 2):
                self._refuse(refusal(431, "headers_too_large", "the request's headers are too large", "headers"))

    def _parse_failed(self, exc: httptools.HttpParserError, data: bytes | memoryview) -> None:
        if self._lingering:  # bytes after the request already answered: not ours to judge
            self._close()
            return
        if isinstance(exc, httptools.HttpParserCallbackError):
            cause = exc.__context__
            if isinstance(cause, _Refused):
                self._refuse(cause.answer)
            else:  # pragma: no cover - a bug in a callback
                log.error("http_callback_failed", exc_info=cause or exc)
                self._refuse(refusal(500, "internal", "the node failed to parse this request", "request"))
            return
        reason = str(exc) or type(exc).__name__
        reading = self._reading
        if reading is not None and not reading.complete:  # the body's framing (a bad chunk size)
            reading._fail(InvalidArgument(f"the request body is not valid HTTP framing: {reason}", field="body"))
            reading.last = True
            self._stop_parsing()
        elif isinstance(exc, httptools.HttpParserInvalidMethodError) and bytes(data[:2]) == b"\x16\x03":
            self._refuse(refusal(400, "bad_request", "TLS on a plain HTTP port: use https://", "request"))
        else:
            self._refuse(refusal(400, "bad_request", f"the request is not valid HTTP/1.1: {reason}", "request"))

    def on_message_begin(self) -> None:
        if self._lingering:
            return
        self._in_head = True
        self._head_bytes = 0
        self._url = b""
        self._headers = []
        self._seen = 0
        self._length = self._encoding = self._expect = None
        self._deadline_kind = _HEADERS
        self.deadline = self.server.loop.time() + self.server.limits.header_timeout

    def on_url(self, url: bytes) -> None:
        url = self._url = self._url + url if self._url else url
        if len(url) > self.server.max_header_bytes:
            raise _Refused(414, "url_too_long", f"the request line is longer than {self.server.max_header_bytes} bytes",
                           "url")

    def on_header(self, name: bytes, value: bytes) -> None:
        server = self.server
        headers = self._headers
        if len(headers) >= server.max_headers:
            raise _Refused(431, "too_many_headers", f"the request has more than {server.max_headers} headers",
                           "headers")
        if len(name) + len(value) > server.max_header_bytes:
            raise _Refused(431, "header_too_large", f"a header line is longer than {server.max_header_bytes} bytes",
                           "headers")
        value = value.rstrip(b" \t")  # llhttp strips the whitespace before a value, not after it
        bit = _SPECIAL_HEADERS.get(name.lower())
        if bit is not None:
            if bit > 0:  # a header a request may carry once: two could be read two ways (smuggling)
                if self._seen & bit:
                    raise _Refused(400, "bad_request", f"the {name.decode('latin-1')} header appears more than once",
                                   "headers")
                self._seen |= bit
                if bit == _CONTENT_LENGTH:
                    self._length = value
            elif bit == _CONTENT_ENCODING:
                self._encoding = value
            else:
                self._expect = value
        if b"\x00" in value:
            raise _Refused(400, "bad_request", f"the {name.decode('latin-1')} header holds a NUL byte", "headers")
        headers.append((name.decode("latin-1"), value.decode("utf-8", "surrogateescape")))

    def on_headers_complete(self) -> None:
        if self._lingering or self.server.stopping:  # no new request once the answer in flight closes
            self._in_head = False
            return
        self._in_head = False
        self._deadline_kind = _NONE
        self.deadline = 0.0
        parser = self._parser
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method)
        if method is None:
            method = _METHODS[raw_method] = raw_method.decode("ascii", "replace")
        version = _VERSIONS.get(parser.get_http_version(), HttpVersion11)
        seen = self._seen
        if not seen & _HOST and version is HttpVersion11:
            raise _Refused(400, "bad_request", "an HTTP/1.1 request needs a Host header", "headers")
        target = self._url.decode("utf-8", "surrogateescape")
        if target[:1] != "/":
            target = _origin_form(target)
        expect_continue = False
        if self._expect is not None and version is HttpVersion11:
            expect = self._expect.decode("latin-1")
            if expect.lower() != "100-continue":
                raise _Refused(417, "expectation_failed", f"unknown Expect: {expect[:100]}", "expect")
            expect_continue = True
        encoding = None
        if self._encoding is not None:
            encoding = self._encoding.decode("latin-1").strip().lower()
            if encoding in ("", "identity"):
                encoding = None
            elif encoding not in ("gzip", "deflate", "zstd"):
                raise _Refused(415, "unsupported_content_encoding",
                               f"Content-Encoding {encoding[:40]} is not supported (gzip, deflate, zstd are)",
                               "content-encoding")
        request = Request(self, method, target, version, CIMultiDictProxy(CIMultiDict(self._headers)),
                          parser.should_keep_alive(), None if self._length is None else int(self._length), encoding,
                          expect_continue, bool(seen & _TRANSFER_ENCODING))  # llhttp has checked the digits
        self._reading = request
        self._queue.append(request)

    def on_body(self, body: bytes) -> None:
        reading = self._reading
        if reading is not None:
            reading._feed(body)

    def on_message_complete(self) -> None:
        reading, self._reading = self._reading, None
        if reading is not None:
            reading._finish()
        if self._lingering:
            self._close()
            return
        if len(self._queue) >= PIPELINE_DEPTH and not self._parse_paused:
            self._parse_paused = True
            if self.transport is not None:
                self.transport.pause_reading()

    def _refuse(self, answer: bytes) -> None:
        """Answer ``answer`` once the requests before it are answered, then close."""
        reading = self._reading
        if reading is not None and not reading.complete:  # the request whose body was arriving
            reading._fail(InvalidArgument("the connection was refused while the body arrived", field="body"))
            reading.last = True
        self._stop_parsing()
        if self._lingering:
            self._close()
            return
        self._queue.append(answer)
        self._pump()

    def _stop_parsing(self) -> None:
        self._stopped = True
        self._in_head = False
        self._pending = b""
        if self._deadline_kind == _HEADERS:
            self._deadline_kind, self.deadline = _NONE, 0.0

    # ------------------------------------------------------------ running requests

    def _pump(self) -> None:
        """Start the next request when none runs (and the client reads its answers)."""
        if self._current is not None or self._write_paused or self.transport is None:
            return
        queue = self._queue
        while queue and self._current is None:
            item = queue.popleft()
            if type(item) is bytes:  # a refusal: the last answer of this connection
                queue.clear()
                self.transport.write(item)
                self._linger(parse=False)
                return
            assert isinstance(item, Request)
            self._current = item
            self._task = self.server.loop.create_task(self._run(item))
        if self._parse_paused and len(queue) < PIPELINE_DEPTH // 2:
            self._resume_parsing()
        if self._current is None and not queue:
            if self._eof or self._stopped or self.server.stopping:
                if not self._lingering:
                    self._close()
            elif not self._in_head and self._deadline_kind != _LINGER:
                self._set_deadline(_IDLE, self.server.limits.idle_timeout)

    def _resume_parsing(self) -> None:
        self._parse_paused = False
        pending, self._pending = self._pending, b""
        if pending:
            self._feed(pending)
        if not self._parse_paused and self.transport is not None:
            self.transport.resume_reading()
        if pending:
            self._pump()

    async def _run(self, request: Request) -> None:
        try:
            response = await self.server.dispatch(request)
        except asyncio.CancelledError:  # the client went away, or the server stopped waiting
            self._current = self._task = None
            return
        except web.HTTPException as exc:
            response = exc
        except Exception:
            log.exception("request_failed", extra={"method": request.method, "path": request.path})
            response = _INTERNAL
        self._current = self._task = None
        try:
            self._respond(request, response)
        except Exception:  # a response this server cannot write: say so, once, and answer 500
            log.exception("response_failed", extra={"method": request.method, "path": request.path})
            if self.transport is not None and not self.transport.is_closing():
                self._respond(request, _INTERNAL)
        self._pump()

    def _respond(self, request: Request, response: web.StreamResponse) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        server = self.server
        complete = request.complete
        close = (not complete or request.last or not request.keep_alive or server.stopping
                 or response.keep_alive is False or ((self._stopped or self._eof) and not self._queue))
        head, body = server.serialize(request, response, close=close)
        if len(body) > FEED_SLICE:
            transport.writelines((head, body))
        else:
            transport.write(head + body)
        if not close:
            return
        self._queue.clear()  # pipelined requests after a closing answer are not answered (nor run)
        if complete:
            self._close()
            return
        # Answered before its body arrived: read the rest and drop it, so that the client
        # reads this answer rather than a reset, then close.
        request._drop()
        self._linger(parse=True)

    def _linger(self, *, parse: bool) -> None:
        """The last answer is written: half-close, drop what the client still sends (until the
        end of the body it was sending, when ``parse``; until it closes; at most
        ``LINGER_SECONDS``), then close. Closing at once, with bytes unread, would send a
        reset that can destroy the answer before the client reads it."""
        self._lingering = True
        self._linger_parse = parse
        self._stopped = True
        self._in_head = False
        self._pending = b""
        self._set_deadline(_LINGER, LINGER_SECONDS)
        transport = self.transport
        if transport is not None and transport.can_write_eof():
            transport.write_eof()

    def _close(self) -> None:
        self._stopped = True
        if self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------ deadlines

    def _set_deadline(self, kind: int, seconds: float) -> None:
        self._deadline_kind = kind
        self.deadline = self.server.loop.time() + seconds

    def expire(self) -> None:
        """Called by the server's clock once ``deadline`` has passed."""
        kind, self._deadline_kind, self.deadline = self._deadline_kind, _NONE, 0.0
        if kind == _HEADERS and self._in_head:
            self._refuse(_HEADER_TIMEOUT)
        elif kind in (_IDLE, _LINGER) or (kind == _HEADERS and self._current is None and not self._queue):
            self._close()

    def shutdown(self) -> None:
        """The server stops: close now when idle, else after the answer in flight (whose body
        is still read; requests after it are not run)."""
        self._queue.clear()
        if self._current is None:
            self._close()
        elif self._deadline_kind == _HEADERS:
            self._deadline_kind, self.deadline = _NONE, 0.0


def _origin_form(target: str) -> str:
    """The path and query of an absolute-form target (``http://host/path?q``), else a 400."""
    if "://" in target:
        try:
            url = URL(target, encoded=True)
        except ValueError:
            url = None
        if url is not None and url.raw_host:
            return url.raw_path + (f"?{url.raw_query_string}" if url.raw_query_string else "")
    raise _Refused(400, "bad_request", "the request target must be a path (or an absolute URL)", "url")


_INTERNAL = web.Response(body=orjson.dumps(error_body([{"code": "internal",
                                                        "message": "the node failed to handle this request"}])),
                         status=500, content_type="application/json")
_HEADER_TIMEOUT = refusal(408, "header_timeout", "the request's headers did not arrive in time", "headers")


# ------------------------------------------------------------------------------- the server


class HttpServer:
    """Serves ``app`` (an aiohttp Application: its routes and middlewares) on one address."""

    def __init__(self, app: web.Application, *, limits: LimitSettings, ssl_context: ssl.SSLContext | None = None,
                 name: str = "client") -> None:
        self.app = app
        self.limits = limits
        self.ssl_context = ssl_context
        self.name = name
        self.router: Router | None = None
        self.stopping = False
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by start()
        self._connections: set[_Connection] = set()
        self._server: asyncio.base_events.Server | None = None
        self._clock: asyncio.TimerHandle | None = None
        self._drained: asyncio.Event | None = None
        self._date = b""
        self._head_blocks: dict[tuple[Any, ...], bytes] = {}
        self.max_body = limits.max_body_bytes  # read per request: plain attributes
        self.max_header_bytes = limits.max_header_bytes
        self.max_headers = limits.max_headers
        self._started = False

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        """Compile the app, run its start-up signal, then listen (``OSError`` when it cannot;
        ``stop`` then runs the app's shutdown and cleanup)."""
        self.loop = asyncio.get_running_loop()
        if self.router is None:
            self.app.freeze()
            self.router = Router(self.app)
        await self.app.startup()
        self._started = True
        self._tick()
        self._server = await self.loop.create_server(
            lambda: _Connection(self), host, port, ssl=self.ssl_context, reuse_address=True, backlog=BACKLOG,
            ssl_handshake_timeout=self.limits.header_timeout if self.ssl_context is not None else None,
        )

    async def stop(self, *, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Stop listening, finish the requests in flight (up to ``timeout``), close every connection."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        if self._started:
            await self.app.shutdown()
        self._drained = asyncio.Event()
        for connection in list(self._connections):
            connection.shutdown()
        if self._connections:
            try:
                async with asyncio.timeout(timeout):
                    await self._drained.wait()
            except TimeoutError:
                log.warning("requests_cut_short", extra={"server": self.name, "connections": len(self._connections)})
                for connection in list(self._connections):
                    if connection._task is not None:
                        connection._task.cancel()
                    if connection.transport is not None:
                        connection.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._clock is not None:
            self._clock.cancel()
            self._clock = None
        if self._started:
            await self.app.cleanup()
            self._started = False

    def _closed(self, connection: _Connection) -> None:
        if self._drained is not None and not self._connections:
            self._drained.set()

    def _tick(self) -> None:
        """The server's clock: the Date header, and every connection's deadline."""
        self._date = f"Date: {email.utils.formatdate(usegmt=True)}\r\n".encode()
        now = self.loop.time()
        for connection in [c for c in self._connections if c.deadline and c.deadline <= now]:
            connection.expire()
        limits = self.limits
        interval = min(1.0, limits.header_timeout / 4, limits.idle_timeout / 4)
        self._clock = self.loop.call_later(interval, self._tick)

    def dispatch(self, request: Request) -> Awaitable[web.StreamResponse]:
        """Find the route; the handler inside the middlewares, called (a coroutine to await)."""
        router = self.router
        assert router is not None
        found = router.resolve(request.method, request.path_safe)
        if type(found) is tuple:
            route, handler, match = found
            match_info = UrlMappingMatchInfo(match, route)
        else:
            error = (web.HTTPMethodNotAllowed(request.method, found) if found else web.HTTPNotFound())
            match_info = MatchInfoError(error)
            handler = router.wrap(match_info.handler)
        match_info.add_app(self.app)
        request.match_info = match_info
        return handler(request)  # type: ignore[arg-type]

    def serialize(self, request: Request, response: web.StreamResponse, *, close: bool) -> tuple[bytes, bytes]:
        """The status line and headers, and the body, of ``response``.

        The status line and the handler's headers are encoded once per distinct value (a few
        dozen in all: statuses, content types, ``Allow`` and ``WWW-Authenticate`` values).
        """
        if not isinstance(response, web.Response):
            raise TypeError(f"transport.http_server writes web.Response answers, not {type(response).__name__}")
        status = response.status
        key = (status, response.reason, *response.headers.items())
        block = self._head_blocks.get(key)
        if block is None:
            block = self._head_block(status, response)
            if len(self._head_blocks) < 1024:
                self._head_blocks[key] = block
        body = response.body
        if body is None:
            body = b""
        elif type(body) is not bytes:
            body = _payload_bytes(body)
        if status < 200 or status in _NO_BODY_STATUSES:
            head, body = block, b""
        elif body:
            head = block + b"Content-Length: %d\r\n" % len(body)
        else:
            head = block + b"Content-Length: 0\r\n"
        if close:
            head += b"Connection: close\r\n"
        elif request.version is HttpVersion10:
            head += b"Connection: keep-alive\r\n"
        if request.method == "HEAD":
            body = b""
        return head + self._date + b"\r\n", body

    @staticmethod
    def _head_block(status: int, response: web.Response) -> bytes:
        reason = response.reason
        if "\r" in reason or "\n" in reason:
            raise ValueError("a reason phrase holds a line break")
        lines = [f"HTTP/1.1 {status} {reason}\r\n"]
        content_type = False
        for name, value in response.headers.items():
            lowered = name.lower()
            if lowered in _HEADERS_NOT_COPIED:
                continue
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"the {name} header holds a line break")
            content_type = content_type or lowered == "content-type"
            lines.append(f"{name}: {value}\r\n")
        if not content_type and status >= 200 and status not in _NO_BODY_STATUSES:
            lines.append("Content-Type: application/octet-stream\r\n")
        return "".join(lines).encode()


def _payload_bytes(body: Any) -> bytes:
    value = getattr(body, "_value", None)  # aiohttp's BytesPayload (a bytearray or memoryview body)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"transport.http_server writes byte bodies, not {type(body).__name__}")
