"""Processes the bench starts: leaderboard nodes, redis-server instances and the client
(load generator) process. Each one runs in a process group of its own and is registered
here, so that ``stop_all`` (called from ``finally`` and at exit) kills every one of them,
also after Ctrl-C or a failure."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from leaderboard_client import ApiError, LeaderboardClient

HOST = "127.0.0.1"
_started: list[subprocess.Popen[bytes]] = []


class BenchError(RuntimeError):
    pass


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the bench process dies (even by SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _popen(args: list[str], *, log_path: Path, env: dict[str, str] | None = None,
           stdin: Any = subprocess.DEVNULL, stdout: Any = None) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")
    try:
        process = subprocess.Popen(args, stdin=stdin, stdout=stdout if stdout is not None else log,
                                   stderr=log, env=env, start_new_session=True, preexec_fn=_die_with_parent)
    finally:
        log.close()
    _started.append(process)
    return process


def kill_group(process: subprocess.Popen[bytes], *, grace: float = 3.0, sig: int = signal.SIGTERM) -> None:
    """Stop a process and its group: ``sig`` first, SIGKILL after ``grace`` seconds."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:  # the leader may be gone while children of its group live on
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    if process in _started:
        _started.remove(process)


def stop_all() -> None:
    for process in list(_started):
        kill_group(process, grace=1.0)


atexit.register(stop_all)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def rss_of(pid: int) -> int:
    """Resident set size of a process, from /proc/PID/statm."""
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(predicate: Any, *, timeout: float, interval: float = 0.02, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (OSError, BenchError):
            last = None
        if last:
            return last
        time.sleep(interval)
    raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")


class Workdir:
    """A temporary directory for configs and logs; kept (and named) when a run fails."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="leaderboard-bench-"))

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


# ---------------------------------------------------------------------------- nodes


@dataclass
class Node:
    name: str
    workdir: Path
    settings: dict[str, Any] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.port = free_port()
        self.peer_port = free_port()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def peer_address(self) -> str:
        return f"{HOST}:{self.peer_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def config(self) -> dict[str, Any]:
        base = {
            "node": {"name": self.name, "listen": f"{HOST}:{self.port}", "peer_listen": self.peer_address},
            "log": {"level": "warning", "format": "json"},
            # bodies of 10,000-record batches; every other setting is the node's default
            "limits": {"max_body_bytes": 16 * 1024 * 1024, "max_batch_records": 10_000},
        }
        return _merge(base, self.settings)

    def start(self) -> Node:
        path = self.workdir / f"{self.name}.yaml"
        path.write_text(yaml.safe_dump(self.config()))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADERBOARD_")}
        self.process = _popen([sys.executable, "-m", "leaderboard_node.cli", "--config", str(path)],
                              log_path=self.log_path, env=env)
        return self

    def ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise BenchError(f"{self.name} exited with {self.process.returncode}: see {self.log_path}")
        with LeaderboardClient(self.url, timeout=2) as client:
            return client.ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.ready():
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise BenchError(f"{self.name} was not ready within {timeout:.0f}s: see {self.log_path}")

    def count(self, board: str) -> int:
        """Records of the board on this node (``rank_count``); -1 while it has no such board."""
        with LeaderboardClient(self.url, timeout=5) as client:
            try:
                return int(client.records(board, limit=1)["rank_count"])
            except ApiError as exc:
                if exc.status == 404:
                    return -1
                raise

    def rss(self) -> int:
        assert self.process is not None
        return rss_of(self.process.pid)

    def state_digest(self) -> str:
        """The node's state digest: empty while some bucket's digest is still settling."""
        with LeaderboardClient(self.url, timeout=5) as client:
            return str(client.cluster()["node"].get("state_digest") or "")

    def stop(self, *, kill: bool = True) -> None:
        if self.process is not None:
            kill_group(self.process, sig=signal.SIGKILL if kill else signal.SIGTERM, grace=5.0)


def cluster(workdir: Path, size: int, prefix: str = "node") -> list[Node]:
    nodes = [Node(f"{prefix}-{i}", workdir) for i in range(size)]
    for node in nodes:
        peers = [f"{other.name}={other.peer_address}" for other in nodes if other is not node]
        node.settings = {"cluster": {"discovery": {"mode": "static", "static": {"peers": peers}}}}
    return nodes


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# ---------------------------------------------------------------------------- redis

REDIS_SERVER = "redis-server"


def redis_available() -> bool:
    return shutil.which(REDIS_SERVER) is not None


def redis_version() -> str | None:
    if not redis_available():
        return None
    out = subprocess.run([REDIS_SERVER, "--version"], capture_output=True, text=True, timeout=10).stdout
    for part in out.split():
        if part.startswith("v="):
            return part[2:]
    return out.strip() or None


@dataclass
class Redis:
    """One redis-server: no persistence, loopback only; a master has diskless sync tuned."""

    name: str
    workdir: Path
    replica_of: Redis | None = None
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.port = free_port()

    @property
    def address(self) -> tuple[str, int]:
        return HOST, self.port

    def args(self) -> list[str]:
        data = self.workdir / self.name
        data.mkdir(parents=True, exist_ok=True)
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no",
                "--dir", str(data), "--daemonize", "no", "--protected-mode", "no", "--logfile", "",
                # full resync tuned as the bench README says: diskless, no delay
                "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
        if self.replica_of is not None:
            args += ["--replicaof", HOST, str(self.replica_of.port)]
        return args

    def start(self) -> Redis:
        self.process = _popen(self.args(), log_path=self.workdir / f"{self.name}.log")
        return self

    def client(self) -> Any:
        import redis

        return redis.Redis(host=HOST, port=self.port, socket_timeout=30)

    def wait_ready(self, timeout: float = 20.0) -> None:
        def pong() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise BenchError(f"{self.name} exited: see {self.workdir / (self.name + '.log')}")
            import redis

            try:
                with self.client() as client:
                    return bool(client.ping())
            except redis.exceptions.RedisError:
                return False

        wait_for(pong, timeout=timeout, what=f"{self.name} to answer PING")

    def stop(self) -> None:
        if self.process is not None:
            kill_group(self.process, sig=signal.SIGKILL, grace=2.0)


# ---------------------------------------------------------------------------- client process


class LoadClient:
    """The load generator, a separate Python process (``python -m bench.loadgen``): one JSON
    command per line on its stdin, one JSON answer per line on its stdout."""

    def __init__(self, workdir: Path, name: str = "loadgen") -> None:
        self.log_path = workdir / f"{name}.log"
        self.process = _popen([sys.executable, "-m", "bench.loadgen"], log_path=self.log_path,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": _pythonpath()})
        hello = self.call({"cmd": "hello"}, timeout=60)
        self.info = hello

    def call(self, command: dict[str, Any], *, timeout: float = 300.0) -> dict[str, Any]:
        import select

        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            raise BenchError(f"the client process did not answer {command['cmd']} within {timeout:.0f}s")
        line = self.process.stdout.readline()
        if not line:
            raise BenchError(f"the client process exited: see {self.log_path}")
        answer = json.loads(line)
        if "error" in answer:
            raise BenchError(f"client process: {answer['error']}")
        return answer

    def close(self) -> None:
        kill_group(self.process, grace=2.0)


def _pythonpath() -> str:
    root = str(Path(__file__).resolve().parent.parent)
    existing = os.environ.get("PYTHONPATH")
    return f"{root}{os.pathsep}{existing}" if existing else root
