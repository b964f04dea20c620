"""``leaderboard-node`` started with settings it cannot serve: one line that names the setting
and the fix, no traceback, and exit status 78 (bad configuration)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ..harness import NodeProcess, free_ports, loopback_host

EXIT_BAD_CONFIG = 78


def _node(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    environ = {k: v for k, v in os.environ.items() if not k.startswith("LEADERBOARD_")}
    environ.update(env or {})
    host = loopback_host()
    client, peer = free_ports(host, 2)
    flags = ["--listen", f"{host}:{client}", "--peer-listen", f"{host}:{peer}"]
    return subprocess.run([sys.executable, "-m", "leaderboard_node.cli", *flags, *args], capture_output=True,
                          text=True, timeout=30, env=environ)


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("leaderboard-node:")]
    assert len(lines) == 1, stderr
    return lines[0]


def _exited(node: NodeProcess) -> tuple[int, str]:
    assert node.process is not None
    code = node.process.wait(timeout=30)
    return code, node.log_path.read_text()


def test_a_taken_client_port_names_node_listen_and_the_fix(tmp_path: Path):
    node = NodeProcess("taken", tmp_path)
    with socket.socket() as holder:
        holder.bind((node.host, node.port))
        holder.listen()
        node.start(wait_ready=False)
        code, log = _exited(node)
    assert code == EXIT_BAD_CONFIG
    line = _one_error_line(log)
    assert f"node.listen: cannot listen on {node.host}:{node.port}: address already in use" in line
    assert "--listen" in line and "stop the process" in line


def test_a_taken_peer_port_names_node_peer_listen(tmp_path: Path):
    node = NodeProcess("taken-peer", tmp_path)
    with socket.socket() as holder:
        holder.bind((node.host, node.peer_port))
        holder.listen()
        node.start(wait_ready=False)
        code, log = _exited(node)
    assert code == EXIT_BAD_CONFIG
    assert "node.peer_listen: cannot listen on" in _one_error_line(log)


def test_garbage_peers_name_the_setting_and_the_expected_form():
    result = _node("--peers", "garbage")
    assert result.returncode == EXIT_BAD_CONFIG
    line = _one_error_line(result.stderr)
    assert "cluster.discovery.static.peers: expected NAME=HOST:PORT, got 'garbage'" in line


def test_an_api_key_shorter_than_16_characters_says_how_long_it_must_be_without_printing_it():
    result = _node(env={"LEADERBOARD_AUTH__SERVER_KEY": "tooshort-key"})
    assert result.returncode == EXIT_BAD_CONFIG
    line = _one_error_line(result.stderr)
    assert "auth.server_key:" in line and "at least 16" in line and "openssl rand" in line
    assert "tooshort-key" not in result.stderr


def test_an_unreadable_key_file_names_the_setting(tmp_path: Path):
    result = _node(env={"LEADERBOARD_AUTH__SERVER_KEY_FILE": str(tmp_path / "missing.key")})
    assert result.returncode == EXIT_BAD_CONFIG
    assert "auth.server_key_file: cannot read" in _one_error_line(result.stderr)


@pytest.mark.parametrize(("content", "expected"), [
    ("log:\n  format: xml\n", "log.format: Input should be 'json' or 'text'"),
    ("node:\n  listenn: 127.0.0.1:1\n", "node.listenn: no such setting"),
    ("node: [1, 2\n", "is not valid YAML"),
], ids=["bad-value", "unknown-setting", "not-yaml"])
def test_a_bad_config_file_is_one_line_naming_the_setting(tmp_path: Path, content: str, expected: str):
    config = tmp_path / "node.yaml"
    config.write_text(content)
    result = _node("--config", str(config))
    assert result.returncode == EXIT_BAD_CONFIG
    assert expected in _one_error_line(result.stderr)


def test_help_documents_the_exit_codes_the_key_minimum_and_the_log_formats():
    result = subprocess.run([sys.executable, "-m", "leaderboard_node.cli", "--help"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0
    text = result.stdout
    assert "exit status:" in text
    for code in ("  3 ", "  78 "):
        assert code in text
    assert "at least 16" in text
    assert "log.format (env LEADERBOARD_LOG__FORMAT, default 'json', one of json, text)" in text
    assert "queue_size" not in text


@pytest.mark.parametrize(("env", "setting", "says"), [
    ({"LEADERBOARD_EVENTS__WEBHOOKS": '[{url: "http://127.0.0.1:9/hook"}]'}, "events.webhook_secret_file",
     "webhooks are configured without a signing secret"),
    ({"LEADERBOARD_EVENTS__WEBHOOKS": '[{url: "ftp://127.0.0.1:9/hook"}]'}, "events.webhooks.0.url",
     "must be an absolute http:// or https:// URL"),
    ({"LEADERBOARD_EVENTS__WEBHOOKS": '[{url: "https://user:pw@example.com/hook"}]'}, "events.webhooks.0.url",
     "must not carry credentials"),
    ({"LEADERBOARD_EVENTS__WEBHOOK_SECRET": "short"}, "events.webhook_secret", "at least 16"),
], ids=["no-secret", "not-http", "credentials", "short-secret"])
def test_a_bad_webhook_config_names_the_setting(env, setting, says):
    result = _node(env=env)
    assert result.returncode == EXIT_BAD_CONFIG, result.stderr
    line = _one_error_line(result.stderr)
    assert line.startswith(f"leaderboard-node: bad configuration: {setting}: ") and says in line, line
