"""Node settings: one model, three sources.

Every setting has a default here, may be set in a YAML file (``--config FILE``), and may be
overridden by an environment variable named ``LEADERBOARD_`` plus the setting's path in upper
case with ``__`` between levels (``LEADERBOARD_CLUSTER__LEADERBOARD_SYNC__BATCH_SIZE=200``).
Command-line flags override both. This is how a pod gets its settings: the operator renders a
ConfigMap with the YAML file and sets per-pod values (name, advertised address) as env vars.

Secrets (peer token, API keys) are read from files named here, never from the command line.

A setting the node cannot start with is a ``ConfigError``: it names the setting, what is
wrong and how to fix it, and ``leaderboard-node`` prints it on one line and exits with
``EXIT_BAD_CONFIG``. Settings that no longer do anything are accepted in old files and
environments with a ``DeprecatedSetting`` warning (logged at start) rather than refused.
"""

from __future__ import annotations

import contextlib
import os
import re
import ssl
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

ENV_PREFIX = "LEADERBOARD_"
DEFAULT_CLIENT_PORT = 7350
DEFAULT_PEER_PORT = 7351
MIN_KEY_LENGTH = 16  # client API keys; checked where they are read (transport.auth)
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # a node name with tls.peer_identity


class ConfigError(ValueError):
    """A setting the node cannot start with: which one, what is wrong, how to fix it."""

    def __init__(self, setting: str, problem: str, fix: str) -> None:
        super().__init__(f"{setting}: {problem}; {fix}")
        self.setting = setting
        self.problem = problem
        self.fix = fix


class DeprecatedSetting(UserWarning):
    """A setting that does nothing any more: accepted, ignored, and reported at start."""


def _drop_deprecated(data: Any, section: str, names: dict[str, str]) -> Any:
    """``data`` less the deprecated ``names`` (name: why it is gone), each one warned about."""
    if isinstance(data, dict):
        for name, why in names.items():
            if name in data:
                data = {k: v for k, v in data.items() if k != name}
                warnings.warn(f"{section}.{name} is deprecated and ignored: {why}; remove it",
                              DeprecatedSetting, stacklevel=2)
    return data


class _Section(BaseModel):
    # hide_input_in_errors: a mistyped setting must not print a secret in its error
    model_config = ConfigDict(extra="forbid", validate_assignment=True, hide_input_in_errors=True)


class NodeSettings(_Section):
    name: str = Field(default_factory=lambda: os.uname().nodename, min_length=1, max_length=200,
                      pattern=r"^[^@\s\x00]+$",
                      description="Unique node name in the cluster (no '@', no spaces).")
    listen: str = Field(f"127.0.0.1:{DEFAULT_CLIENT_PORT}", description="HOST:PORT of the client REST API.")
    peer_listen: str = Field(f"127.0.0.1:{DEFAULT_PEER_PORT}", description="HOST:PORT of the peer endpoint.")
    advertise_host: str | None = Field(None, description="Host peers use to reach this node (default: the peer_listen host).")
    data_dir: Path | None = Field(None, description="Directory for the node's log and snapshots; none keeps state in memory only.")

    @field_validator("listen", "peer_listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        parse_host_port(value)
        return value


class LeaderboardSettings(_Section):
    blacklist_rank_cache: list[str] = Field(
        default_factory=list,
        description="Leaderboard ids or glob patterns (tournament_*, * for all) whose records carry no rank.",
    )
    bucket_retention: float = Field(
        86400.0, ge=0, description="Seconds a finished reset period stays readable with expiry= before it is trimmed."
    )
    trim_interval: float = Field(5.0, gt=0, description="Seconds between scans for expired buckets and tournament ends.")
    erasure_retention: float = Field(
        7 * 86400.0, ge=0, description="Seconds an owner erasure is kept: until then, a write made before it that "
        "arrives late stays void (longer than any partition you expect a node to heal from without a full sync).")


class LimitSettings(_Section):
    """Bounds on every input of the client API.

    Most are checked by the client API itself and refused with a 4xx JSON error naming the
    field. The last five bound the HTTP layer below it (request line, header sizes and count,
    idle connections, header time), before any handler runs. On the client port
    ``transport.http_server`` keeps them (414, 431 and 408 with a JSON error, the connection
    closed); on the peer port aiohttp does (``server_options()``; a plain-text 400) and
    ``transport.header_deadline`` keeps the header time. ``header_timeout`` also bounds a TLS
    handshake on the client port.
    """

    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 beyond).")
    body_timeout: float = Field(30.0, gt=0, description="Seconds a client has to send a request body (408 beyond).")
    max_batch_records: int = Field(10_000, ge=1, description="Most records in one batch write.")
    max_import_records: int = Field(200_000, ge=1, description="Most records in one bulk import request (its body "
                                                               "is bounded by max_body_bytes as well).")
    max_metadata_bytes: int = Field(16 * 1024, ge=2, description="Largest metadata object, serialized as JSON.")
    max_metadata_depth: int = Field(8, ge=1, description="Deepest nesting of metadata objects and arrays.")
    max_page_limit: int = Field(1000, ge=1, description="Largest limit= of a listing.")
    max_id_length: int = Field(128, ge=1, le=1024, description="Longest leaderboard or owner id.")
    max_owner_ids: int = Field(100, ge=1, description="Most owner_ids= in one records listing.")
    max_query_bytes: int = Field(4096, ge=256, description="Longest query string (414 beyond).")
    max_header_bytes: int = Field(8190, ge=1024, description="Longest request line or header line (HTTP layer).")
    max_headers: int = Field(64, ge=8, description="Most header lines in one request (HTTP layer).")
    idle_timeout: float = Field(75.0, gt=0, description="Seconds an idle keep-alive connection stays open.")
    header_timeout: float = Field(10.0, gt=0, description="Seconds a request may take from its first byte to the end "
                                                          "of its headers (408 and the connection closed beyond).")

    def server_options(self) -> dict[str, Any]:
        """Keyword arguments for ``aiohttp.web.AppRunner`` (passed on to each connection's parser)."""
        return {
            "max_line_size": self.max_header_bytes,
            "max_field_size": self.max_header_bytes,
            "max_headers": self.max_headers,
            "keepalive_timeout": self.idle_timeout,
        }


class LeaderboardSyncSettings(_Section):
    @model_validator(mode="before")
    @classmethod
    def _deprecated(cls, data: Any) -> Any:
        return _drop_deprecated(data, "cluster.leaderboard_sync", {
            "queue_size": "nothing is queued per peer (the backlog is the queue; see backlog_size)",
        })

    enabled: bool = Field(True, description="Replicate changes to peers.")
    batch_size: int = Field(1000, ge=1, le=100_000, description="Most entries in one batch sent to a peer (or pulled in one catch-up).")
    batch_timeout: float = Field(0.005, gt=0, le=10, description="Seconds a busy sender waits after its previous batch for the next to fill (an idle one sends at once).")
    compression: bool = Field(True, description="Compress batches (zstd).")
    blacklist_cache: list[str] = Field(
        default_factory=list, description="Glob patterns of leaderboards that keep no rank cache (see leaderboard.blacklist_rank_cache)."
    )
    backlog_size: int = Field(100_000, ge=1, description="Entries of each origin kept for incremental catch-up.")
    backlog_bytes: int = Field(64 * 1024 * 1024, ge=64 * 1024,
                               description="Bytes of serialized entries of each origin kept for incremental catch-up "
                                           "(whichever of this and backlog_size is reached first).")
    anti_entropy_interval: float = Field(1.0, gt=0, description="Seconds between version-vector and digest comparisons.")
    sync_chunk_records: int = Field(10_000, ge=1, description="Records in one chunk of a full sync.")
    bootstrap_timeout: float = Field(
        30.0, gt=0, description="Seconds a starting node waits for a ready peer to sync from before it serves alone.")
    flush_timeout: float = Field(10.0, ge=0, description="Seconds a stopping node waits for peers to receive its entries.")
    max_message_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Largest peer message accepted (413 beyond).")
    sync_stall_timeout: float = Field(
        10.0, gt=0, description="Seconds a full sync may go without a complete chunk before it is dropped and "
                                "another peer asked.")
    fold_delay: float = Field(
        30.0, ge=0, description="Seconds a dead life of a node (an earlier run of its process) must have stayed "
        "stable on every member before the slots it wrote are folded (an entry it sent that is still delayed in the "
        "network for longer than this may then be dropped).")
    faults: "FaultSettings" = Field(default_factory=lambda: FaultSettings(),
                                    description="For tests only: lose, repeat and reorder outgoing batches, "
                                                "serve snapshots in another format.")


class FaultSettings(_Section):
    drop: float = Field(0.0, ge=0, le=1, description="Share of batches lost (tests only).")
    duplicate: float = Field(0.0, ge=0, le=1, description="Share of batches delivered twice (tests only).")
    reorder: float = Field(0.0, ge=0, le=1, description="Share of batches delivered after the next one (tests only).")
    seed: int | None = Field(None, description="Seed of the fault generator.")
    sync_format: int | None = Field(None, ge=0, description="Format number written in the snapshots this node "
                                                           "serves, as a newer build would (tests only).")
    clock_offset: float = Field(0.0, description="Seconds added to this node's wall clock, as a node whose clock "
                                                 "is wrong would read it (tests only).")

    @property
    def active(self) -> bool:
        return self.drop > 0 or self.duplicate > 0 or self.reorder > 0


class StaticDiscoverySettings(_Section):
    peers: list[str] = Field(default_factory=list, description="Peers as NAME=HOST:PORT (or HOST:PORT).")

    @field_validator("peers")
    @classmethod
    def _peer_addresses(cls, peers: list[str]) -> list[str]:
        for peer in peers:
            name, sep, address = peer.rpartition("=")
            if sep and not name:
                raise ValueError(f"expected NAME=HOST:PORT, got {peer!r} (no name before '=')")
            try:
                parse_host_port(address)
            except ValueError:
                raise ValueError(f"expected NAME=HOST:PORT, got {peer!r}") from None
        return peers


class DnsDiscoverySettings(_Section):
    name: str = Field("", description="DNS name of the headless peer Service.")
    port: int = Field(DEFAULT_PEER_PORT, ge=1, le=65535, description="Peer port of the nodes the name resolves to.")
    interval: float = Field(5.0, gt=0, description="Seconds between lookups.")


class KubernetesDiscoverySettings(_Section):
    namespace: str | None = Field(None, description="Namespace of the pods (default: the pod's own).")
    label_selector: str = Field("", description="Label selector of the cluster's pods.")
    port: int = Field(DEFAULT_PEER_PORT, ge=1, le=65535, description="Peer port of the cluster's pods.")
    api_server: str | None = Field(
        None, description="URL of the Kubernetes API (default: in-cluster, from KUBERNETES_SERVICE_HOST/PORT).")
    token_file: Path = Field(Path("/var/run/secrets/kubernetes.io/serviceaccount/token"),
                             description="The ServiceAccount token (read again on every request: it rotates).")
    ca_file: Path | None = Field(Path("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"),
                                 description="CA bundle of the API server (none: the system's).")


class DiscoverySettings(_Section):
    mode: Literal["static", "dns", "kubernetes"] = Field(
        "static", description="static: the peers listed below (or --peers); dns: the addresses of a name; "
                              "kubernetes: pods listed by label through the API.")
    static: StaticDiscoverySettings = Field(default_factory=StaticDiscoverySettings)
    dns: DnsDiscoverySettings = Field(default_factory=DnsDiscoverySettings)
    kubernetes: KubernetesDiscoverySettings = Field(default_factory=KubernetesDiscoverySettings)


class ClusterSettings(_Section):
    discovery: DiscoverySettings = Field(default_factory=DiscoverySettings)
    leaderboard_sync: LeaderboardSyncSettings = Field(default_factory=LeaderboardSyncSettings)
    max_clock_offset: float = Field(
        0.5, gt=0, le=60, description="Seconds a node's wall clock may differ from its peers'. A peer timestamp further "
        "ahead does not move this node's clock; a node further off than this from most of its reachable peers "
        "reports not ready.")


class AuthSettings(_Section):
    """Secrets: the peer token and the two client API keys (see ``transport/auth.py``).

    Each key comes from a file (a mounted Kubernetes Secret) or from the environment
    (``LEADERBOARD_AUTH__SERVER_KEY``, ``LEADERBOARD_AUTH__CLIENT_KEY``), never from a flag.
    Environment values are parsed as YAML scalars like every other setting, so a key that
    looks like a number or a boolean must be quoted (``LEADERBOARD_AUTH__CLIENT_KEY='"0123"'``);
    an unquoted one is refused rather than silently turned into another string.
    No key at all leaves the client API open (local demos). A client key needs a server key:
    without one, nobody could create a leaderboard.

    Caveat: a pydantic error prints its input; ``Settings`` should set
    ``hide_input_in_errors=True`` so that a mistyped key never reaches a log.
    """

    peer_token_file: Path | None = Field(None, description="File holding the shared peer token.")
    server_key_file: Path | None = Field(
        None, description=f"File holding the server (admin) key (at least {MIN_KEY_LENGTH} characters).")
    client_key_file: Path | None = Field(
        None, description=f"File holding the client key (at least {MIN_KEY_LENGTH} characters).")
    server_key: SecretStr | None = Field(
        None, description=f"The server (admin) key itself, at least {MIN_KEY_LENGTH} visible ASCII characters "
                          "(openssl rand -hex 32 makes one); set it only through the environment, never in a file "
                          "checked in or on the command line.")
    client_key: SecretStr | None = Field(
        None, description=f"The client key itself, at least {MIN_KEY_LENGTH} visible ASCII characters, other than "
                          "the server key; set it only through the environment.")

    @field_validator("server_key", "client_key", mode="before")
    @classmethod
    def _key_is_text(cls, value: Any) -> Any:
        if value is None or isinstance(value, (str, SecretStr)):
            return value
        raise ValueError(f"an API key must be a string, got a {type(value).__name__}: quote it in "
                         "LEADERBOARD_AUTH__SERVER_KEY / LEADERBOARD_AUTH__CLIENT_KEY or the config file "
                         "(YAML reads 0123 as a number)")

    def key_sources(self) -> dict[str, SecretStr | Path | None]:
        """Where each key comes from, checked: one source per key, and no client key alone.

        Checked here rather than by a pydantic validator, whose error would print the input
        (the keys) to the log; ``transport.auth.ApiKeys.load`` calls it at start.
        """
        sources: dict[str, SecretStr | Path | None] = {}
        for name in ("server_key", "client_key"):
            inline, path = getattr(self, name), getattr(self, f"{name}_file")
            if inline is not None and path is not None:
                raise ConfigError(f"auth.{name}", f"auth.{name} and auth.{name}_file are both set", "keep one")
            sources[name] = inline if inline is not None else path
        if sources["client_key"] is not None and sources["server_key"] is None:
            raise ConfigError("auth.client_key", "a client key is configured without a server key",
                              "set auth.server_key_file (or LEADERBOARD_AUTH__SERVER_KEY) too")
        return sources


class CertificateRequestSettings(_Section):
    """Getting the peer certificate from the Kubernetes API (``transport/identity.py``).

    The node makes its own key, asks for a certificate naming itself with a
    CertificateSigningRequest (``certificates.k8s.io/v1``) to ``signer_name``, waits for the
    signer (the operator) to issue it, writes it to ``tls.peer_cert_file`` and
    ``tls.peer_key_file``, and renews it when two thirds of its life have passed. The API is
    reached as ``cluster.discovery.kubernetes`` says (its API server, token and CA files).
    """

    signer_name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9][-A-Za-z0-9_.]*$",
                             description="Signer of the CertificateSigningRequest (DOMAIN/NAME).")
    expiration_seconds: int = Field(86_400, ge=600, description="Lifetime asked for (the signer may issue less).")
    retry_interval: float = Field(30.0, gt=0, description="Seconds before a denied or failed request is made again.")
    pending_timeout: float = Field(60.0, gt=0, description="Seconds a request may stay unanswered before a new "
                                                           "one is made (the signer may have missed it).")


class TlsSettings(_Section):
    """TLS for the client port and the peer port, and the identities of peers.

    ``cert_file``/``key_file`` serve the client port and, unless ``peer`` is off, the peer
    port. ``peer_cert_file``/``peer_key_file`` give the peer port a certificate of its own
    (the node's identity certificate, which clients need not trust); with them alone the
    client port stays plain HTTP. ``ca_file`` is the bundle peers' certificates are checked
    against (default: the system's trust store); peers are reached by pod IP, so either their
    certificates carry IP SANs, or ``peer_server_name`` names what they carry, or
    ``peer_identity`` is on.

    ``peer_identity``: the peer port asks every caller for a client certificate issued under
    ``ca_file``, this node presents its own when it calls peers, and a node's identity is the
    DNS name of its certificate (``NODE.<peer_domain>``): a pushed batch is accepted only under
    the caller's own name, and a peer is called under the name discovery gives it and must
    say it is that node (see ``transport/identity.py``). The certificate files are read again
    when they change.
    """

    cert_file: Path | None = Field(None, description="PEM certificate chain of this node (TLS is on when set).")
    key_file: Path | None = Field(None, description="PEM private key of cert_file.")
    ca_file: Path | None = Field(None, description="PEM CA bundle that peers' certificates are verified against.")
    peer: bool = Field(True, description="Serve the peer port over TLS too (with cert_file), and call peers over https.")
    peer_cert_file: Path | None = Field(
        None, description="PEM certificate chain of the peer port and of this node's calls to peers "
                          "(default: cert_file); TLS on the peer port only when set alone.")
    peer_key_file: Path | None = Field(None, description="PEM private key of peer_cert_file.")
    peer_server_name: str | None = Field(
        None, description="Name expected in peers' certificates (default: the host of the peer's address; "
                          "not with peer_identity, which expects each peer's own name).")
    peer_identity: bool = Field(
        False, description="Peers prove their node names with certificates issued under ca_file (a DNS name "
                           "NODE.<peer_domain>); a peer pushes entries only under its own name. Node names are then "
                           "DNS labels, and discovery must name the peers (static NAME=HOST:PORT, or kubernetes).")
    peer_domain: str | None = Field(
        None, max_length=190, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        description="With peer_identity: the domain under which certificates name the nodes (none: the node name "
                    "alone); the operator sets NAME-peers.NAMESPACE.svc, the pods' DNS names.")
    certificate_request: CertificateRequestSettings | None = Field(
        None, description="Obtain peer_cert_file and peer_key_file from the Kubernetes CertificateSigningRequest API.")
    reload_interval: float = Field(5.0, gt=0, description="Seconds between checks of the certificate, key and CA "
                                                          "files for changes (new ones are used without a restart).")
    min_version: Literal["1.2", "1.3"] = Field("1.2", description="Oldest TLS version accepted.")

    @model_validator(mode="after")
    def _pair(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls.cert_file and tls.key_file go together")
        if (self.peer_cert_file is None) != (self.peer_key_file is None):
            raise ValueError("tls.peer_cert_file and tls.peer_key_file go together")
        if self.certificate_request is not None and self.peer_cert_file is None:
            raise ValueError("tls.certificate_request needs tls.peer_cert_file and tls.peer_key_file "
                             "(where the certificate and its key are written)")
        if self.peer_identity:
            if self.peer_server_name is not None:
                raise ValueError("tls.peer_server_name and tls.peer_identity exclude each other (with identities, "
                                 "each peer's certificate must carry its own name)")
            if self.ca_file is None:
                raise ValueError("tls.peer_identity needs tls.ca_file (the CA that issues the nodes' certificates)")
            if not self.peer_tls:
                raise ValueError("tls.peer_identity needs a peer certificate: tls.peer_cert_file and "
                                 "tls.peer_key_file (or tls.cert_file and tls.key_file with tls.peer)")
        return self

    @property
    def enabled(self) -> bool:
        """TLS on the client port."""
        return self.cert_file is not None

    @property
    def peer_tls(self) -> bool:
        """TLS on the peer port (and https to peers)."""
        return self.peer_cert_file is not None or (self.cert_file is not None and self.peer)

    @property
    def peer_pair(self) -> tuple[Path, Path] | None:
        """The certificate and key of the peer port, or None when it is plain HTTP."""
        if self.peer_cert_file is not None and self.peer_key_file is not None:
            return self.peer_cert_file, self.peer_key_file
        if self.peer and self.cert_file is not None and self.key_file is not None:
            return self.cert_file, self.key_file
        return None

    def minimum(self) -> ssl.TLSVersion:
        return ssl.TLSVersion.TLSv1_3 if self.min_version == "1.3" else ssl.TLSVersion.TLSv1_2

    def server_context(self) -> ssl.SSLContext | None:
        """The context of the client listener; None when it is plain HTTP."""
        if self.cert_file is None or self.key_file is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = self.minimum()
        load_pair(context, self.cert_file, self.key_file, setting="tls.cert_file")
        return context

    def peer_server_context(self) -> ssl.SSLContext | None:
        """The context of the peer listener (asking callers for certificates with peer_identity);
        None when the peer port is plain HTTP."""
        pair = self.peer_pair
        if pair is None:
            return None
        if self.peer_identity:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            load_verify(context, self.ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
        else:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = self.minimum()
        load_pair(context, *pair, setting="tls.peer_cert_file" if self.peer_cert_file else "tls.cert_file")
        return context

    def peer_client_context(self) -> ssl.SSLContext | None:
        """The context this node calls peers with (presenting its own certificate with
        peer_identity); None when the peer port is plain HTTP."""
        pair = self.peer_pair
        if pair is None:
            return None
        if self.ca_file is None:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)  # the system's store
        else:  # only this CA is trusted
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            load_verify(context, self.ca_file)
        context.minimum_version = self.minimum()
        if self.peer_identity:  # TLS checks each peer's name (server_hostname), and this node presents its own
            load_pair(context, *pair, setting="tls.peer_cert_file" if self.peer_cert_file else "tls.cert_file")
        return context


def load_pair(context: ssl.SSLContext, cert: Path, key: Path, *, setting: str) -> tuple[bytes, bytes]:
    """Load a certificate chain and its key into ``context``; the bytes loaded, for checks."""
    try:
        pair = Path(cert).read_bytes(), Path(key).read_bytes()
        load_pem_pair(context, *pair)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(setting, f"cannot load {cert} with {key}: {exc}",
                          "point it and its key setting at a PEM certificate chain and its key") from None
    return pair


def load_pem_pair(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """Load exactly these bytes (``ssl`` reads only files: in-memory ones where the OS has them,
    so a key never touches a disk and a file rewritten meanwhile cannot slip in)."""
    with _memory_file(cert) as cert_path, _memory_file(key) as key_path:
        context.load_cert_chain(cert_path, key_path)


@contextlib.contextmanager
def _memory_file(data: bytes) -> Iterator[str]:
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("leaderboard-tls", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory() as directory:  # private (0700): other systems
        path = Path(directory) / "pem"
        path.write_bytes(data)
        yield str(path)


def load_verify(context: ssl.SSLContext, ca_file: Path | None) -> bytes:
    try:
        data = Path(str(ca_file)).read_bytes()
        context.load_verify_locations(cadata=data.decode("ascii"))
    except (OSError, ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError("tls.ca_file", f"cannot load {ca_file}: {exc}",
                          "point tls.ca_file at a PEM bundle of CA certificates") from None
    return data


class DurabilitySettings(_Section):
    fsync: Literal["always", "everysec", "no"] = Field(
        "everysec",
        description="When the log is forced to disk: before each acknowledgement (always), once a second "
        "(everysec: a power loss can lose the last second), or when the OS decides (no).",
    )
    snapshot_interval: float = Field(300.0, gt=0, description="Seconds between snapshots (then the log is trimmed).")
    snapshot_log_bytes: int = Field(256 * 1024 * 1024, ge=4096,
                                    description="Log size that triggers a snapshot before the interval.")
    keep_snapshots: int = Field(2, ge=1, description="Snapshots kept; an unreadable one falls back to the one before.")


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Least severe level logged.")
    format: Literal["json", "text"] = Field(
        "json", description="json: one JSON object per line; text: time, level, logger, event, then key=value "
                            "for every other field.")


class WebhookSettings(_Section):
    url: str = Field(..., description="Where every event is POSTed: an absolute http:// or https:// URL.")
    name: str | None = Field(None, min_length=1, max_length=64,
                             description="A label for this webhook in metrics and logs (default: the URL's host).")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from .domain.errors import InvalidArgument
        from .domain.events import check_webhook_url

        try:
            return check_webhook_url(value, field="url")
        except InvalidArgument as exc:
            raise ValueError(exc.message) from None


class EventSettings(_Section):
    """Reset and end events (see ``replication/events.py``): produced once per period, served at
    ``GET /v1/events`` and POSTed to webhooks, signed with ``webhook_secret``."""

    enabled: bool = Field(True, description="Produce events when periods end and deliver them to webhooks "
                                            "(GET /v1/events serves what is held either way).")
    grace: float = Field(2.0, ge=0, le=300, description="Seconds after a period ends before its final standings are "
                         "taken: writes accepted before the end on other nodes reach them meanwhile. Keep it above "
                         "cluster.max_clock_offset plus the replication lag.")
    top: int = Field(100, ge=1, le=1000, description="Records in an event's standings, unless the leaderboard sets "
                                                    "its own event_top.")
    retention: float = Field(86400.0, gt=0, description="Seconds an event is kept after its period ended (each costs "
                             "about 300 bytes per record of its standings).")
    catch_up: float = Field(3600.0, ge=0, description="A period that ended while the whole cluster was down gets its "
                            "event if it ended less than this long ago (and while its records are kept).")
    takeover: float = Field(10.0, ge=0, description="Seconds after an event is due when any ready node produces it, "
                            "should the node chosen for it not have (two copies are resolved deterministically).")
    max_wait: float = Field(60.0, gt=0, le=600, description="The longest wait= a GET /v1/events long poll may ask for.")
    webhooks: list[WebhookSettings] = Field(default_factory=list,
                                            description="Webhooks that receive every event (each board may add one "
                                                        "of its own: PATCH its webhook_url).")
    webhook_secret_file: Path | None = Field(None, description="File holding the key deliveries are signed with "
                                                               "(HMAC-SHA256; at least 16 characters).")
    webhook_secret: SecretStr | None = Field(None, description="The signing key itself; set it only through the "
                                                               "environment (LEADERBOARD_EVENTS__WEBHOOK_SECRET).")
    webhook_timeout: float = Field(5.0, gt=0, le=300, description="Seconds a webhook has to answer a delivery.")
    retry_initial: float = Field(0.5, gt=0, description="Seconds before the first retry of a failed delivery; each "
                                                        "retry waits twice as long as the one before, with jitter.")
    retry_max: float = Field(30.0, gt=0, description="The longest wait between two retries of a delivery.")

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _secret_is_text(cls, value: Any) -> Any:
        if value is None or isinstance(value, (str, SecretStr)):
            return value
        raise ValueError(f"the webhook secret must be a string, got a {type(value).__name__}: quote it")

    def secret(self) -> str | None:
        """The signing key, from the file or the environment; a ConfigError when it cannot be used."""
        if self.webhook_secret is not None and self.webhook_secret_file is not None:
            raise ConfigError("events.webhook_secret", "events.webhook_secret and events.webhook_secret_file are "
                              "both set", "keep one")
        value: str | None
        if self.webhook_secret_file is not None:
            try:
                value = self.webhook_secret_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError("events.webhook_secret_file", f"cannot read {self.webhook_secret_file}: "
                                  f"{exc.strerror or exc}", "mount the Secret there or fix the path") from None
            setting = "events.webhook_secret_file"
        else:
            value = self.webhook_secret.get_secret_value().strip() if self.webhook_secret is not None else None
            setting = "events.webhook_secret"
        if value is not None and (len(value) < MIN_KEY_LENGTH or not value.isascii() or not value.isprintable()):
            raise ConfigError(setting, f"the webhook secret needs at least {MIN_KEY_LENGTH} visible ASCII characters",
                              "generate one with `openssl rand -hex 32`")
        if self.webhooks and value is None:
            raise ConfigError("events.webhook_secret_file", "events.webhooks are configured without a signing secret",
                              "set events.webhook_secret_file (or LEADERBOARD_EVENTS__WEBHOOK_SECRET)")
        return value


LeaderboardSyncSettings.model_rebuild()


class Settings(_Section):
    node: NodeSettings = Field(default_factory=NodeSettings)
    leaderboard: LeaderboardSettings = Field(default_factory=LeaderboardSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    tls: TlsSettings = Field(default_factory=TlsSettings)
    durability: DurabilitySettings = Field(default_factory=DurabilitySettings)
    log: LogSettings = Field(default_factory=LogSettings)
    events: EventSettings = Field(default_factory=EventSettings)

    @model_validator(mode="after")
    def _named_for_identities(self) -> Settings:
        """With node identities, names are DNS labels and discovery names every peer."""
        if not self.tls.peer_identity:
            return self
        if not DNS_LABEL.fullmatch(self.node.name):
            raise ValueError(f"node.name {self.node.name!r} is not a DNS label; with tls.peer_identity a node name is "
                             "part of a certificate's DNS name (lower case letters, digits and '-', at most 63)")
        discovery = self.cluster.discovery
        if discovery.mode == "dns":
            raise ValueError("tls.peer_identity needs discovery that names the peers (static NAME=HOST:PORT, or "
                             "kubernetes); dns discovery knows only addresses")
        if discovery.mode == "static":
            for peer in discovery.static.peers:
                name, sep, _ = peer.rpartition("=")
                if not sep or not DNS_LABEL.fullmatch(name):
                    raise ValueError(f"cluster.discovery.static.peers: {peer!r} needs a name that is a DNS label "
                                     "(NAME=HOST:PORT) with tls.peer_identity")
        return self


def parse_host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """Turn ``LEADERBOARD_A__B=v`` into ``{"a": {"b": v}}``; values are parsed as YAML scalars."""
    overrides: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        path = key[len(ENV_PREFIX):].lower().split("__")
        _set_path(overrides, path, yaml.safe_load(raw) if raw else None)
    return overrides


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(
    *,
    config_file: Path | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Defaults, then the YAML file, then the environment, then explicit overrides (flags)."""
    tree: dict[str, Any] = {}
    if config_file is not None:
        try:
            loaded = yaml.safe_load(Path(config_file).read_text()) or {}
        except OSError as exc:
            raise ConfigError("--config", f"cannot read {config_file}: {exc.strerror or exc}",
                              "give the path of a readable YAML file") from None
        except yaml.YAMLError as exc:
            raise ConfigError("--config", f"{config_file} is not valid YAML: {' '.join(str(exc).split())}",
                              "fix the file (see the example node config)") from None
        if not isinstance(loaded, dict):
            raise ConfigError("--config", f"{config_file} does not hold a mapping of settings",
                              "write settings as YAML keys (node:, cluster:, ...)")
        tree = loaded
    tree = _deep_merge(tree, _env_overrides(dict(os.environ if environ is None else environ)))
    tree = _deep_merge(tree, overrides or {})
    return Settings.model_validate(tree)
