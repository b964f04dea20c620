"""Peer discovery: who the other nodes are.

Every implementation answers ``peers()`` with the current members as ``Peer`` objects; the
replicator asks again every anti-entropy round, so membership changes are picked up within
one interval. A peer's name is learned from its status when discovery only knows addresses.

* ``static``: a fixed list (``--peers NAME=HOST:PORT,...``).
* ``dns``: the A records of a headless Service (publishNotReadyAddresses: true).
* ``kubernetes``: pods listed by label through the Kubernetes API (see ``kubernetes_discovery``).
"""

from __future__ import annotations

import asyncio
import socket

from ..config import DiscoverySettings, parse_host_port
from ..replication.peers import Peer


class StaticDiscovery:
    def __init__(self, peers: list[str], *, self_address: str | None = None) -> None:
        self._peers: list[Peer] = []
        for item in peers:
            name, sep, address = item.partition("=")
            if not sep:
                name, address = "", item
            parse_host_port(address)
            if address != self_address:
                self._peers.append(Peer(address=address, name=name or None))

    async def peers(self) -> list[Peer]:
        return list(self._peers)


class DnsDiscovery:
    def __init__(self, name: str, port: int, *, self_host: str | None = None) -> None:
        self.name = name
        self.port = port
        self.self_host = self_host

    async def peers(self) -> list[Peer]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(self.name, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror:
            return []
        hosts = sorted({info[4][0] for info in infos})
        return [Peer(address=f"{host}:{self.port}") for host in hosts if host != self.self_host]


def create_discovery(settings: DiscoverySettings, *, self_address: str, self_host: str):  # type: ignore[no-untyped-def]
    if settings.mode == "static":
        return StaticDiscovery(settings.static.peers, self_address=self_address)
    if settings.mode == "dns":
        return DnsDiscovery(settings.dns.name, settings.dns.port, self_host=self_host)
    from .kubernetes_discovery import KubernetesDiscovery

    return KubernetesDiscovery(settings.kubernetes, self_host=self_host)
