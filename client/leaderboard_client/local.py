"""A real local cluster: N ``leaderboard-node`` processes on 127.0.0.1 that find each other
through static discovery. Used by ``leaderboardctl local`` (and so by ``./run demo``)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from .client import LeaderboardClient


@dataclass
class LocalNode:
    name: str
    host: str
    port: int
    peer_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class LocalCluster:
    def __init__(self, *, nodes: int, host: str = "127.0.0.1", base_port: int = 7350,
                 workdir: Path | None = None, data: bool = False) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="leaderboard-local-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data = data
        self.nodes = [LocalNode(f"node-{i}", host, base_port + 2 * i, base_port + 2 * i + 1) for i in range(nodes)]

    def _config(self, node: LocalNode) -> Path:
        peers = [f"{o.name}={o.host}:{o.peer_port}" for o in self.nodes if o is not node]
        config = {
            "node": {"name": node.name, "listen": f"{node.host}:{node.port}",
                     "peer_listen": f"{node.host}:{node.peer_port}"},
            "cluster": {"discovery": {"mode": "static", "static": {"peers": peers}}},
        }
        if self.data:
            config["node"]["data_dir"] = str(self.workdir / node.name)
        path = self.workdir / f"{node.name}.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def start(self, *, timeout: float = 60.0) -> None:
        for node in self.nodes:
            log = open(self.workdir / f"{node.name}.log", "ab")
            env = {k: v for k, v in os.environ.items() if not k.startswith("LEADERBOARD_")}
            node.process = subprocess.Popen(
                [sys.executable, "-m", "leaderboard_node.cli", "--config", str(self._config(node))],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )
            log.close()
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            with LeaderboardClient(node.url, timeout=2) as client:
                while True:
                    if node.process is not None and node.process.poll() is not None:
                        raise RuntimeError(f"{node.name} exited; see {self.workdir / (node.name + '.log')}")
                    try:
                        if client.ready():
                            break
                    except OSError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{node.name} was not ready within {timeout}s")
                    time.sleep(0.1)

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    node.process.kill()


def load_sample_data(urls: list[str], *, players: int = 1000, seed: int = 1) -> dict[str, int]:
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
    return {"records": written, "players": players, "first_owner": owners[0]}  # type: ignore[dict-item]
