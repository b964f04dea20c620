"""Checksummed frames: ``>II`` (payload length, crc32 of the payload), then the payload."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

HEADER = struct.Struct(">II")
MAX_FRAME = 256 * 1024 * 1024


def encode(payload: bytes) -> bytes:
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


@dataclass
class ScanResult:
    good_bytes: int = 0  # the file is sound up to here
    frames: int = 0
    problem: str | None = None  # why scanning stopped early, if it did


def scan(data: bytes | memoryview, result: ScanResult) -> Iterator[bytes]:
    """Every sound frame of ``data`` in order; stops at the first torn or corrupted one."""
    view = memoryview(data)
    offset = 0
    size = len(view)
    while offset < size:
        if size - offset < HEADER.size:
            result.problem = f"torn frame header at byte {offset}"
            return
        length, crc = HEADER.unpack_from(view, offset)
        start = offset + HEADER.size
        if length > MAX_FRAME or start + length > size:
            result.problem = f"torn frame at byte {offset} (length {length})"
            return
        payload = bytes(view[start:start + length])
        if zlib.crc32(payload) != crc:
            result.problem = f"checksum mismatch at byte {offset}"
            return
        offset = start + length
        result.good_bytes = offset
        result.frames += 1
        yield payload
