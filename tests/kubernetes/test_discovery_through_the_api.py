"""
The node's Kubernetes discovery against the emulated API, in process (no node, no operator):
the list, then the watch, with kmock ignoring the label selector as a careless API would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import aiohttp

from leaderboard_node.config import KubernetesDiscoverySettings
from leaderboard_node.replication.peers import Peer
from leaderboard_node.transport.kubernetes_discovery import KubernetesDiscovery
from leaderboard_operator import resources

from ..operator.conftest import NAMESPACE, Cluster, kmock_key
from .kubelet import wait_for

LABELS = {"app.kubernetes.io/name": "leaderboard-node", "app.kubernetes.io/instance": "lb"}
SELECTOR = ",".join(f"{key}={value}" for key, value in LABELS.items())


def pod(name: str, ip: str | None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels if labels is not None else LABELS},
            "status": {"phase": "Running", "podIP": ip}}


async def peers_become(nodes: KubernetesDiscovery, expected: list[Peer], what: str) -> None:
    async def check() -> bool:
        found = await nodes.peers()
        assert found == expected, found
        return True

    await wait_for(check, timeout=5, what=what)


def discovery(cluster: Cluster, tmp_path: Path, *, self_host: str) -> KubernetesDiscovery:
    token = tmp_path / "token"
    token.write_text("dummy-token\n")
    settings = KubernetesDiscoverySettings(namespace=NAMESPACE, label_selector=SELECTOR, port=7351,
                                           api_server=str(cluster.kmock.url), token_file=token, ca_file=None)
    return KubernetesDiscovery(settings, self_host=self_host)


async def test_discovery_lists_then_follows_the_pods_of_its_cluster(cluster: Cluster, tmp_path: Path) -> None:
    await cluster.request("POST", resources.PODS.url(namespace=NAMESPACE), json=pod("lb-0", "10.0.0.1"))
    await cluster.request("POST", resources.PODS.url(namespace=NAMESPACE), json=pod("lb-1", "10.0.0.2"))
    await cluster.request("POST", resources.PODS.url(namespace=NAMESPACE),
                          json=pod("other-0", "10.0.0.9", {**LABELS, "app.kubernetes.io/instance": "other"}))
    nodes = discovery(cluster, tmp_path, self_host="10.0.0.1")
    try:
        assert await nodes.peers() == [Peer("10.0.0.2:7351", "lb-1")]  # itself and the other cluster left out

        await cluster.request("POST", resources.PODS.url(namespace=NAMESPACE), json=pod("lb-2", None))
        await cluster.patch(resources.PODS, "lb-2", {"status": {"podIP": "10.0.0.3"}})  # scheduled later
        await peers_become(nodes, [Peer("10.0.0.2:7351", "lb-1"), Peer("10.0.0.3:7351", "lb-2")], "lb-2 once it has an IP")

        await cluster.patch(resources.PODS, "lb-1", {"metadata": {"finalizers": ["test/hold"]}})
        await cluster.delete(resources.PODS, "lb-1")  # terminating: kmock keeps it for its finalizer
        await peers_become(nodes, [Peer("10.0.0.3:7351", "lb-2")], "lb-1 gone while terminating")
        await cluster.delete(resources.PODS, "lb-2")
        await peers_become(nodes, [], "lb-2 gone once deleted")
    finally:
        await nodes.close()
    watches = [r for r in cluster.kmock if r.params.get("watch") == "true"]
    assert watches and all(r.headers.get("Authorization") == "Bearer dummy-token" for r in watches)
    assert nodes.errors == 0


async def test_an_ipv6_node_does_not_list_itself(cluster: Cluster, tmp_path: Path) -> None:
    await cluster.request("POST", resources.PODS.url(namespace=NAMESPACE), json=pod("lb-0", "fd00::1"))
    await cluster.request("POST", resources.PODS.url(namespace=NAMESPACE), json=pod("lb-1", "fd00::2"))
    nodes = discovery(cluster, tmp_path, self_host="fd00::1")  # as status.podIP gives it
    try:
        assert await nodes.peers() == [Peer("[fd00::2]:7351", "lb-1")]
    finally:
        await nodes.close()


async def test_a_watch_gets_what_changes_while_it_streams_the_existing_objects(cluster: Cluster) -> None:
    """The event of a pod created while a slow watcher is still taking the snapshot arrives
    (kmock 0.8's own watch loses it; :class:`WatchingApiServer` subscribes before the snapshot)."""
    padding = "x" * 40_000  # enough existing pods to fill the socket buffers: the stream suspends
    for i in range(150):
        cluster.kmock.objects[kmock_key(resources.PODS), NAMESPACE, f"old-{i}"] = {
            "metadata": {"name": f"old-{i}", "namespace": NAMESPACE}, "spec": {"padding": padding}}
    url = resources.PODS.url(namespace=NAMESPACE)
    async with aiohttp.ClientSession(base_url=str(cluster.kmock.url)) as session:
        async with session.get(url, params={"watch": "true"}) as response:
            await asyncio.sleep(0.3)  # a busy watcher: the server is stuck writing the snapshot
            await cluster.request("POST", url, json=pod("lb-9", "10.0.0.9"))
            seen: list[str] = []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    async for line in response.content:
                        if line.strip():
                            seen.append(json.loads(line)["object"]["metadata"]["name"])
                            if seen[-1] == "lb-9":
                                break
    assert len(seen) >= 151 and seen[-1] == "lb-9", f"the watch sent {len(seen)} events, the last {seen[-1:]}"
