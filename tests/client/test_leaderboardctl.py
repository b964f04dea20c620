"""``leaderboardctl``: a local cluster from one command, then the commands a user types."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import time

from ..harness import wait_until


def _ctl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "leaderboard_client.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def base_port(count: int = 6) -> int:
    """The first of ``count`` free ports in a row, below the kernel's ephemeral range (32768 and
    up on Linux), where no outgoing connection of another test can take one of them meanwhile."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32768 - count)
        try:
            for port in range(base, base + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise AssertionError("no free run of ports")  # pragma: no cover


def test_a_local_cluster_starts_loads_sample_data_and_answers_every_command():
    base = base_port()
    local = subprocess.Popen([sys.executable, "-m", "leaderboard_client.cli", "local", "--nodes", "2",
                              "--base-port", str(base), "--sample-data", "--players", "200", "--exit-after", "20"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = local.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("press") or "try it" in line:
                break
        assert any("the cluster is ready" in line for line in lines), "".join(lines)
        first, second = f"http://127.0.0.1:{base}", f"http://127.0.0.1:{base + 2}"
        top = _ctl("--url", second, "top", "global", "--limit", "3")
        assert top.returncode == 0 and "(200 records)" in top.stdout, top.stdout + top.stderr
        assert _ctl("--url", first, "create", "fresh").returncode == 0
        wait_until(lambda: _ctl("--url", second, "submit", "fresh", "p1", "5").returncode == 0,
                   message="the new leaderboard on the second node")
        wait_until(lambda: "all equal" in _ctl("--url", first, "digests", "fresh").stdout,
                   message="equal digests on both nodes")
        cluster = _ctl("--url", first, "cluster")
        assert "node-1" in cluster.stdout and "ready" in cluster.stdout, cluster.stdout
        missing = _ctl("--url", first, "around", "no-such-board", "p1")
        assert missing.returncode == 1 and "leaderboard_not_found" in missing.stderr
    finally:
        local.terminate()
        local.wait(timeout=30)
    # Stopping leaderboardctl stopped its nodes.
    wait_until(lambda: _ctl("--url", f"http://127.0.0.1:{base}", "cluster", timeout=10).returncode == 1,
               message="the local nodes to be gone")


# ------------------------------------------------------------- supervision and ports


class _Local:
    """``leaderboardctl local`` as a process, its output read line by line as it comes."""

    def __init__(self, *args: str) -> None:
        import queue
        import threading

        self.process = subprocess.Popen([sys.executable, "-m", "leaderboard_client.cli", "local", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, *, timeout: float = 60) -> str:
        import queue

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} in:\n{''.join(self.lines)}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout=30)


def test_the_local_cluster_restarts_a_killed_node_with_backoff_and_reports_it():
    import os
    import re
    import signal

    base = base_port()
    local = _Local("--nodes", "2", "--base-port", str(base), "--exit-after", "90")
    try:
        config = local.wait_for("node-1: config ")
        log = local.wait_for("node-1: log ")
        assert config.strip().endswith("node-1.yaml") and log.strip().endswith("node-1.log")
        pid = int(re.search(r"pid (\d+)", local.wait_for("node-1: client API")).group(1))
        local.wait_for("try it")
        first, second = f"http://127.0.0.1:{base}", f"http://127.0.0.1:{base + 2}"
        assert _ctl("--url", first, "create", "watched").returncode == 0
        os.kill(pid, signal.SIGKILL)
        exited = local.wait_for("node-1 (pid")
        assert f"(pid {pid}) exited with code -9 (killed by SIGKILL)" in exited and "node-1.log" in exited
        assert "restarting node-1 in 1 s (restart 1)" in local.wait_for("restarting node-1")
        new_pid = int(re.search(r"\(pid (\d+)\)", local.wait_for("node-1 restarted")).group(1))
        assert new_pid != pid
        assert "full sync" in local.wait_for("node-1 is ready again")
        assert _ctl("--url", second, "get", "watched").returncode == 0  # it resynced what it lost
        os.kill(new_pid, signal.SIGKILL)  # again at once: the backoff doubles
        local.wait_for(f"(pid {new_pid}) exited")
        assert "restarting node-1 in 2 s (restart 2)" in local.wait_for("restarting node-1")
        local.wait_for("node-1 is ready again")
        assert _ctl("--url", first, "cluster").returncode == 0  # node-0 never stopped
    finally:
        assert local.stop() == 0
    wait_until(lambda: _ctl("--url", f"http://127.0.0.1:{base + 2}", "cluster", timeout=10).returncode == 1,
               message="the restarted node to be stopped with the cluster")


def test_a_taken_port_is_named_before_any_node_starts():
    base = base_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", base + 3))  # node-1's peer port
        holder.listen()
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "leaderboard_client.cli", "local", "--nodes", "2",
                                 "--base-port", str(base)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"127.0.0.1:{base + 3} (node-1's peer endpoint: address already in use)" in result.stderr
    assert "--base-port" in result.stderr and "ready" not in result.stdout
    assert time.monotonic() - started < 10
    assert _ctl("--url", f"http://127.0.0.1:{base}", "cluster", timeout=10).returncode == 1  # nothing left running


def test_a_second_local_cluster_on_the_same_ports_says_which_are_taken():
    base = base_port()
    first = _Local("--nodes", "1", "--base-port", str(base), "--exit-after", "60")
    try:
        first.wait_for("try it")
        second = subprocess.run([sys.executable, "-m", "leaderboard_client.cli", "local", "--nodes", "1",
                                 "--base-port", str(base)], capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert f"127.0.0.1:{base} (node-0's client API" in second.stderr
        assert "the cluster is ready" not in second.stdout
        assert _ctl("--url", f"http://127.0.0.1:{base}", "cluster").returncode == 0  # the first one is untouched
    finally:
        assert first.stop() == 0
