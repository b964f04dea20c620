"""Durability: a write-ahead log of applied batches and periodic snapshots, on the node's volume.

Every batch a node applies (its own changes, and every batch received from a peer) is
appended to the log before the write is acknowledged; a snapshot of the whole state is
written from time to time and the log segments it covers are deleted. On start the node
loads its newest readable snapshot, replays the log after it, and then only needs what
peers wrote since (incremental catch-up), not a full sync.

Files in ``data_dir``: ``wal-NNNNNNNN.log`` segments and ``snapshot-NNNNNNNN.snap`` files,
where a snapshot's number is the first segment written after it was taken. Every record in
both is framed as ``length, crc32, payload``: a torn tail (a crash mid-write) or a flipped
byte is detected, cut off and reported, and the node starts with everything before it.
"""
