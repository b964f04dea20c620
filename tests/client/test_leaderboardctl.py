"""``leaderboardctl``: a local cluster from one command, then the commands a user types."""

from __future__ import annotations

import subprocess
import sys
import time

from ..harness import free_port, wait_until


def _ctl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "leaderboard_client.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_a_local_cluster_starts_loads_sample_data_and_answers_every_command():
    base = free_port("127.0.0.1")
    while base + 5 > 65535:  # pragma: no cover
        base = free_port("127.0.0.1")
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
