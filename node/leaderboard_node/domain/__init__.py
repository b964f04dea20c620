"""The domain model: leaderboards, tournaments, records and their rank order.

Plain Python with no I/O: nothing here reads a clock it was not given, opens a socket or
touches a file. Transports (HTTP) and replication (binary log) sit on top and call in.
"""
