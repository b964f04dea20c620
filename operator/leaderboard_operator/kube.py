"""
A deliberately small async client of the Kubernetes API.

Kopf is not a client library: it watches and patches the resources it serves, and leaves the
children to the operator. This module does the rest with aiohttp -- get, list, create,
merge-patch and delete of plain JSON objects -- and nothing else: no models, no discovery, no
retries (kopf retries the handlers instead, see :class:`kopf.TemporaryError`).

Authentication follows kopf's: the operator's login handler gives the same
:class:`kopf.ConnectionInfo` to kopf (by returning it) and to this client (:meth:`Kube.use`),
and kopf calls the login handler again when the credentials stop working, which refreshes the
client too. The client does not wait for that: on a 401, it logs in again itself (``relogin``,
set by the login handler) and retries the request once. The session is built with ConnectionInfo's own helpers (SSL context, auth
headers), so the two behave the same.

Caveats:

* Only JSON merge patches (RFC 7386) are sent: lists are replaced as a whole, ``None`` removes
  a key. Strategic merge and server-side apply are not used (nor emulated by test servers).
* ``list()`` filters by labels on the server (``labelSelector``) and again locally, so that the
  result is exact even behind an API (or an emulator) that ignores the selector.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import kopf
from kubernetes.client.exceptions import (
    ApiException,
    BadRequestException,
    ConflictException,
    ForbiddenException,
    NotFoundException,
    ServiceException,
    UnauthorizedException,
    UnprocessableEntityException,
)

from leaderboard_operator.resources import Resource

MERGE_PATCH = "application/merge-patch+json"

Relogin = Callable[[], Awaitable["kopf.ConnectionInfo | None"]]


class ApiError(ApiException):
    """An error answer of the API server (or no answer at all: status 0).

    The errors are the ``kubernetes`` package's own types (:class:`ApiException` and, by
    status, :class:`NotFoundException`, :class:`ConflictException`...), so that code written
    against that package catches them too; ``reason`` is the API's (``NotFound``, ``Invalid``...)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(status=status, reason=reason)
        self.message = message

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.message}"

    @property
    def retriable(self) -> bool:
        """Whether retrying the same request later may succeed."""
        return self.status in (0, 401, 403, 404, 409, 429) or self.status >= 500


class BadRequest(ApiError, BadRequestException):
    pass


class Unauthorized(ApiError, UnauthorizedException):
    pass


class Forbidden(ApiError, ForbiddenException):
    pass


class NotFound(ApiError, NotFoundException):
    pass


class Conflict(ApiError, ConflictException):
    pass


class Invalid(ApiError, UnprocessableEntityException):
    pass


class ServerError(ApiError, ServiceException):
    pass


class NotConnected(ApiError):
    def __init__(self) -> None:
        super().__init__(0, "NotConnected", "no credentials yet: the login handler has not run")


_BY_STATUS: dict[int, type[ApiError]] = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound,
                                          409: Conflict, 422: Invalid}


class Kube:
    """An API client bound to the credentials of the latest login (see :meth:`use`)."""

    def __init__(self, *, timeout: float = 10.0, user_agent: str = "leaderboard-operator") -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._user_agent = user_agent
        self._info: kopf.ConnectionInfo | None = None
        self._session: aiohttp.ClientSession | None = None
        self._stale: list[aiohttp.ClientSession] = []
        self.relogin: Relogin | None = None

    @property
    def server(self) -> str | None:
        return self._info.server.rstrip("/") if self._info is not None else None

    def use(self, info: kopf.ConnectionInfo) -> None:
        """Switch to new credentials; the current session closes on the next request."""
        if info == self._info:
            return
        self._info = info
        if self._session is not None:
            self._stale.append(self._session)
            self._session = None

    async def close(self) -> None:
        sessions, self._stale = self._stale, []
        if self._session is not None:
            sessions.append(self._session)
            self._session = None
        for session in sessions:
            await session.close()

    async def _get_session(self) -> aiohttp.ClientSession:
        if self._stale:
            stale, self._stale = self._stale, []
            for session in stale:
                await session.close()
        if self._info is None:
            raise NotConnected()
        if self._session is None or self._session.closed:
            info = self._info
            headers = dict(info.as_http_headers())  # bearer token or basic auth
            headers.setdefault("User-Agent", self._user_agent)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=info.as_ssl_context()),
                headers=headers,
                proxy=info.proxy_url,
                trust_env=info.trust_env,
                timeout=self._timeout,
            )
        return self._session

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if body is not None else {}
        for attempt in (1, 2):
            session = await self._get_session()
            assert self.server is not None
            try:
                async with session.request(method, self.server + path, params=params, data=data,
                                           headers=headers) as response:
                    text = await response.text()
                    status = response.status
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise ApiError(0, type(exc).__name__, str(exc) or repr(exc)) from exc
            if status == 401 and attempt == 1 and self.relogin is not None:
                info = await self.relogin()
                if info is not None and info != self._info:
                    self.use(info)
                    continue
            if status >= 400:
                raise _error(status, text)
            return json.loads(text) if text else None
        raise AssertionError("unreachable")  # pragma: no cover

    async def get(self, resource: Resource, *, namespace: str | None, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", resource.url(namespace=namespace, name=name))
        return result

    async def list(
        self, resource: Resource, *, namespace: str | None, labels: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        params = {"labelSelector": ",".join(f"{k}={v}" for k, v in labels.items())} if labels else None
        result = await self._request("GET", resource.url(namespace=namespace), params=params)
        items: list[dict[str, Any]] = list((result or {}).get("items") or [])
        if labels:
            items = [item for item in items if _has_labels(item, labels)]
        return items

    async def create(self, resource: Resource, body: Mapping[str, Any]) -> dict[str, Any]:
        namespace = body.get("metadata", {}).get("namespace")
        result: dict[str, Any] = await self._request("POST", resource.url(namespace=namespace), body=body)
        return result

    async def patch(
        self, resource: Resource, *, namespace: str | None, name: str, patch: Mapping[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        path = resource.url(namespace=namespace, name=name, subresource=subresource)
        result: dict[str, Any] = await self._request("PATCH", path, body=patch, content_type=MERGE_PATCH)
        return result

    async def delete(self, resource: Resource, *, namespace: str | None, name: str) -> bool:
        """Delete an object (children are collected in the background); False if it was absent."""
        try:
            await self._request("DELETE", resource.url(namespace=namespace, name=name),
                                params={"propagationPolicy": "Background"})
        except NotFound:
            return False
        return True


def _has_labels(obj: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    actual = (obj.get("metadata") or {}).get("labels") or {}
    return all(actual.get(key) == value for key, value in labels.items())


def _error(status: int, text: str) -> ApiError:
    try:
        payload = json.loads(text)
    except ValueError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    error_class = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    reason = str(payload.get("reason") or error_class.__name__)
    message = str(payload.get("message") or text[:200])
    return error_class(status, reason, message)
