"""``leaderboardctl cluster`` and ``digests`` against a real cluster with a member down."""

from __future__ import annotations

import calendar
import json
import os
import subprocess
import sys
import time

import pytest

from ..harness import Cluster, wait_until

EXIT_DIFFERENT = 3


def ctl(*args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LEADERBOARD_")}
    return subprocess.run([sys.executable, "-m", "leaderboard_client.cli", *args], capture_output=True, text=True,
                          timeout=30, env=environ)


@pytest.fixture
def cluster(tmp_path):
    nodes = Cluster.create(tmp_path, 3, prefix="ctl").start()
    yield nodes
    nodes.stop()


def test_equal_digests_exit_zero(cluster):
    first = cluster.nodes[0]
    with first.client() as client:
        client.create_leaderboard("same")
        client.write_record("same", "p1", 5)
    cluster.wait_converged(["same"])
    result = ctl("--url", first.url, "digests", "same")
    assert result.returncode == 0 and result.stdout.splitlines()[-1] == "all equal"
    assert len(result.stdout.splitlines()) == 5  # header, three nodes, verdict


def test_a_dead_member_is_unreachable_since_when_in_cluster_and_digests(cluster):
    first, dead = cluster.nodes[0], cluster.nodes[2]
    with first.client() as client:
        client.create_leaderboard("watched")
    cluster.wait_converged(["watched"])
    killed_at = time.time()
    dead.kill()

    def shows_unreachable() -> str | None:
        out = ctl("--url", first.url, "cluster").stdout
        row = next((line for line in out.splitlines() if line.startswith(dead.name)), "")
        return row if "unreachable" in row else None

    row = wait_until(shows_unreachable, timeout=30, message=f"{dead.name} shown unreachable")
    assert "ready" not in row and " ago)" in row  # since when, and how long ago
    since = calendar.timegm(time.strptime(" ".join(row.split()[2:4]), "%Y-%m-%d %H:%M:%S"))
    assert killed_at - 120 < since < killed_at + 30

    digests = ctl("--url", first.url, "digests", "watched")
    assert digests.returncode == EXIT_DIFFERENT, digests.stdout + digests.stderr
    dead_row = next(line for line in digests.stdout.splitlines() if line.startswith(dead.name))
    assert "UNREACHABLE" in dead_row and "DIFFERENT" not in digests.stdout
    assert digests.stdout.splitlines()[-1].startswith("UNREACHABLE")

    as_json = json.loads(ctl("--url", first.url, "digests", "watched", "--json").stdout)
    assert as_json["verdict"] == "unreachable"
    assert {m["node"]: m["state"] for m in as_json["members"]}[dead.name] == "unreachable"


def test_a_member_that_answers_differently_is_different(tmp_path):
    # the third node has API keys the others do not: its answer cannot match theirs
    cluster = Cluster.create(tmp_path, 3, prefix="odd")
    cluster.nodes[2].env = {"LEADERBOARD_AUTH__SERVER_KEY": "odd-one-out-server-key-0123"}
    cluster.start()
    try:
        with cluster.nodes[0].client() as client:
            client.create_leaderboard("compared")
        wait_until(lambda: len(json.loads(ctl("--url", cluster.nodes[0].url, "cluster", "--json").stdout)
                               ["members"]) == 2, message="both members known")
        result = ctl("--url", cluster.nodes[0].url, "digests", "compared")
        assert result.returncode == EXIT_DIFFERENT
        assert result.stdout.splitlines()[-1] == "DIFFERENT"
        assert "api_key_missing" in next(line for line in result.stdout.splitlines() if line.startswith("odd-2"))
    finally:
        cluster.stop()


def test_the_state_and_time_a_node_reports_for_an_unreachable_member_are_shown():
    # GET /v1/cluster names a member it cannot reach "unreachable" with "unreachable_since"
    # (Unix seconds); an older node only says reachable: false and when it last saw the member
    from leaderboard_client.cli import member_state

    now = 1_800_000_000.0
    reported = {"name": "n2", "state": "unreachable", "reachable": False, "unreachable_since": now - 90}
    assert member_state(reported, now) == ("unreachable", "2027-01-15 07:58:30 (90 s ago)")
    older = {"name": "n2", "state": "ready", "reachable": False, "last_seen_seconds_ago": 4000.0}
    assert member_state(older, now) == ("unreachable", "2027-01-15 06:53:20 (66 min ago)")
    never = {"name": "n2", "state": "starting", "reachable": False, "last_seen_seconds_ago": None}
    assert member_state(never, now) == ("unreachable", "never reached")
    assert member_state({"name": "n1", "state": "ready", "reachable": True}, now) == ("ready", "")
