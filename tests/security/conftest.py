"""Shared set-up of the security tests: keys, key files, and a node that requires them."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from ..harness import NodeProcess

SERVER_KEY = "server-" + secrets.token_urlsafe(24)
CLIENT_KEY = "client-" + secrets.token_urlsafe(24)
WRONG_KEY = "wrong-" + secrets.token_urlsafe(24)


def write_secret(directory: Path, name: str, value: str) -> Path:
    path = directory / name
    path.write_text(value + "\n")  # a trailing newline, as `kubectl create secret --from-file` keeps it
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def keyed_node(tmp_path_factory):
    """A node whose client API needs keys (from files) and whose peer port needs a token."""
    workdir = tmp_path_factory.mktemp("keyed-node")
    process = NodeProcess("keyed-node", workdir, settings={
        "auth": {
            "server_key_file": str(write_secret(workdir, "server.key", SERVER_KEY)),
            "client_key_file": str(write_secret(workdir, "client.key", CLIENT_KEY)),
            "peer_token_file": str(write_secret(workdir, "peer.token", "peer-token-" + secrets.token_hex(8))),
        },
    })
    process.start()
    yield process
    process.terminate()
    assert not process.log_errors(), process.log_errors()[:3]


@pytest.fixture
def admin(keyed_node):
    with keyed_node.client(api_key=SERVER_KEY) as client:
        yield client


def unexpected_errors(process: NodeProcess) -> list[str]:
    """Error lines of a node's log, less aiohttp's report of a malformed HTTP message.

    aiohttp logs a request it cannot parse (too many headers, a line too long) at ERROR with a
    traceback, before any of our code runs; the tests that send such requests expect those.
    """
    import json

    out = []
    for line in process.log_errors():
        try:
            record = json.loads(line)
        except ValueError:
            out.append(line)
            continue
        if record.get("logger") == "aiohttp.server" and "Error handling request" in record.get("event", ""):
            continue
        out.append(line)
    return out
