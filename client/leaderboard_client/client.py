"""The blocking client: one keep-alive HTTP connection, JSON in and out, errors as ``ApiError``.

``api_key`` is sent as ``Authorization: Bearer KEY`` (the client key for reads and ordinary
writes, the server key for creating and deleting). An ``https://`` URL uses TLS, verified
against the system's trust store or against ``ssl_context`` (for example one made with
``ssl.create_default_context(cafile=...)`` for a private CA). The operations themselves are
in ``operations.Operations``, shared with ``AsyncLeaderboardClient``.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .operations import ApiError, Operations

__all__ = ["ApiError", "LeaderboardClient", "Endpoint"]


class Endpoint:
    """Where a client connects, read from its URL (``host:port`` alone means http)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"{url!r}: only http:// and https:// URLs are served")
        self.url = f"{parts.scheme}://{parts.netloc}"
        self.host = parts.hostname or "127.0.0.1"
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)

    def headers(self, api_key: str | None) -> dict[str, str]:
        """Headers every request of a client carries."""
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class LeaderboardClient(Operations[Any]):
    """Every operation of the client API over one keep-alive connection, blocking::

        with LeaderboardClient("http://127.0.0.1:7350", api_key=key) as client:
            client.write_record("weekly", "player-1", score=100)
            page = client.top("weekly", limit=10)
    """

    def __init__(self, url: str, *, timeout: float = 10.0, api_key: str | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._endpoint = Endpoint(url)
        self.url = self._endpoint.url
        self._timeout = timeout
        self._headers = self._endpoint.headers(api_key)
        self._ssl_context = ssl_context
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> LeaderboardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            endpoint = self._endpoint
            if endpoint.tls:
                self._conn = http.client.HTTPSConnection(endpoint.host, endpoint.port, timeout=self._timeout,
                                                         context=self._ssl_context)
            else:
                self._conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=self._timeout)
        return self._conn

    def request_raw(self, method: str, path: str, body: bytes | None = None,
                    headers: dict[str, str] | None = None, *, timeout: float | None = None) -> tuple[int, bytes]:
        """Send one request as given; (status, body bytes), whatever the status."""
        all_headers = {"Content-Type": "application/json"} if body is not None else {}
        all_headers.update(self._headers)
        all_headers.update(headers or {})
        for attempt in (1, 2):  # a keep-alive connection the server closed is retried once
            conn = self._connection()
            try:
                conn.timeout = timeout or self._timeout
                if conn.sock is not None:
                    conn.sock.settimeout(conn.timeout)
                conn.request(method, path, body=body, headers=all_headers)
                response = conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    http.client.CannotSendRequest, http.client.ResponseNotReady, socket.timeout):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _then(self, result: Any, reshape: Callable[[Any], Any]) -> Any:
        return reshape(result)
