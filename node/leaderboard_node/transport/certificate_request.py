"""A node's identity certificate from the Kubernetes CertificateSigningRequest API.

Pods of a StatefulSet share one template and one ServiceAccount, so no Secret can hold a
certificate for one pod only. Instead each node makes its own key (it never leaves the pod),
and asks the API for a certificate naming itself (``certificates.k8s.io/v1``, stable since
Kubernetes 1.19):

1. a CertificateSigningRequest to ``tls.certificate_request.signer_name`` for ``CN=<node name>``
   with the DNS name ``<node name>.<tls.peer_domain>``; the API server records who made it
   (``spec.username``, the pod's ServiceAccount, and ``spec.extra``, the pod's name and uid
   from its bound token), so the signer can tell that the pod asks for its own name;
2. the signer (the operator, ``leaderboard_operator.identity``) approves and signs it, or
   denies it and says why;
3. the node checks the certificate (its key, its name), writes the key and then the
   certificate (``tls.peer_key_file``, ``tls.peer_cert_file``, each replaced atomically) and
   has them loaded at once (:meth:`TlsFiles.check`);
4. it asks again when two thirds of the certificate's remaining life (from when it was
   written) have passed, with a new key.

At start, a certificate still in the files (a restarted container keeps its ``emptyDir``) is
used while it is fresh enough; otherwise the node waits for a new one before it opens its
peer port, and stays not ready meanwhile (``/readyz``: ``"reason": "certificate"``), logging
why: ``certificate_pending`` (nobody signed it yet: is the operator running?),
``certificate_denied`` (with the signer's reason), ``certificate_request_failed`` (the API
refused or could not be reached). A denied or failed request is made again after
``retry_interval``; a renewal that fails leaves the node on its current certificate and
is tried again the same way until that one expires.

Needs RBAC: ``create`` and ``get`` on ``certificatesigningrequests`` (cluster-scoped; the
operator binds it to the cluster's ServiceAccount).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from ..config import CertificateRequestSettings, KubernetesDiscoverySettings, TlsSettings
from .identity import IdentityPolicy, Pair, check_pair
from .kubernetes_discovery import KubernetesApi

log = logging.getLogger("leaderboard_node.certificate_request")

CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
USAGES = ("digital signature", "server auth", "client auth")
RENEW_AT = 2 / 3  # of the remaining life, from when the certificate was written
PENDING_LOG_EVERY = 30.0  # seconds between certificate_pending lines
POLL_INTERVAL = 1.0


class ApiUnavailable(Exception):
    """The Kubernetes API could not be reached, or answered 5xx or 429: try again soon."""


class RequestFailed(Exception):
    """The request was denied or failed, or the API refused it: try again after retry_interval."""


class StillPending(RequestFailed):
    """Nobody answered the request within pending_timeout: ask again at once."""


class CertificateRequester:
    def __init__(self, settings: CertificateRequestSettings, *, tls: TlsSettings, node: str,
                 api: KubernetesDiscoverySettings, on_written: Callable[[], object] = lambda: None) -> None:
        assert tls.peer_cert_file is not None and tls.peer_key_file is not None
        self.settings = settings
        self.node = node
        self.policy = IdentityPolicy(domain=tls.peer_domain)
        self.cert_file: Path = tls.peer_cert_file
        self.key_file: Path = tls.peer_key_file
        self.api = KubernetesApi(api)
        self.on_written = on_written
        self.renew_at: float | None = None  # Unix seconds
        self.issued = 0
        self.last_request: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ public

    async def obtain(self) -> None:
        """Return once the files hold a fresh certificate of this node (waits as long as it takes)."""
        if self._fresh():
            log.info("certificate_reused", extra={"node": self.node, "renew_at": int(self.renew_at or 0)})
            return
        while True:
            try:
                await self._request()
                return
            except RequestFailed as exc:
                wait = 0.0 if isinstance(exc, StillPending) else self.settings.retry_interval
                log.warning("certificate_request_failed", extra={"node": self.node, "error": str(exc),
                                                                 "retry_in": wait})
                await asyncio.sleep(wait)

    def start(self) -> None:
        """Renew in the background from now on."""
        if self._task is None:
            self._task = asyncio.create_task(self._renewals(), name="certificate-renewal")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()

    # ----------------------------------------------------------------- renewal

    def _fresh(self) -> bool:
        """Whether the files hold this node's certificate, not yet due for renewal."""
        try:
            pair = Pair(self.cert_file.read_bytes(), self.key_file.read_bytes())
            certificate = check_pair(pair, node=self.node, policy=self.policy, what=str(self.cert_file))
            written = self.cert_file.stat().st_mtime
        except (OSError, ValueError):
            return False
        self.renew_at = renewal_time(written=written, not_after=certificate.not_valid_after_utc.timestamp())
        return time.time() < self.renew_at

    async def _renewals(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, (self.renew_at or time.time()) - time.time()))
            try:
                await self._request()
            except RequestFailed as exc:
                wait = 0.0 if isinstance(exc, StillPending) else self.settings.retry_interval
                log.warning("certificate_renewal_failed", extra={"node": self.node, "error": str(exc),
                                                                 "retry_in": wait})
                self.renew_at = time.time() + wait

    # ------------------------------------------------------------------ request

    async def _request(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.node)]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(self.policy.dns_name(self.node))]),
                              critical=False)
               .sign(key, hashes.SHA256()))
        body = {
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {"generateName": f"{self.node}-", "labels": {"app.kubernetes.io/name": "leaderboard-node"}},
            "spec": {
                "request": base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode(),
                "signerName": self.settings.signer_name,
                "usages": list(USAGES),
                "expirationSeconds": self.settings.expiration_seconds,
            },
        }
        created = await self._api("POST", CSR_PATH, body)
        request = str((created.get("metadata") or {}).get("name") or "")
        if not request:
            raise RequestFailed(f"the API answered the CertificateSigningRequest without a name: {created!r:.200}")
        self.last_request = request
        log.info("certificate_requested", extra={"node": self.node, "request": request,
                                                 "signer": self.settings.signer_name})
        chain = await self._wait(request)
        self._write(key, chain, request=request)

    async def _wait(self, request: str) -> bytes:
        started = logged = time.monotonic()
        while True:
            current = await self._api("GET", f"{CSR_PATH}/{request}")
            status = current.get("status") or {}
            for condition in status.get("conditions") or []:
                if condition.get("type") in ("Denied", "Failed") and condition.get("status", "True") == "True":
                    log.warning("certificate_denied", extra={
                        "node": self.node, "request": request, "condition": condition.get("type"),
                        "reason": condition.get("reason"), "detail": condition.get("message")})
                    raise RequestFailed(f"{request} was {condition.get('type', '').lower()}: "
                                        f"{condition.get('reason')}: {condition.get('message')}")
            if status.get("certificate"):
                try:
                    return base64.b64decode(status["certificate"], validate=True)
                except ValueError as exc:
                    raise RequestFailed(f"{request} holds a certificate that is not base64: {exc}") from None
            if time.monotonic() - started >= self.settings.pending_timeout:
                raise StillPending(f"{request} is still unanswered after {self.settings.pending_timeout:g} s; "
                                   "asking again")
            if time.monotonic() - logged >= PENDING_LOG_EVERY or (logged == started and
                                                                  time.monotonic() - started >= 10):
                logged = time.monotonic()
                log.warning("certificate_pending", extra={
                    "node": self.node, "request": request, "seconds": round(logged - started),
                    "signer": self.settings.signer_name,
                    "hint": "nobody approved or signed it yet: is the operator running? (kubectl get csr)"})
            await asyncio.sleep(POLL_INTERVAL)

    def _write(self, key: ec.EllipticCurvePrivateKey, chain: bytes, *, request: str) -> None:
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        try:
            certificate = check_pair(Pair(chain, key_pem), node=self.node, policy=self.policy,
                                     what=f"the certificate of {request}")
        except ValueError as exc:
            raise RequestFailed(str(exc)) from None
        # Key first, then certificate, with no await in between: TlsFiles runs on this loop, so it
        # never sees the new key beside the old certificate.
        _replace(self.key_file, key_pem, mode=0o600)
        _replace(self.cert_file, chain, mode=0o644)
        self.issued += 1
        self.renew_at = renewal_time(written=time.time(), not_after=certificate.not_valid_after_utc.timestamp())
        log.info("certificate_issued", extra={
            "node": self.node, "request": request, "serial": format(certificate.serial_number, "x"),
            "not_after": certificate.not_valid_after_utc.isoformat(), "renew_at": int(self.renew_at)})
        self.on_written()

    async def _api(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        session = self._session
        async for attempt in AsyncRetrying(retry=retry_if_exception_type(ApiUnavailable),
                                           wait=wait_exponential(multiplier=0.5, max=10), reraise=True):
            with attempt:
                try:
                    async with session.request(method, self.api.url + path, json=body, headers=self.api.headers(),
                                               ssl=self.api.ssl(), timeout=aiohttp.ClientTimeout(total=10)) as answer:
                        text = await answer.text()
                        status = answer.status
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                    _unavailable(f"{method} {path}: {exc!r}")
                if status >= 500 or status == 429:
                    _unavailable(f"{method} {path} answered {status}: {text[:200]}")
                if status >= 400:
                    raise RequestFailed(f"{method} {path} answered {status}: {text[:300]}")
                try:
                    answer_body: dict[str, Any] = json.loads(text)
                except ValueError as exc:
                    raise RequestFailed(f"{method} {path} answered no JSON: {exc}") from None
                return answer_body
        raise AssertionError("unreachable")  # pragma: no cover


def _unavailable(message: str) -> None:
    log.warning("certificate_request_failed", extra={"error": message, "hint": "retrying"})
    raise ApiUnavailable(message)


def renewal_time(*, written: float, not_after: float) -> float:
    """When to ask for the next certificate: two thirds into what was left of it when written."""
    return written + RENEW_AT * max(0.0, not_after - written)


def _replace(path: Path, data: bytes, *, mode: int) -> None:
    """Write ``path`` atomically (a reader sees the old file or the new one, never half of one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
