"""A webhook receiver for tests: a small HTTP server on 127.0.0.x in the test process.

It records every POST it reads (when, its headers, its body) and answers 200. A test can take
it down (``stop``: nothing listens on its address any more, connections are refused) and bring
it back on the same address (``start``), or hold requests (``hold``): each is read and
recorded, then left without an answer until ``release`` (a delivery in flight).
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from .harness import free_port, loopback_host


@dataclass(frozen=True)
class Delivery:
    received_at: float
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def key(self) -> str:
        return self.headers["Idempotency-Key"]


class Receiver:
    def __init__(self) -> None:
        self.host = loopback_host()
        self.port = free_port(self.host)
        self.deliveries: list[Delivery] = []
        self.holding = threading.Event()  # set: requests wait for release
        self.held = threading.Event()  # set once a request is being held
        self._released = threading.Event()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hooks/leaderboard"

    def start(self) -> Receiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.deliveries.append(Delivery(time.time(), dict(self.headers.items()), body))
                if receiver.holding.is_set():
                    receiver.held.set()
                    receiver._released.wait(30)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender went away while the request was held

            def log_message(self, *args: Any) -> None:
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self._server = http.server.ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def hold(self) -> None:
        self._released.clear()
        self.held.clear()
        self.holding.set()

    def release(self) -> None:
        self.holding.clear()
        self._released.set()

    def received(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)

    def unique(self) -> list[Delivery]:
        """The deliveries a receiver keeps after dropping duplicates by idempotency key: the first of each."""
        seen: set[str] = set()
        kept = []
        for delivery in self.received():
            if delivery.key not in seen:
                seen.add(delivery.key)
                kept.append(delivery)
        return kept
