"""Reset and end events across real node processes: the same events in the same order on every
node (across a restart and a full sync), and webhook deliveries that survive a deliverer killed
mid-delivery and a receiver that is down for a while.

Tournaments without a reset schedule end at their ``end_time``, which can be a few seconds
away: that is how these tests make periods end (cron schedules turn over once a minute at most).
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from leaderboard_client import LeaderboardClient
from leaderboard_node.replication.events import choose

from ..harness import Cluster, NodeProcess, has_leaderboard, wait_until
from ..webhooks import Receiver

SECRET = "webhook-secret-for-tests-0123456789"
FAST = {"grace": 0.3, "retry_initial": 0.1, "retry_max": 0.5, "webhook_timeout": 5}


def _secret_file(tmp_path: Path) -> str:
    path = tmp_path / "webhook-secret"
    path.write_text(SECRET + "\n")
    return str(path)


def _events(node: NodeProcess, **query) -> list[dict]:
    with node.client(timeout=10) as client:
        return client.events(**query)["events"]


def _cups(client: LeaderboardClient, ends: list[int], *, prefix: str = "cup") -> list[str]:
    """A tournament ending at each of ``ends``, each with two records."""
    ids = []
    for i, end in enumerate(ends):
        cup = f"{prefix}-{i}"
        client.create_tournament(cup, duration=600, end_time=end)
        client.write_record(cup, "alice", 10 + i)
        client.write_record(cup, "bob", 20 + i)
        ids.append(cup)
    return ids


def _everywhere(cluster: Cluster, *boards: str) -> None:
    clients = cluster.clients()
    wait_until(lambda: all(has_leaderboard(c, b) for c in clients for b in boards), message=f"{boards} everywhere")
    for client in clients:
        client.close()


def test_events_are_the_same_in_the_same_order_on_every_node_across_a_restart_and_a_full_sync(cluster_factory):
    cluster = cluster_factory(3, data=True, settings={"events": FAST}).start()
    a, b, c = cluster.nodes
    end = int(time.time()) + 4  # time to create them and write, even on a busy machine
    with a.client() as client:
        cups = _cups(client, [end, end, end + 1])
    _everywhere(cluster, *cups)
    with b.client() as client:  # a write on another node, accepted before the end: in the standings
        client.write_record(cups[0], "carol", 99)
    for node in cluster.nodes:
        wait_until(lambda: len(_events(node)) == 3, timeout=15, message=f"3 events on {node.name}")
    reference = _events(a)
    assert [e["leaderboard_id"] for e in reference][-1] == cups[2]  # in event order: the later end last
    assert [r["owner_id"] for r in next(e for e in reference if e["leaderboard_id"] == cups[0])["records"]] == [
        "carol", "bob", "alice"]
    assert all(e["kind"] == "tournament_end" and e["rank_count"] in (2, 3) for e in reference)
    for node in (b, c):
        assert _events(node) == reference, node.name

    # A reader paging one event at a time, from a different node at each page, reads each once.
    read, cursor = [], None
    for node in [b, c, a, b]:
        with node.client() as client:
            page = client.events(after=cursor, limit=1)
        read += [e["id"] for e in page["events"]]
        cursor = page["next_cursor"]
    assert read == [e["id"] for e in reference]

    b.kill()  # a restart: b replays its log
    b.start()
    assert _events(b) == reference
    c.kill()  # a restart without data: c full-syncs from a peer
    shutil.rmtree(Path(c.settings["node"]["data_dir"]))
    c.start()
    assert _events(c) == reference
    with c.client() as client:
        assert client.cluster()["node"]["last_full_sync"] is not None

    # A long poll on c returns the next event as soon as it is produced.
    with a.client() as client:
        client.create_tournament("late-cup", duration=600, end_time=int(time.time()) + 2)
    with c.client(timeout=30) as client:
        started = time.monotonic()
        page = client.events(after=cursor, wait=20)
    assert [e["leaderboard_id"] for e in page["events"]] == ["late-cup"]
    assert time.monotonic() - started < 10
    cluster.assert_logs_clean()


def _metric(node: NodeProcess, name: str) -> float:
    with node.client() as client:
        status, body = client.request_raw("GET", "/metrics")
    return sum(float(value) for value in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", body.decode(), flags=re.M))


def test_a_period_ending_while_its_deliverer_is_killed_mid_delivery_reaches_the_receiver_once_per_key(
        cluster_factory, tmp_path):
    receiver = Receiver().start()
    receiver.hold()  # the first delivery is read, then left unanswered: in flight
    try:
        cluster = cluster_factory(3, settings={"events": {**FAST, "webhooks": [{"url": receiver.url}],
                                                          "webhook_secret_file": _secret_file(tmp_path)}}).start()
        names = {node.name for node in cluster.nodes}
        deliverer = next(n for n in cluster.nodes if n.name == choose(f"deliver\x00node:{receiver.url}", names))
        survivor = next(n for n in cluster.nodes if n is not deliverer)
        end = int(time.time()) + 3
        with survivor.client() as client:
            cups = _cups(client, [end, end + 1])
        _everywhere(cluster, *cups)
        wait_until(receiver.held.is_set, timeout=15, message="the first delivery in flight")
        deliverer.kill()
        killed_at = time.time()
        receiver.release()
        wait_until(lambda: len(receiver.unique()) == 2, timeout=20, message="both events after the failover")
        taken_over = next(d for d in receiver.received()[1:]).received_at - killed_at
        held = receiver.received()[0]
        kept = receiver.unique()
        events = _events(survivor)
        assert [d.key for d in kept] == [e["id"] for e in events]  # every event, in event order
        assert [d.event for d in kept] == events
        assert held.key == kept[0].key
        assert sum(d.key == held.key for d in receiver.received()) == 2  # the one in flight came twice
        assert taken_over < 5, f"another node took over after {taken_over:.1f} s"
        time.sleep(1.0)  # nothing more arrives: progress replicated, no other redelivery
        assert len(receiver.received()) == 3
    finally:
        receiver.release()
        receiver.stop()


def test_a_receiver_down_for_a_while_gets_every_event_in_order_once_it_is_up(cluster_factory, tmp_path):
    receiver = Receiver()  # not started: connections to it are refused
    cluster = cluster_factory(1, settings={"events": {**FAST, "webhooks": [{"url": receiver.url, "name": "game"}],
                                                      "webhook_secret_file": _secret_file(tmp_path)}}).start()
    (node,) = cluster.nodes
    end = int(time.time()) + 3
    with node.client() as client:
        _cups(client, [end, end, end + 1])
    wait_until(lambda: _metric(node, "leaderboard_event_deliveries_total") >= 3, timeout=20,
               message="deliveries failing while the receiver is down")
    assert _metric(node, "leaderboard_event_delivery_lag_seconds") > 0
    receiver.start()
    try:
        wait_until(lambda: len(receiver.received()) == 3, timeout=20, message="every event once the receiver is up")
        events = _events(node)
        assert [d.key for d in receiver.received()] == [e["id"] for e in events]  # in order, each once
        assert [d.headers["Leaderboard-Event-Kind"] for d in receiver.received()] == ["tournament_end"] * 3
        with node.client() as client:
            metrics = client.request_raw("GET", "/metrics")[1].decode()
        assert 'leaderboard_event_deliveries_total{outcome="delivered",webhook="game"} 3.0' in metrics
        assert 'leaderboard_events_produced_total{kind="tournament_end"} 3.0' in metrics
    finally:
        receiver.stop()


def _readme_verifier():
    """The verification recipe of the README, run as it is printed there."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (code,) = [block for block in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "def verify" in block]
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - the README's own example
    return namespace["verify"]


def test_deliveries_verify_with_the_documented_recipe_and_tampering_does_not(cluster_factory, tmp_path):
    receiver = Receiver().start()
    try:
        cluster = cluster_factory(1, settings={"events": {**FAST, "webhook_secret_file": _secret_file(tmp_path)}})
        cluster.start()
        (node,) = cluster.nodes
        with node.client() as client:
            client.create_tournament("cup", duration=600, end_time=int(time.time()) + 3)
            client.write_record("cup", "alice", 5)
            client.update_leaderboard("cup", webhook_url=receiver.url, event_top=1)  # the board's own webhook
        wait_until(lambda: receiver.received(), timeout=15, message="a delivery")
        (delivery,) = receiver.received()
        verify = _readme_verifier()
        header = delivery.headers["Leaderboard-Signature"]
        assert verify(SECRET, header, delivery.body) is True
        assert delivery.event["records"][0]["owner_id"] == "alice" and delivery.event["top_limit"] == 1
        assert verify(SECRET, header, delivery.body.replace(b"alice", b"mallory")) is False
        assert verify("another-secret-0123456789", header, delivery.body) is False
        stale = re.sub(r"t=(\d+)", lambda m: f"t={int(m.group(1)) - 3600}", header)
        assert verify(SECRET, stale, delivery.body) is False  # the timestamp is signed: an old one is refused
        assert verify(SECRET, "garbage", delivery.body) is False
    finally:
        receiver.stop()
