"""The client: one keep-alive HTTP connection, JSON in and out, errors as ``ApiError``.

``api_key`` is sent as ``Authorization: Bearer KEY`` (the client key for reads and ordinary
writes, the server key for creating and deleting). An ``https://`` URL uses TLS, verified
against the system's trust store or against ``ssl_context`` (for example one made with
``ssl.create_default_context(cafile=...)`` for a private CA).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlencode, urlsplit


class ApiError(Exception):
    """A 4xx or 5xx answer: ``status``, and the body's ``code``, ``field`` and ``message``."""

    def __init__(self, status: int, body: Any) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        self.status = status
        self.code: str = error.get("code", "http_error")
        self.field: str | None = error.get("field")
        self.message: str = error.get("message", str(body))
        self.body = body
        super().__init__(f"{status} {self.code}: {self.message}" + (f" (field {self.field})" if self.field else ""))


class LeaderboardClient:
    def __init__(self, url: str, *, timeout: float = 10.0, api_key: str | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        self.url = f"{parts.scheme}://{parts.netloc}"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = parts.scheme == "https"
        self._timeout = timeout
        self._api_key = api_key
        self._ssl_context = ssl_context
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> LeaderboardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._tls:
                self._conn = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout,
                                                         context=self._ssl_context)
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        return self._conn

    def request_raw(self, method: str, path: str, body: bytes | None = None,
                    headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        all_headers = {"Content-Type": "application/json"} if body is not None else {}
        if self._api_key:
            all_headers["Authorization"] = f"Bearer {self._api_key}"
        all_headers.update(headers or {})
        for attempt in (1, 2):  # a keep-alive connection the server closed is retried once
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=all_headers)
                response = conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    http.client.CannotSendRequest, http.client.ResponseNotReady, socket.timeout):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def request(self, method: str, path: str, payload: Any = None, *, query: dict[str, Any] | None = None) -> Any:
        if query:
            clean = {k: v for k, v in query.items() if v is not None}
            if clean:
                path = f"{path}?{urlencode(clean, doseq=True)}"
        body = None if payload is None else json.dumps(payload).encode()
        status, raw = self.request_raw(method, path, body)
        try:
            data = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            data = raw.decode(errors="replace")
        if status >= 400:
            raise ApiError(status, data)
        return data

    # -------------------------------------------------------------------- leaderboards

    def create_leaderboard(self, leaderboard_id: str, **settings: Any) -> dict[str, Any]:
        return self.request("POST", "/v1/leaderboards", {"id": leaderboard_id, **settings})

    def create_tournament(self, tournament_id: str, **settings: Any) -> dict[str, Any]:
        return self.request("POST", "/v1/tournaments", {"id": tournament_id, **settings})

    def get_leaderboard(self, leaderboard_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/leaderboards/{quote(leaderboard_id, safe='')}")

    def list_leaderboards(self, *, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        return self.request("GET", "/v1/leaderboards", query={"limit": limit, "cursor": cursor})

    def list_tournaments(self, **filters: Any) -> dict[str, Any]:
        return self.request("GET", "/v1/tournaments", query=filters)

    def delete_leaderboard(self, leaderboard_id: str) -> dict[str, Any]:
        return self.request("DELETE", f"/v1/leaderboards/{quote(leaderboard_id, safe='')}")

    def join_tournament(self, tournament_id: str, owner_id: str) -> dict[str, Any]:
        return self.request("POST", f"/v1/tournaments/{quote(tournament_id, safe='')}/join", {"owner_id": owner_id})

    # ------------------------------------------------------------------------- records

    def write_record(self, leaderboard_id: str, owner_id: str, score: int, **fields: Any) -> dict[str, Any]:
        return self.request("POST", f"/v1/leaderboards/{quote(leaderboard_id, safe='')}/records",
                            {"owner_id": owner_id, "score": score, **fields})

    def write_batch(self, leaderboard_id: str, records: Iterable[dict[str, Any]]) -> dict[str, Any]:
        return self.request("POST", f"/v1/leaderboards/{quote(leaderboard_id, safe='')}/records/batch",
                            {"records": list(records)})

    def records(self, leaderboard_id: str, *, limit: int | None = None, cursor: str | None = None,
                owner_ids: Iterable[str] | None = None, expiry: int | None = None) -> dict[str, Any]:
        owners = ",".join(owner_ids) if owner_ids else None
        return self.request("GET", f"/v1/leaderboards/{quote(leaderboard_id, safe='')}/records",
                            query={"limit": limit, "cursor": cursor, "owner_ids": owners, "expiry": expiry})

    def top(self, leaderboard_id: str, *, limit: int = 10) -> list[dict[str, Any]]:
        return self.records(leaderboard_id, limit=limit)["records"]

    def record(self, leaderboard_id: str, owner_id: str, *, expiry: int | None = None) -> dict[str, Any]:
        return self.request("GET", f"/v1/leaderboards/{quote(leaderboard_id, safe='')}/records/"
                            f"{quote(owner_id, safe='')}", query={"expiry": expiry})

    def around(self, leaderboard_id: str, owner_id: str, *, limit: int = 10,
               expiry: int | None = None) -> dict[str, Any]:
        return self.request("GET", f"/v1/leaderboards/{quote(leaderboard_id, safe='')}/records/around/"
                            f"{quote(owner_id, safe='')}", query={"limit": limit, "expiry": expiry})

    def delete_record(self, leaderboard_id: str, owner_id: str) -> dict[str, Any]:
        return self.request("DELETE", f"/v1/leaderboards/{quote(leaderboard_id, safe='')}/records/"
                            f"{quote(owner_id, safe='')}")

    def digest(self, leaderboard_id: str, *, expiry: int | None = None) -> dict[str, Any]:
        return self.request("GET", f"/v1/leaderboards/{quote(leaderboard_id, safe='')}/digest",
                            query={"expiry": expiry})

    # ------------------------------------------------------------------------- cluster

    def cluster(self) -> dict[str, Any]:
        return self.request("GET", "/v1/cluster")

    def ready(self) -> bool:
        status, _ = self.request_raw("GET", "/readyz")
        return status == 200
