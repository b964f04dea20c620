"""Real node processes for tests: started as the ``leaderboard-node`` command on 127.0.0.x,
killed with SIGKILL, restarted, and always stopped at the end of the test."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from leaderboard_client import ApiError, LeaderboardClient

from .netfaults import Network

_hosts = itertools.count(2)


def free_port(host: str) -> int:
    return free_ports(host, 1)[0]


def free_ports(host: str, count: int) -> list[int]:
    """``count`` distinct ports free on ``host``: each socket stays bound until all are picked,
    since the kernel may hand a port it just released to the next ``bind(0)`` (a node once got
    the same port for its client and peer listeners)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]


def loopback_host() -> str:
    """A fresh 127.0.0.x address, so each node of a test has an address of its own."""
    return f"127.0.0.{next(_hosts) % 250 + 2}"


@dataclass
class NodeProcess:
    name: str
    workdir: Path
    host: str = field(default_factory=loopback_host)
    settings: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    ssl_context: ssl.SSLContext | None = None  # set when the node serves its client port over TLS

    def __post_init__(self) -> None:
        self.port, self.peer_port = free_ports(self.host, 2)
        self.log_path = self.workdir / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context is not None else 'http'}://{self.host}:{self.port}"

    @property
    def peer_address(self) -> str:
        return f"{self.host}:{self.peer_port}"

    def client(self, **kwargs: Any) -> LeaderboardClient:
        return LeaderboardClient(self.url, ssl_context=self.ssl_context, **kwargs)

    def start(self, *, wait_ready: bool = True, timeout: float = 30.0) -> NodeProcess:
        config = {
            "node": {"name": self.name, "listen": f"{self.host}:{self.port}",
                     "peer_listen": self.peer_address},
            "log": {"level": "info", "format": "json"},
        }
        config = _merge(config, self.settings)
        config_path = self.workdir / f"{self.name}.yaml"
        config_path.write_text(yaml.safe_dump(config))
        log = open(self.log_path, "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADERBOARD_")}
        env.update(self.env)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "leaderboard_node.cli", "--config", str(config_path)],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        log.close()
        if wait_ready:
            self.wait_ready(timeout=timeout)
        return self

    def wait_ready(self, *, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        client = self.client(timeout=2)
        try:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
                try:
                    if client.ready():
                        return
                except OSError:
                    pass
                time.sleep(0.05)
        finally:
            client.close()
        raise AssertionError(f"{self.name} was not ready within {timeout}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye, as a crash or an OOM kill."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the process holds its state and answers nothing, as a stalled VM or a long GC."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def terminate(self, *, timeout: float = 15.0) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        return self.process.returncode

    def log_errors(self) -> list[str]:
        return log_errors(self.log_path)

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)


def log_errors(path: Path) -> list[str]:
    """Log lines of unexpected failures (an unhandled exception, a request the server choked on)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines()
            if '"level": "ERROR"' in line or "Traceback" in line and '"level": "WARNING"' not in line]


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def all_records(client: LeaderboardClient, leaderboard_id: str) -> dict[str, int]:
    """Every record of a leaderboard as owner -> score, page by page."""
    held: dict[str, int] = {}
    cursor = None
    while True:
        page = client.records(leaderboard_id, limit=1000, cursor=cursor)
        held.update({r["owner_id"]: r["score"] for r in page["records"]})
        cursor = page["next_cursor"]
        if cursor is None:
            return held


def has_leaderboard(client: LeaderboardClient, leaderboard_id: str) -> bool:
    try:
        client.get_leaderboard(leaderboard_id)
        return True
    except (ApiError, OSError):
        return False


def node_info(node: NodeProcess) -> dict[str, Any]:
    """The ``node`` part of a node's ``GET /v1/cluster``."""
    with node.client(timeout=5) as client:
        return client.cluster()["node"]


def wait_until(predicate: Any, *, timeout: float = 20.0, interval: float = 0.05, message: str = "condition") -> Any:
    """Poll until ``predicate()`` is truthy; bounded in time, with a clear failure."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")


@dataclass
class Cluster:
    """N node processes that know each other through static discovery."""

    nodes: list[NodeProcess]

    @classmethod
    def create(cls, workdir: Path, size: int, *, prefix: str = "node", settings: dict[str, Any] | None = None,
               sync: dict[str, Any] | None = None, data: bool = False, network: Network | None = None) -> Cluster:
        """``data``: give every node a data directory (kept across its restarts) under ``workdir``.
        ``network``: every node reaches every peer through a link proxy of its own (``netfaults``)."""
        nodes = [NodeProcess(f"{prefix}-{i}", workdir) for i in range(size)]
        for node in nodes:
            if network is None:
                peers = [f"{other.name}={other.peer_address}" for other in nodes if other is not node]
            else:
                peers = [f"{other.name}={network.link(node.name, other.name, other.peer_address).address}"
                         for other in nodes if other is not node]
            node.settings = _merge({
                "cluster": {
                    "discovery": {"mode": "static", "static": {"peers": peers}},
                    "leaderboard_sync": {"anti_entropy_interval": 0.5, "bootstrap_timeout": 20, **(sync or {})},
                },
            }, settings or {})
            if data:
                node.settings = _merge(node.settings, {"node": {"data_dir": str(workdir / f"{node.name}-data")}})
        return cls(nodes)

    def start(self) -> Cluster:
        for node in self.nodes:
            node.start(wait_ready=False)
        for node in self.nodes:
            node.wait_ready()
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()

    def assert_logs_clean(self) -> None:
        errors = {node.name: node.log_errors() for node in self.nodes}
        errors = {name: lines[:3] for name, lines in errors.items() if lines}
        assert not errors, f"nodes logged errors: {errors}"

    def clients(self) -> list[LeaderboardClient]:
        return [node.client() for node in self.nodes]

    def digests(self, leaderboard_id: str, **query: Any) -> list[str | None]:
        out: list[str | None] = []
        for node in self.nodes:
            with node.client(timeout=5) as client:
                try:
                    out.append(client.digest(leaderboard_id, **query)["digest"])
                except Exception:
                    out.append(None)
        return out

    def wait_converged(self, leaderboard_ids: list[str], *, timeout: float = 30.0) -> None:
        def converged() -> bool:
            for leaderboard_id in leaderboard_ids:
                digests = self.digests(leaderboard_id)
                if None in digests or len(set(digests)) != 1:
                    return False
            return True

        wait_until(converged, timeout=timeout, message=f"digests of {leaderboard_ids} to agree on every node")


def fill_board(client: LeaderboardClient, board: str, count: int, *, prefix: str = "p") -> None:
    """Create ``board`` and write ``count`` records in one batch: ``{prefix}{i}`` scores ``i``."""
    client.create_leaderboard(board)
    client.write_batch(board, [{"owner_id": f"{prefix}{i}", "score": i} for i in range(count)])


def board_with_a_record(client: LeaderboardClient, prefix: str) -> str:
    """A new leaderboard holding one record ("keeper", 42): what a refused request must leave alone."""
    board = f"{prefix}-{uuid.uuid4().hex[:8]}"
    client.create_leaderboard(board)
    client.write_record(board, "keeper", 42)
    return board
