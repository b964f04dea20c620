"""Kubernetes discovery: the cluster's pods, listed and watched through the Kubernetes API.

The node's ServiceAccount may get, list and watch pods in its namespace (the operator renders
that Role). Members are the pods that match the label selector, have an IP, are not being
deleted and have not terminated; each becomes a ``Peer`` at ``podIP:port`` named after the pod.

A background task keeps the member list current: a list (which gives a resourceVersion),
then a watch from it; when the watch ends or fails, list again after a short pause. The label
selector is also applied here (equality terms), so an API server that ignores it (test
emulators) still yields the right pods. Plain aiohttp, because the node is asynchronous and
needs only these two calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from ..config import ConfigError, KubernetesDiscoverySettings
from ..replication.peers import Peer

log = logging.getLogger("leaderboard_node.kubernetes_discovery")
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def parse_selector(selector: str) -> dict[str, str]:
    """Equality terms of a label selector (``a=b,c==d``); other terms are left to the server."""
    terms: dict[str, str] = {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term or "=" not in term:
            continue
        key, _, value = term.replace("==", "=").partition("=")
        terms[key.strip()] = value.strip()
    return terms


def member_of(pod: dict[str, Any], *, labels: dict[str, str], port: int) -> Peer | None:
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    pod_labels = metadata.get("labels") or {}
    if any(pod_labels.get(k) != v for k, v in labels.items()):
        return None
    if metadata.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
        return None
    ip = status.get("podIP")
    if not ip or not metadata.get("name"):
        return None
    host = f"[{ip}]" if ":" in ip else ip
    return Peer(address=f"{host}:{port}", name=metadata["name"])


class KubernetesApi:
    """How this node reaches the Kubernetes API: its URL, its CA and the ServiceAccount token
    (``cluster.discovery.kubernetes``; used by discovery and by certificate requests)."""

    def __init__(self, settings: KubernetesDiscoverySettings) -> None:
        self.settings = settings
        if settings.api_server:
            self.url = settings.api_server.rstrip("/")
        else:
            host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            if not host:
                raise ConfigError("cluster.discovery.kubernetes.api_server",
                                  "reaching the Kubernetes API outside a pod needs the API server's URL "
                                  "(KUBERNETES_SERVICE_HOST is not set)",
                                  "set it, or use cluster.discovery.mode static or dns")
            self.url = f"https://{host}:{port}"

    def ssl(self) -> ssl.SSLContext | bool:
        if not self.url.startswith("https"):
            return False
        ca = self.settings.ca_file
        return ssl.create_default_context(cafile=str(ca)) if ca is not None and ca.exists() else True

    def headers(self) -> dict[str, str]:
        token_file = self.settings.token_file
        if token_file.exists():  # read every time: the kubelet rotates it
            return {"Authorization": f"Bearer {token_file.read_text().strip()}"}
        return {}


class KubernetesDiscovery:
    def __init__(self, settings: KubernetesDiscoverySettings, *, self_host: str | None = None) -> None:
        self.settings = settings
        self.self_host = self_host
        self.namespace = settings.namespace or (
            NAMESPACE_FILE.read_text().strip() if NAMESPACE_FILE.exists() else "default")
        self.api = KubernetesApi(settings)
        self.api_server = self.api.url
        self.labels = parse_selector(settings.label_selector)
        self._pods: dict[str, dict[str, Any]] = {}
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.errors = 0

    def _ssl(self) -> ssl.SSLContext | bool:
        return self.api.ssl()

    def _headers(self) -> dict[str, str]:
        return self.api.headers()

    def _url(self, **query: str) -> str:
        params = {"labelSelector": self.settings.label_selector, **query}
        return f"{self.api_server}/api/v1/namespaces/{self.namespace}/pods?{urlencode(params)}"

    async def _list(self, session: aiohttp.ClientSession) -> str:
        async with session.get(self._url(), headers=self._headers(), ssl=self._ssl(),
                               timeout=aiohttp.ClientTimeout(total=10)) as response:
            response.raise_for_status()
            body = await response.json(content_type=None)
        self._pods = {item["metadata"]["name"]: item for item in body.get("items", [])
                      if item.get("metadata", {}).get("name")}
        self._synced.set()
        return str((body.get("metadata") or {}).get("resourceVersion") or "")

    async def _watch(self, session: aiohttp.ClientSession, resource_version: str) -> None:
        query = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": "300"}
        if resource_version:
            query["resourceVersion"] = resource_version
        async with session.get(self._url(**query), headers=self._headers(), ssl=self._ssl(),
                               timeout=aiohttp.ClientTimeout(total=None, sock_read=330)) as response:
            response.raise_for_status()
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, pod = event.get("type"), event.get("object") or {}
                name = (pod.get("metadata") or {}).get("name")
                if kind in ("ADDED", "MODIFIED") and name:
                    self._pods[name] = pod
                elif kind == "DELETED" and name:
                    self._pods.pop(name, None)
                elif kind == "ERROR":
                    return  # an expired resourceVersion: list again

    async def _run(self) -> None:
        self._session = aiohttp.ClientSession()
        while True:
            try:
                resource_version = await self._list(self._session)
                await self._watch(self._session, resource_version)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the API server restarts, tokens rotate: keep trying
                self.errors += 1
                log.warning("kubernetes_discovery_failed", extra={"error": repr(exc), "api_server": self.api_server})
                await asyncio.sleep(1.0)

    async def peers(self) -> list[Peer]:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="kubernetes-discovery")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._synced.wait(), 5.0)
        members = [member_of(pod, labels=self.labels, port=self.settings.port) for pod in self._pods.values()]
        # Addresses bracket IPv6 hosts ("[fd00::5]:7351"); the node's own host comes unbracketed
        # from status.podIP, so compare bare hosts or an IPv6 node lists itself as a peer.
        own = (self.self_host or "").strip("[]")
        return sorted((m for m in members if m is not None and m.address.rsplit(":", 1)[0].strip("[]") != own),
                      key=lambda peer: peer.name or peer.address)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()
