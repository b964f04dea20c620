"""Webhook deliveries: one signed JSON POST per event.

The body is the event exactly as ``GET /v1/events`` lists it. Each request carries:

* ``Leaderboard-Signature: t=<unix seconds>,v1=<hex>``, where ``<hex>`` is the HMAC-SHA256,
  keyed with the cluster's webhook secret, of ``f"{t}.".encode() + body`` (Stripe's scheme: the
  timestamp is signed with the body, so a receiver that refuses old timestamps refuses replays
  too). The README shows how a receiver checks it.
* ``Idempotency-Key`` (and ``Leaderboard-Event-Id``): the event's id, the same for every
  delivery of it, whichever node makes it and however often: receivers drop duplicates by it.
* ``Leaderboard-Event-Kind``: ``leaderboard_reset``, ``tournament_reset`` or ``tournament_end``.

A delivery succeeds on any 2xx answer. Anything else (another status, a refused or reset
connection, no answer within ``events.webhook_timeout``) is a ``DeliveryFailed`` that the
caller retries; redirects are not followed (a 3xx is a failure: configure the final URL).
"""

from __future__ import annotations

import hashlib
import hmac
import time

import aiohttp

from ..version import VERSION

SIGNATURE_HEADER = "Leaderboard-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
EVENT_ID_HEADER = "Leaderboard-Event-Id"
EVENT_KIND_HEADER = "Leaderboard-Event-Kind"
SIGNATURE_SCHEME = "v1"


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Leaderboard-Signature`` header value of ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},{SIGNATURE_SCHEME}={digest}"


class DeliveryFailed(Exception):
    """A delivery the receiver did not acknowledge with a 2xx; retried."""


class WebhookClient:
    def __init__(self, *, secret: str, timeout: float) -> None:
        self.secret = secret
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": f"leaderboard-node/{VERSION}", "Content-Type": "application/json"},
            )
        return self._session

    async def deliver(self, url: str, body: bytes, *, event_id: str, kind: str) -> int:
        """POST ``body`` to ``url``, signed; the answer's status, or ``DeliveryFailed``."""
        headers = {
            SIGNATURE_HEADER: signature(self.secret, body, int(time.time())),
            IDEMPOTENCY_HEADER: event_id,
            EVENT_ID_HEADER: event_id,
            EVENT_KIND_HEADER: kind,
        }
        try:
            async with self._client().post(url, data=body, headers=headers, allow_redirects=False) as response:
                await response.read()
                if not 200 <= response.status < 300:
                    raise DeliveryFailed(f"{url} answered {response.status}")
                return response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise DeliveryFailed(f"{url}: {type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
