"""TLS for the client port: the contexts ``TlsSettings`` builds, serving the real client app.

The node process does not serve TLS until server.py passes ``settings.tls.server_context()``
to its sites (see the report), so these tests run the client app in process on a TLS site
built exactly that way. The certificate is self-signed, made with the ``openssl`` command
(the ``cryptography`` package is not a dependency); without it the tests are skipped.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from pydantic import ValidationError

from leaderboard_client import ApiError, AsyncLeaderboardClient, LeaderboardClient
from leaderboard_node.config import ConfigError, Settings, TlsSettings
from leaderboard_node.node import Node, NodeState
from leaderboard_node.transport.auth import ApiKeys
from leaderboard_node.transport.client_api import create_client_app

from ..harness import free_port
from .conftest import CLIENT_KEY, SERVER_KEY

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def _self_signed(directory: Path, name: str, *, san: str = "IP:127.0.0.1,DNS:localhost") -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", f"/CN={name}", "-addext",
         f"subjectAltName={san}"],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    return _self_signed(tmp_path_factory.mktemp("tls"), "node")


class TlsSite:
    """The client app of a node, on a TLS site made from its settings, in a background loop."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port("127.0.0.1")
        self.loop = asyncio.new_event_loop()
        node = Node(settings)
        node.set_state(NodeState.READY)
        self.app = create_client_app(node, keys=ApiKeys.of(server=SERVER_KEY, client=CLIENT_KEY))
        self.runner = web.AppRunner(self.app, **settings.limits.server_options())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._run(self._start(settings))

    def _run(self, coroutine):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=15)

    async def _start(self, settings: Settings) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=settings.tls.server_context()).start()

    def close(self) -> None:
        self._run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def site(certificate) -> Iterator[TlsSite]:
    cert, key = certificate
    running = TlsSite(Settings.model_validate({"tls": {"cert_file": str(cert), "key_file": str(key)}}))
    yield running
    running.close()


def _trusting(cert: Path, **kwargs: object) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    for name, value in kwargs.items():
        setattr(context, name, value)
    return context


def test_the_client_api_is_served_over_tls_to_a_client_that_trusts_the_certificate(site, certificate):
    cert, _ = certificate
    with LeaderboardClient(f"https://127.0.0.1:{site.port}", api_key=SERVER_KEY, ssl_context=_trusting(cert)) as admin:
        assert admin.ready()
        admin.create_leaderboard("over-tls")
        assert admin.write_record("over-tls", "p1", 5)["rank"] == 1
    with LeaderboardClient(f"https://127.0.0.1:{site.port}", api_key=CLIENT_KEY, ssl_context=_trusting(cert)) as client:
        assert client.record("over-tls", "p1")["score"] == 5
        with pytest.raises(ApiError) as raised:
            client.delete_leaderboard("over-tls")
        assert raised.value.status == 403


async def test_the_async_client_speaks_tls_and_sends_its_key(site, certificate):
    cert, _ = certificate
    url = f"https://127.0.0.1:{site.port}"
    async with AsyncLeaderboardClient(url, api_key=SERVER_KEY, ssl_context=_trusting(cert)) as admin:
        await admin.create_leaderboard("async-over-tls")
        assert (await admin.write_record("async-over-tls", "p1", 7))["rank"] == 1
    async with AsyncLeaderboardClient(url, api_key=CLIENT_KEY, ssl_context=_trusting(cert)) as client:
        assert (await client.record("async-over-tls", "p1"))["score"] == 7
        with pytest.raises(ApiError) as raised:
            await client.delete_leaderboard("async-over-tls")
        assert raised.value.status == 403
    async with AsyncLeaderboardClient(url, ssl_context=ssl.create_default_context()) as stranger:
        with pytest.raises(ssl.SSLCertVerificationError):
            await stranger.ready()


def test_a_client_that_does_not_trust_the_certificate_is_refused(site, tmp_path):
    other, _ = _self_signed(tmp_path, "other")
    with LeaderboardClient(f"https://127.0.0.1:{site.port}", ssl_context=_trusting(other)) as client:
        with pytest.raises(ssl.SSLCertVerificationError):
            client.ready()


def test_plain_http_on_the_tls_port_gets_no_answer(site):
    with LeaderboardClient(f"http://127.0.0.1:{site.port}", timeout=3) as client:
        with pytest.raises(Exception):
            client.ready()


def test_a_certificate_for_another_name_is_refused(tmp_path):
    cert, key = _self_signed(tmp_path, "elsewhere", san="DNS:elsewhere.example")
    running = TlsSite(Settings.model_validate({"tls": {"cert_file": str(cert), "key_file": str(key)}}))
    try:
        with LeaderboardClient(f"https://127.0.0.1:{running.port}", ssl_context=_trusting(cert)) as client:
            with pytest.raises(ssl.SSLCertVerificationError):
                client.ready()
    finally:
        running.close()


def test_tls_1_3_only_refuses_a_tls_1_2_client(tmp_path):
    cert, key = _self_signed(tmp_path, "strict")
    running = TlsSite(Settings.model_validate({"tls": {"cert_file": str(cert), "key_file": str(key),
                                                       "min_version": "1.3"}}))
    try:
        old = _trusting(cert, maximum_version=ssl.TLSVersion.TLSv1_2)
        with LeaderboardClient(f"https://127.0.0.1:{running.port}", ssl_context=old) as client:
            with pytest.raises(ssl.SSLError):
                client.ready()
        with LeaderboardClient(f"https://127.0.0.1:{running.port}", ssl_context=_trusting(cert)) as client:
            assert client.ready()
    finally:
        running.close()


# ----------------------------------------------------------------------------- settings


def test_tls_is_off_unless_a_certificate_is_configured():
    tls = Settings().tls
    assert not tls.enabled and tls.server_context() is None and tls.peer_client_context() is None


def test_a_certificate_without_its_key_is_refused(certificate):
    cert, _ = certificate
    with pytest.raises(ValidationError, match="go together"):
        TlsSettings(cert_file=cert)


def test_the_peer_client_context_verifies_peers_against_the_configured_ca(certificate):
    cert, key = certificate
    tls = TlsSettings(cert_file=cert, key_file=key, ca_file=cert)
    context = tls.peer_client_context()
    assert context is not None
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert TlsSettings(cert_file=cert, key_file=key, peer=False).peer_client_context() is None


def test_a_missing_certificate_file_fails_at_start(tmp_path):
    tls = TlsSettings(cert_file=tmp_path / "nope.crt", key_file=tmp_path / "nope.key")
    with pytest.raises(ConfigError, match="tls.cert_file: cannot load .*No such file"):
        tls.server_context()
