"""A real local cluster: N ``leaderboard-node`` processes on 127.0.0.1 that find each other
through static discovery, kept running as a kubelet keeps a pod's containers running. Used
by ``leaderboardctl local`` (and so by ``./run demo``).

Each node gets a config file and a log file in the cluster's work directory. Before anything
starts, every port the nodes will listen on is checked: a port that another program (often
a first ``./run demo``) holds is named, rather than a node failing to bind while the other
cluster answers the readiness checks.

Supervision: ``supervise()`` watches every node from a thread of its own. A node that exits,
whatever the reason (``kill -9``, a crash, an OOM kill), is reported with its exit code and
its log, and started again with its config after an exponential backoff (1 s, 2 s, 4 s, ...
up to 30 s; tenacity's ``wait_exponential``), so a node that keeps failing is not restarted
in a tight loop. A node that ran for ``STABLE_AFTER`` seconds before it exited starts a new
backoff, as the kubelet resets a container's. A restarted node without a data directory
starts empty and full-syncs from its peers before it is ready again; both moments are
reported, so the user can watch the resync. Only ``stop()`` (Ctrl-C or SIGTERM in
``leaderboardctl local``) ends supervision and the nodes.

Caveats: the ports are checked, then bound by the nodes a moment later; a program that takes
one in between makes that node exit with the node's own one-line error (exit 78), which
``start()`` reports. Supervision reports through a callback from its threads; the callback
must be thread-safe (``print`` of whole lines is).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_when_event_set, wait_exponential

from .client import LeaderboardClient
from .operations import ApiError

RESTART_BACKOFF_FIRST = 1.0  # seconds before the first restart of a node that keeps exiting
RESTART_BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0  # a node that ran this long before it exited starts a new backoff
POLL_INTERVAL = 0.2

Report = Callable[[str], None]


class PortsTaken(RuntimeError):
    """Ports the cluster needs that something else holds."""


class NodeFailed(RuntimeError):
    """A node that exited (or was not ready in time) before the cluster first became ready."""


class NodeExited(Exception):
    def __init__(self, name: str, code: int, uptime: float) -> None:
        super().__init__(f"{name} exited with {describe_exit(code)}")
        self.code = code
        self.uptime = uptime


def describe_exit(code: int) -> str:
    """``code 1``, or ``code -9 (killed by SIGKILL)`` for a process a signal ended."""
    if code < 0:
        try:
            return f"code {code} (killed by {signal.Signals(-code).name})"
        except ValueError:
            return f"code {code} (killed by signal {-code})"
    return f"code {code}"


@dataclass
class LocalNode:
    name: str
    host: str
    port: int
    peer_port: int
    config_path: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0  # time.monotonic() of the last start
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


class LocalCluster:
    def __init__(self, *, nodes: int, host: str = "127.0.0.1", base_port: int = 7350,
                 workdir: Path | None = None, data: bool = False) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="leaderboard-local-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data = data
        self.nodes = [LocalNode(f"node-{i}", host, base_port + 2 * i, base_port + 2 * i + 1,
                                config_path=self.workdir / f"node-{i}.yaml", log_path=self.workdir / f"node-{i}.log")
                      for i in range(nodes)]
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # a node is never launched once stop() has begun
        self._watchers: list[threading.Thread] = []
        for node in self.nodes:
            self._write_config(node)

    # ------------------------------------------------------------------------ start

    def _write_config(self, node: LocalNode) -> None:
        peers = [f"{o.name}={o.host}:{o.peer_port}" for o in self.nodes if o is not node]
        config: dict[str, Any] = {
            "node": {"name": node.name, "listen": f"{node.host}:{node.port}",
                     "peer_listen": f"{node.host}:{node.peer_port}"},
            "cluster": {"discovery": {"mode": "static", "static": {"peers": peers}}},
        }
        if self.data:
            config["node"]["data_dir"] = str(self.workdir / node.name)
        node.config_path.write_text(yaml.safe_dump(config))

    def check_ports(self) -> None:
        """``PortsTaken`` naming every port of the cluster that another program holds."""
        taken = []
        for node in self.nodes:
            for port, what in ((node.port, "client API"), (node.peer_port, "peer endpoint")):
                with socket.socket() as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the node binds
                    try:
                        probe.bind((node.host, port))
                    except OSError as exc:
                        reason = os.strerror(exc.errno) if exc.errno else str(exc)
                        taken.append(f"{node.host}:{port} ({node.name}'s {what}: {reason.lower()})")
        if taken:
            raise PortsTaken("ports taken: " + ", ".join(taken) + "; another cluster (a first `./run demo`?) or "
                             "program holds them: stop it, or start this one elsewhere with --base-port PORT")

    def _launch(self, node: LocalNode) -> bool:
        """Start ``node``'s process; False once stop() has begun."""
        with self._lock:
            if self._stopping.is_set():
                return False
            env = {k: v for k, v in os.environ.items() if not k.startswith("LEADERBOARD_")}
            with open(node.log_path, "ab") as log:
                node.process = subprocess.Popen(
                    [sys.executable, "-m", "leaderboard_node.cli", "--config", str(node.config_path)],
                    stdout=log, stderr=subprocess.STDOUT, env=env,
                )
            node.started = time.monotonic()
            return True

    def start(self, *, timeout: float = 60.0) -> None:
        """Check the ports, start every node, and wait until each is ready (``NodeFailed`` when
        one exits or stays unready: its exit code and the end of its log say why)."""
        self.check_ports()
        for node in self.nodes:
            self._launch(node)
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            with LeaderboardClient(node.url, timeout=2) as client:
                while not self._is_ready(node, client):
                    if node.process is not None and node.process.poll() is not None:
                        raise NodeFailed(f"{node.name} exited with {describe_exit(node.process.returncode)} before "
                                         f"it was ready; its log {node.log_path} ends with:\n{log_tail(node.log_path)}")
                    if time.monotonic() > deadline:
                        raise NodeFailed(f"{node.name} was not ready within {timeout:g} s; see {node.log_path}")
                    time.sleep(0.1)

    @staticmethod
    def _is_ready(node: LocalNode, client: LeaderboardClient) -> bool:
        """Ready, and this node answering (not another process on its port)."""
        try:
            if not client.ready():
                return False
            name = client.cluster()["node"]["name"]
        except (OSError, ApiError):
            return False
        if name != node.name:
            raise NodeFailed(f"{node.url} is answered by a node named {name!r}, not {node.name}: another cluster "
                             f"holds the port; start this one elsewhere with --base-port PORT")
        return True

    # -------------------------------------------------------------------- supervise

    def supervise(self, report: Report) -> None:
        """Watch every node from a thread of its own until ``stop()``; returns at once."""
        for node in self.nodes:
            thread = threading.Thread(target=self._keep_running, args=(node, report), name=f"watch-{node.name}",
                                      daemon=True)
            thread.start()
            self._watchers.append(thread)

    def _keep_running(self, node: LocalNode, report: Report) -> None:
        """Restart ``node`` whenever it exits, backing off while it keeps exiting, until stop()."""
        while not self._stopping.is_set():
            retrying = Retrying(
                retry=retry_if_exception_type(NodeExited),
                wait=wait_exponential(multiplier=RESTART_BACKOFF_FIRST, max=RESTART_BACKOFF_MAX),
                stop=stop_when_event_set(self._stopping),
                sleep=self._stopping.wait,  # Ctrl-C cuts a backoff short
                before_sleep=lambda state: self._announce_restart(node, state, report),
                reraise=True,
            )
            try:
                for attempt in retrying:
                    with attempt:
                        if node.process is None or node.process.poll() is not None:
                            self._restart(node, report)
                        self._until_exit(node, report)
            except NodeExited:  # stop() began during the backoff
                return

    def _announce_restart(self, node: LocalNode, state: RetryCallState, report: Report) -> None:
        delay = state.next_action.sleep if state.next_action is not None else 0
        report(f"restarting {node.name} in {delay:.0f} s (restart {node.restarts + 1})")

    def _restart(self, node: LocalNode, report: Report) -> None:
        if not self._launch(node):
            return
        node.restarts += 1
        report(f"{node.name} restarted (pid {node.pid}); it full-syncs from its peers before it is ready again")

    def _until_exit(self, node: LocalNode, report: Report) -> None:
        """Wait until ``node`` exits (``NodeExited``) or stop() begins (return); report once when
        a restarted node is ready again."""
        process = node.process
        assert process is not None
        announced = node.restarts == 0
        client = LeaderboardClient(node.url, timeout=2)
        try:
            while not self._stopping.wait(POLL_INTERVAL):
                code = process.poll()
                if code is not None:
                    uptime = time.monotonic() - node.started
                    if self._stopping.is_set():
                        return
                    report(f"{node.name} (pid {process.pid}) exited with {describe_exit(code)} after {uptime:.1f} s; "
                           f"its log: {node.log_path}")
                    if uptime >= STABLE_AFTER:
                        node.process = None  # restarted at once, with a new backoff
                        return
                    raise NodeExited(node.name, code, uptime)
                if not announced:
                    announced = self._announce_ready(node, client, report)
        finally:
            client.close()

    def _announce_ready(self, node: LocalNode, client: LeaderboardClient, report: Report) -> bool:
        try:
            if not client.ready():
                return False
            info = client.cluster()["node"]
        except (OSError, ApiError):
            return False
        took = time.monotonic() - node.started
        sync = info.get("last_full_sync") or {}
        how = (f"full sync of {sync['records']} records from {sync['source']} in {sync['seconds']} s"
               if sync.get("source") else f"{info.get('records', 0)} records")
        report(f"{node.name} is ready again after {took:.1f} s ({how})")
        return True

    # ------------------------------------------------------------------------- stop

    def stop(self) -> None:
        """End supervision and every node (SIGTERM, then SIGKILL after 15 s)."""
        with self._lock:
            self._stopping.set()
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait(timeout=5)
        for thread in self._watchers:
            thread.join(timeout=5)


def log_tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join("    " + line for line in path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "    (no log)"


def load_sample_data(urls: list[str], *, players: int = 1000, seed: int = 1) -> dict[str, Any]:
    """Leaderboards of each kind and scores written through every node, round robin."""
    rng = random.Random(seed)
    clients = [LeaderboardClient(url) for url in urls]
    first = clients[0]
    first.create_leaderboard("global", metadata={"title": "All-time high scores"})
    first.create_leaderboard("weekly", reset_schedule="0 0 * * 1", metadata={"title": "This week"})
    first.create_leaderboard("kills", operator="incr")
    first.create_leaderboard("speedrun", sort_order="asc", operator="best")
    first.create_tournament("daily_cup", title="Daily cup", duration=86400, reset_schedule="0 0 * * *",
                            category=1, max_num_score=100)
    deadline = time.monotonic() + 30
    for client in clients:  # the definitions reach every node before scores are sent to it
        while True:
            try:
                client.get_leaderboard("daily_cup")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    owners = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(players)]
    written = 0
    for start in range(0, players, 100):
        client = clients[(start // 100) % len(clients)]
        chunk = owners[start:start + 100]
        client.write_batch("global", [{"owner_id": o, "username": f"player{start + i}",
                                       "score": rng.randrange(1_000_000), "subscore": rng.randrange(100)}
                                      for i, o in enumerate(chunk)])
        client.write_batch("weekly", [{"owner_id": o, "score": rng.randrange(10_000)} for o in chunk])
        client.write_batch("kills", [{"owner_id": o, "score": rng.randrange(1, 20)} for o in chunk])
        client.write_batch("speedrun", [{"owner_id": o, "score": rng.randrange(60_000, 600_000)} for o in chunk])
        client.write_batch("daily_cup", [{"owner_id": o, "score": rng.randrange(500)} for o in chunk])
        written += 5 * len(chunk)
    for client in clients:
        client.close()
    return {"records": written, "players": players, "first_owner": owners[0]}
