"""Replication: the binary log, version vectors, batching, catch-up, anti-entropy, full sync.

Free of HTTP: everything here talks to peers through the ``PeerTransport`` interface
(``peers.py``); the aiohttp implementation lives in ``leaderboard_node.transport``.
"""
