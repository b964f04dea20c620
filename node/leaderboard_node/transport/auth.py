"""Client API keys: who may call what.

Two keys, as Nakama separates them:

* the **server key** is for the game's backend and for operators: creating and deleting
  leaderboards and tournaments, deleting records, and writing to *authoritative*
  leaderboards;
* the **client key** is for game clients: reads, ordinary record writes, joining
  tournaments.

The server key is accepted wherever the client key is. A key is sent as
``Authorization: Bearer KEY`` (or ``X-Api-Key: KEY``). A request without one gets a 401
naming the field ``authorization``; a wrong key gets a 401 too; a client key on a server
operation gets a 403. ``/healthz``, ``/readyz``, ``/metrics`` and ``/openapi.json`` never
need a key (probes and scrapers carry none). When no key is configured the API is open and
every caller counts as the server (local demos); ``create_client_app`` logs a warning. With
only a server key configured, every operation needs it (there is no client tier); a client
key alone is refused at start (nobody could create a leaderboard).

Each route declares what it needs with ``requires(Access.SERVER)`` (or ``Access.OPEN``);
a route that declares nothing needs the client key, so a new route is never open by
accident. Handlers ask ``role(request)`` whether the caller used the server key, and pass
that on to the store (``server=``), which refuses writes to authoritative leaderboards.

Design notes and caveats:

* Keys are compared as SHA-256 digests with ``hmac.compare_digest``, against both keys every
  time, so neither the length of a key nor which key matched shows in the timing.
* Keys are read once, when the app is created; rotating a key means restarting the node
  (a rolling restart keeps the cluster up). Two keys per role would allow overlap; not done.
* Keys travel in clear text unless TLS is on (``tls.*`` settings) or a proxy terminates it.
* A refused request is not logged (a flood of them must not flood the log); the request
  metrics count it by route and status.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import SecretStr

from ..config import MIN_KEY_LENGTH, AuthSettings, ConfigError
from ..domain.errors import DomainError
from .json_body import error_json, json_response

log = logging.getLogger("leaderboard_node.auth")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Callable[..., Any])

FIELD = "authorization"
REALM = 'Bearer realm="leaderboard"'
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
_ACCESS_ATTRIBUTE = "__leaderboard_access__"


class Access(StrEnum):
    """What a route needs."""

    OPEN = "open"
    CLIENT = "client"
    SERVER = "server"


class Role(StrEnum):
    """Who the caller is, by the key it sent."""

    CLIENT = "client"
    SERVER = "server"


# aiohttp >= 3.13 types request storage with RequestKey (and warns about plain strings).
_ROLE: Any = web.RequestKey("leaderboard_role", Role) if hasattr(web, "RequestKey") else "leaderboard_role"


class ApiKeyMissing(DomainError):
    status = 401
    code = "api_key_missing"


class ApiKeyInvalid(DomainError):
    status = 401
    code = "api_key_invalid"


class ServerKeyRequired(DomainError):
    status = 403
    code = "server_key_required"


def requires(access: Access) -> Callable[[H], H]:
    """Mark a handler with what it needs; unmarked handlers need the client key."""

    def mark(handler: H) -> H:
        setattr(handler, _ACCESS_ATTRIBUTE, access)
        return handler

    return mark


def access_of(request: web.Request) -> Access:
    if request.path in OPEN_PATHS:
        return Access.OPEN
    handler = request.match_info.route.handler
    return getattr(handler, _ACCESS_ATTRIBUTE, Access.CLIENT)


def role(request: web.Request) -> Role:
    """The caller's role; CLIENT when the middleware did not run (never more than granted)."""
    value = request.get(_ROLE)
    return value if isinstance(value, Role) else Role.CLIENT


def is_server(request: web.Request) -> bool:
    return role(request) is Role.SERVER


def _digest(key: str) -> bytes:
    # A presented key may hold any byte a client sent (surrogates included); it can only match
    # a configured key, which is visible ASCII, when it is too.
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def _read_key(source: SecretStr | Path | None, *, name: str) -> str | None:
    """The key, checked; a ``ConfigError`` naming the setting (never printing the key) otherwise."""
    if source is None:
        return None
    if isinstance(source, SecretStr):
        value, setting, origin = source.get_secret_value().strip(), f"auth.{name}", "the key"
    else:
        setting, origin = f"auth.{name}_file", str(source)
        try:
            with open(source, encoding="utf-8") as handle:
                value = handle.read().strip()
        except OSError as exc:
            raise ConfigError(setting, f"cannot read {source}: {exc.strerror or exc}",
                              "mount the Secret there or fix the path") from None
    if len(value) < MIN_KEY_LENGTH:
        raise ConfigError(setting, f"{origin} has {len(value)} characters; an API key needs at least {MIN_KEY_LENGTH}",
                          "generate one with `openssl rand -hex 32`")
    if not all("\x21" <= char <= "\x7e" for char in value):
        raise ConfigError(setting, f"{origin} holds characters other than visible ASCII (a key travels in a header)",
                          "generate one with `openssl rand -hex 32`")
    return value


@dataclass(frozen=True, slots=True)
class ApiKeys:
    """The configured keys, as digests; both None means the API is open."""

    server: bytes | None = None
    client: bytes | None = None

    @classmethod
    def load(cls, settings: AuthSettings) -> ApiKeys:
        sources = settings.key_sources()
        server = _read_key(sources["server_key"], name="server_key")
        client = _read_key(sources["client_key"], name="client_key")
        if server is not None and server == client:
            raise ConfigError("auth.client_key", "the server key and the client key must differ",
                              "give the client a key of its own")
        return cls(server=_digest(server) if server else None, client=_digest(client) if client else None)

    @classmethod
    def of(cls, *, server: str | None = None, client: str | None = None) -> ApiKeys:
        """Keys given directly (tests, embedding)."""
        return cls(server=_digest(server) if server else None, client=_digest(client) if client else None)

    @property
    def enabled(self) -> bool:
        return self.server is not None or self.client is not None

    def role_of(self, key: str) -> Role | None:
        given = _digest(key)
        # Both comparisons always run: the timing does not tell which key (if any) matched.
        is_server = hmac.compare_digest(given, self.server or b"")
        is_client = hmac.compare_digest(given, self.client or b"")
        if is_server and self.server is not None:
            return Role.SERVER
        if is_client and self.client is not None:
            return Role.CLIENT
        return None


def presented_key(request: web.Request) -> str | None:
    """The key the request carries: ``Authorization: Bearer KEY``, else ``X-Api-Key``.

    A Bearer header wins over ``X-Api-Key`` (a wrong one is not rescued by the other); an
    ``Authorization`` of another scheme (a proxy's Basic credentials) defers to ``X-Api-Key``
    when there is one, and is refused when there is not.
    """
    header = request.headers.get("Authorization")
    api_key = (request.headers.get("X-Api-Key") or "").strip()
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() == "bearer":
            if not value.strip():
                raise ApiKeyInvalid("the Authorization header holds no key: send Authorization: Bearer KEY",
                                    field=FIELD)
            return value.strip()
        if not api_key:
            raise ApiKeyInvalid("send the key as Authorization: Bearer KEY (or X-Api-Key: KEY)", field=FIELD)
    return api_key or None


def _refuse(error: DomainError) -> web.Response:
    headers = {"WWW-Authenticate": REALM} if error.status == 401 else None
    return json_response(error_json(error), status=error.status, headers=headers)


def auth_middleware(keys: ApiKeys) -> Middleware:
    """Check the caller's key against what the matched route needs, and record its role."""

    @web.middleware
    async def check_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not keys.enabled:
            request[_ROLE] = Role.SERVER
            return await handler(request)
        access = access_of(request)
        if access is Access.OPEN or request.match_info.http_exception is not None:
            return await handler(request)  # open, or a 404/405 that reveals nothing
        try:
            key = presented_key(request)
            if key is None:
                raise ApiKeyMissing("this operation needs an API key: send Authorization: Bearer KEY", field=FIELD)
            caller = keys.role_of(key)
            if caller is None:
                raise ApiKeyInvalid("the API key is not valid", field=FIELD)
            if access is Access.SERVER and caller is not Role.SERVER:
                raise ServerKeyRequired("this operation needs the server key", field=FIELD)
        except DomainError as error:
            return _refuse(error)
        request[_ROLE] = caller
        return await handler(request)

    return check_key


def warn_if_open(keys: ApiKeys, *, node: str) -> None:
    if not keys.enabled:
        log.warning("client_api_open", extra={
            "node": node,
            "hint": "no API keys are configured: anyone who reaches the client port may create, write and delete; "
                    "set auth.server_key_file and auth.client_key_file",
        })
