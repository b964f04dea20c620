"""Peer discovery: static lists, DNS names, Kubernetes pods."""

from __future__ import annotations

import pytest

from leaderboard_node.config import KubernetesDiscoverySettings
from leaderboard_node.replication.peers import Peer
from leaderboard_node.transport.discovery import DnsDiscovery, StaticDiscovery
from leaderboard_node.transport.kubernetes_discovery import member_of, parse_selector


async def test_a_static_list_names_its_peers_and_skips_the_node_itself():
    discovery = StaticDiscovery(["a=127.0.0.2:7351", "b=127.0.0.3:7351", "127.0.0.4:7351"],
                                self_address="127.0.0.3:7351")
    assert await discovery.peers() == [Peer("127.0.0.2:7351", "a"), Peer("127.0.0.4:7351", None)]


def test_a_static_peer_without_a_port_is_refused():
    with pytest.raises(ValueError):
        StaticDiscovery(["a=127.0.0.2"])


async def test_dns_discovery_turns_every_address_of_a_name_into_a_peer():
    peers = await DnsDiscovery("localhost", 7351).peers()
    assert Peer("127.0.0.1:7351") in peers


async def test_dns_discovery_of_an_unknown_name_finds_nobody():
    assert await DnsDiscovery("no-such-host.invalid", 7351).peers() == []


def _pod(name, *, ip="10.0.0.5", labels=None, deleting=False, phase="Running"):
    metadata = {"name": name, "labels": labels if labels is not None else {"app": "lb", "instance": "x"}}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": metadata, "status": {"podIP": ip, "phase": phase}}


def test_pods_become_peers_unless_terminating_unaddressed_finished_or_foreign():
    labels = parse_selector("app=lb, instance==x, tier!=db")
    assert labels == {"app": "lb", "instance": "x"}
    assert member_of(_pod("x-0"), labels=labels, port=7351) == Peer("10.0.0.5:7351", "x-0")
    assert member_of(_pod("x-1", deleting=True), labels=labels, port=7351) is None
    assert member_of(_pod("x-2", ip=None), labels=labels, port=7351) is None
    assert member_of(_pod("x-3", phase="Failed"), labels=labels, port=7351) is None
    assert member_of(_pod("y-0", labels={"app": "lb", "instance": "y"}), labels=labels, port=7351) is None
    assert member_of(_pod("x-4", ip="fd00::5"), labels=labels, port=7351) == Peer("[fd00::5]:7351", "x-4")


def test_kubernetes_discovery_outside_a_pod_needs_an_api_server(monkeypatch):
    from leaderboard_node.transport.kubernetes_discovery import KubernetesDiscovery

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ValueError):
        KubernetesDiscovery(KubernetesDiscoverySettings(namespace="ns"))
