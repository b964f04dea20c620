"""Node identities: certificates that name their node, checked on every peer call, and the
certificate files read again when they change.

With ``tls.peer_identity`` a node's identity is the **DNS name (subjectAltName) of its
certificate**, issued under ``tls.ca_file``: ``NODE.<tls.peer_domain>``, or the node name
alone without a domain. A DNS name rather than the Common Name because that is what TLS
itself verifies when this node calls a peer (``server_hostname``: no certificate needs to be
read back from a connection, which aiohttp cannot do reliably), and with a domain the name is
unique beyond the cluster: the operator issues every cluster's certificates from one CA with
the pods' own DNS names (``POD.NAME-peers.NAMESPACE.svc``), so a pod of one cluster is no
member of another. Node names are then DNS labels (lower case letters, digits and ``-``, at
most 63), and peers must be named by discovery (static ``NAME=HOST:PORT``, or kubernetes).
Certificates must not carry wildcards (one would pass as any node when called).

What is checked, and what it means for what a node applies:

* **Pushes** (``POST /peer/v1/batch``): the peer port requires a client certificate, and a
  batch is accepted only when its origin's node name is the caller's. A node pushes only its
  own log, so a member can no longer write as another node. Anything else is a 403 that
  changes nothing, counted as ``origin_mismatch`` (or ``not_a_member`` when the certificate
  names no member of this cluster).
* **Pulls** (status, catch-up, full sync) go to the name discovery gives the peer, and TLS
  verifies that the peer's certificate carries that name; a status is then accepted only if
  the peer says it is that node (else the peer counts as unreachable, logged once).
* **Relayed entries** (what a catch-up or a full sync carries of other origins) cannot be
  checked against their origin: they are trusted because the member relaying them is a
  member, authenticated as itself. A member whose key is stolen can still forge entries of
  other origins that way; what identities rule out is a holder of the peer token (or a
  member) pushing under another node's name, and anyone without a certificate of the
  cluster's CA taking part at all.

Certificates rotate: :class:`TlsFiles` checks the certificate, key and CA files every
``tls.reload_interval`` seconds and loads new ones into the listening contexts (new
connections use them; open ones keep theirs) and into a fresh context for calls to peers.
A new pair is checked first (key and certificate belong together; with identities, it names
this node) and refused with a warning otherwise, keeping the previous one. Caveat: a CA
added to the bundle is trusted at once, but one removed from it stays trusted by the
listeners until the node restarts (an OpenSSL context only adds trust anchors).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..config import DNS_LABEL, ConfigError, TlsSettings, load_pem_pair

log = logging.getLogger("leaderboard_node.identity")

NOT_A_MEMBER = "not_a_member"
ORIGIN_MISMATCH = "origin_mismatch"


class NotAMember(Exception):
    """A certificate that names no member of this cluster."""


@dataclass(frozen=True, slots=True)
class IdentityPolicy:
    """How node names and certificate names map, in one cluster (``tls.peer_domain``)."""

    domain: str | None = None

    def dns_name(self, node: str) -> str:
        """The name a certificate of ``node`` carries."""
        return node if self.domain is None else f"{node}.{self.domain}"

    def names(self, dns_names: Iterable[str]) -> set[str]:
        """The node names among a certificate's DNS names."""
        found = set()
        for name in dns_names:
            name = name.lower()
            if self.domain is not None:
                suffix = "." + self.domain.lower()
                if not name.endswith(suffix):
                    continue
                name = name[:-len(suffix)]
            if DNS_LABEL.fullmatch(name):
                found.add(name)
        return found

    def member(self, peercert: Mapping[str, Any] | None) -> str:
        """The node name of a caller's verified certificate; ``NotAMember`` otherwise."""
        dns_names = [value for key, value in (peercert or {}).get("subjectAltName", ()) if key == "DNS"]
        names = self.names(dns_names)
        if len(names) != 1:
            where = f"*.{self.domain}" if self.domain else "a node name"
            raise NotAMember(f"its certificate must carry exactly one DNS name {where}; it carries {dns_names}")
        return names.pop()


def check_node_name(node: str, *, setting: str) -> None:
    if not DNS_LABEL.fullmatch(node):
        raise ConfigError(setting, f"{node!r} is not a DNS label; with tls.peer_identity a node name is part of a "
                                   "certificate's DNS name", "use lower case letters, digits and '-' (at most 63)")


def peercert_of(transport: Any) -> Mapping[str, Any] | None:
    """The verified certificate of a connection's other end (None on plain HTTP)."""
    if transport is None:
        return None
    cert = transport.get_extra_info("peercert")
    return cert if isinstance(cert, Mapping) else None


# ----------------------------------------------------------------------------- files


@dataclass(frozen=True, slots=True)
class Pair:
    cert: bytes
    key: bytes


def dns_names_of(certificate: x509.Certificate) -> list[str]:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [str(name) for name in extension.value.get_values_for_type(x509.DNSName)]


def check_pair(pair: Pair, *, node: str | None, policy: IdentityPolicy | None, what: str) -> x509.Certificate:
    """The first certificate of a chain, once it is known to go with the key (and, given
    ``node``, to name that node, and only it); ``ValueError`` saying what is wrong otherwise."""
    try:
        certificate = x509.load_pem_x509_certificate(pair.cert)
        key = serialization.load_pem_private_key(pair.key, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what} is not a PEM certificate and its unencrypted PEM key: {exc}") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if certificate.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise ValueError(f"{what}: the key is not the certificate's")
    if node is not None and policy is not None:
        names = policy.names(dns_names_of(certificate))
        if names != {node}:
            raise ValueError(f"{what} names {sorted(names) or 'no node'} (DNS names {dns_names_of(certificate)}), "
                             f"but this node is {node!r} ({policy.dns_name(node)})")
    return certificate


def _digest(*paths: Path | None) -> str:
    digest = hashlib.sha256()
    for path in paths:
        if path is not None:
            try:
                digest.update(path.read_bytes())
            except OSError:
                digest.update(b"\0missing")
        digest.update(b"\0")
    return digest.hexdigest()


class TlsFiles:
    """The TLS contexts of a node, made from its certificate files and kept up with them."""

    def __init__(self, settings: TlsSettings, *, node: str,
                 on_client_context: Callable[[ssl.SSLContext | None], None] = lambda context: None) -> None:
        self.settings = settings
        self.node = node
        self.on_client_context = on_client_context
        self.policy = IdentityPolicy(domain=settings.peer_domain) if settings.peer_identity else None
        self.client_port: ssl.SSLContext | None = None
        self.peer_server: ssl.SSLContext | None = None
        self.peer_client: ssl.SSLContext | None = None
        self.not_after: float | None = None  # of the peer certificate (Unix seconds)
        self.reloads = 0
        self._digest = ""
        self._task: asyncio.Task[None] | None = None

    def _files(self) -> tuple[Path | None, ...]:
        tls = self.settings
        return (tls.cert_file, tls.key_file, *(tls.peer_pair or (None, None)), tls.ca_file)

    def load_client_port(self) -> ssl.SSLContext | None:
        """The client port's context (at start: a ``ConfigError`` names what is wrong)."""
        self.client_port = self.settings.server_context()
        return self.client_port

    def load_peer(self) -> None:
        """The peer port's contexts, once its certificate is there (a ``ConfigError`` otherwise)."""
        tls = self.settings
        if tls.peer_identity:
            check_node_name(self.node, setting="node.name")
        self._digest = _digest(*self._files())
        self.peer_server = tls.peer_server_context()
        self.peer_client = tls.peer_client_context()
        pair = tls.peer_pair
        if pair is not None:
            setting = "tls.peer_cert_file" if tls.peer_cert_file else "tls.cert_file"
            try:
                certificate = check_pair(Pair(pair[0].read_bytes(), pair[1].read_bytes()), node=self.node,
                                         policy=self.policy, what=str(pair[0]))
            except (OSError, ValueError) as exc:
                raise ConfigError(setting, str(exc), "give the node a certificate of its own name") from None
            self.not_after = certificate.not_valid_after_utc.timestamp()
        self.on_client_context(self.peer_client)

    def check(self) -> bool:
        """Load the files again if they changed; whether new ones were loaded."""
        digest = _digest(*self._files())
        if digest == self._digest:
            return False
        tls = self.settings
        try:
            pairs: dict[str, Pair] = {}
            if tls.cert_file is not None and tls.key_file is not None:
                pairs["client"] = Pair(tls.cert_file.read_bytes(), tls.key_file.read_bytes())
                check_pair(pairs["client"], node=None, policy=None, what=str(tls.cert_file))
            peer = tls.peer_pair
            certificate = None
            if peer is not None:
                pairs["peer"] = Pair(peer[0].read_bytes(), peer[1].read_bytes())
                certificate = check_pair(pairs["peer"], node=self.node, policy=self.policy, what=str(peer[0]))
            for pair in pairs.values():  # what OpenSSL takes into a scratch context, it takes into a live one
                load_pem_pair(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), pair.cert, pair.key)
            client = tls.peer_client_context()  # also checks the CA bundle
            ca = tls.ca_file.read_bytes().decode("ascii") if tls.ca_file is not None else None
        except (OSError, ValueError, ConfigError, ssl.SSLError) as exc:
            log.warning("tls_reload_refused", extra={
                "node": self.node, "error": str(exc),
                "hint": "kept the certificate in use; the files are checked again in "
                        f"{tls.reload_interval:g} s"})
            return False
        # Only now the live listeners' contexts: the same bytes that were checked.
        if self.client_port is not None and "client" in pairs:
            load_pem_pair(self.client_port, pairs["client"].cert, pairs["client"].key)
        if self.peer_server is not None and "peer" in pairs:
            if tls.peer_identity and ca is not None:
                self.peer_server.load_verify_locations(cadata=ca)
            load_pem_pair(self.peer_server, pairs["peer"].cert, pairs["peer"].key)
        self.peer_client = client
        self.on_client_context(client)
        self._digest = digest
        self.reloads += 1
        if certificate is not None:
            self.not_after = certificate.not_valid_after_utc.timestamp()
        log.info("tls_reloaded", extra={
            "node": self.node, "serial": None if certificate is None else format(certificate.serial_number, "x"),
            "not_after": None if certificate is None else certificate.not_valid_after_utc.isoformat()})
        return True

    def start(self) -> None:
        if self._task is None and (self.client_port is not None or self.peer_server is not None):
            self._task = asyncio.create_task(self._watch(), name="tls-files")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_interval)
            try:
                self.check()
            except Exception:  # pragma: no cover - a reload must never stop the watch
                log.exception("tls_reload_failed", extra={"node": self.node})

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

