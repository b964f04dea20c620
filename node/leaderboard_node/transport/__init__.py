"""Transports: the client REST API, the peer endpoint and peer discovery.

Thin by design: they parse and check input, call the node, and render output. Rules live
in the domain; replication logic lives in ``leaderboard_node.replication``.
"""
