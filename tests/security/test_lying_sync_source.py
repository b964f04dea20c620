"""A peer that reports itself ready and then lies in its full sync: more definitions or records
than it announced, or a stream that trickles. A joining node drops it within bounds (of what
it holds, and of time) and syncs from another peer; with no other peer it stays not ready."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from aiohttp import web

from leaderboard_node.replication import binarylog_pb2 as pb
from leaderboard_node.replication.protocol import frame

from ..harness import NodeProcess, all_records, fill_board, wait_until


class LyingPeer:
    """A peer endpoint in a thread of the test: ready, claiming a million records, and then
    ``mode`` in its snapshot: ``definitions`` without end, ``records`` without end, or a frame
    announced at 60 MiB that arrives a byte at a time."""

    def __init__(self, host: str, mode: str) -> None:
        self.host, self.mode = host, mode
        self.loop = asyncio.new_event_loop()
        self.snapshots = 0
        self.sent_bytes = 0
        self._runner: web.AppRunner | None = None
        self.port = 0
        thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/peer/v1/status", self._status)
        app.router.add_get("/peer/v1/snapshot", self._snapshot)
        app.router.add_post("/peer/v1/catchup", self._catch_up)
        app.router.add_post("/peer/v1/batch", self._batch)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        async def stop() -> None:
            assert self._runner is not None
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)

    async def _status(self, request: web.Request) -> web.Response:
        now = int(time.time() * 1000)
        status = pb.Status(state=pb.NODE_STATE_READY, records=1_000_000, protocol=2, time_ms=now, hlc=now << 16)
        status.self.node, status.self.epoch = "liar", 1
        return web.Response(body=status.SerializeToString(), content_type="application/x-protobuf")

    async def _catch_up(self, request: web.Request) -> web.Response:
        return web.Response(body=pb.CatchUpResponse(available=False).SerializeToString())

    async def _batch(self, request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=pb.BatchAck(applied_seq=0, accepted=True).SerializeToString())

    async def _snapshot(self, request: web.Request) -> web.StreamResponse:
        self.snapshots += 1
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        header = pb.SyncChunk()
        header.header.source.node, header.header.source.epoch = "liar", 1
        header.header.records, header.header.format, header.header.definitions = 10, 2, 1
        try:
            await self._write(response, frame(header.SerializeToString()))
            if self.mode == "trickle":
                await self._write(response, (60 * 1024 * 1024).to_bytes(4, "big"))
                for _ in range(120):
                    await asyncio.sleep(0.5)
                    await self._write(response, b"\x00")
            for chunk_number in range(100_000):
                chunk = pb.SyncChunk()
                if self.mode == "definitions":
                    for i in range(1000):
                        definition = chunk.definitions.leaderboards.add()
                        definition.id, definition.origin, definition.generation = f"spam-{chunk_number}-{i}", "liar", 1
                else:
                    records = chunk.records
                    records.leaderboard_id, records.incarnation, records.expiry = "spam", "1.x", 0
                    elements = [b"\x00" * 16 + f"o{chunk_number}-{i}".encode() + b"\x00\x00\x08\x00\x00"
                                + (1 << 16).to_bytes(8, "big") for i in range(1000)]
                    records.elements = b"".join(elements)
                    records.lengths = b"".join(len(e).to_bytes(4, "little") for e in elements)
                    records.origins.append("liar@0000000000001")
                await self._write(response, frame(chunk.SerializeToString()))
        except (ConnectionResetError, RuntimeError):
            pass
        return response

    async def _write(self, response: web.StreamResponse, data: bytes) -> None:
        await response.write(data)
        self.sent_bytes += len(data)


def _joining(tmp_path, peers: list[str]) -> NodeProcess:
    node = NodeProcess("joining", tmp_path)
    node.settings = {"cluster": {"discovery": {"mode": "static", "static": {"peers": peers}},
                                 "leaderboard_sync": {"anti_entropy_interval": 0.5, "bootstrap_timeout": 4,
                                                      "sync_stall_timeout": 1.5}}}
    return node


def _rss_mb(node: NodeProcess) -> float:
    with open(f"/proc/{node.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.parametrize("mode", ["definitions", "records", "trickle"])
def test_a_lying_source_is_dropped_and_the_node_syncs_from_an_honest_one(tmp_path, mode):
    good = NodeProcess("good", tmp_path).start()
    liar = LyingPeer(good.host, mode)
    try:
        with good.client() as client:
            fill_board(client, "kept", 200)
        joining = _joining(tmp_path, [f"liar={liar.address}", f"good={good.peer_address}"]).start(wait_ready=False)
        try:
            joining.wait_ready(timeout=30)
            assert liar.snapshots >= 1  # it was asked first (it claims the most records)
            with joining.client() as client:
                wait_until(lambda: len(all_records(client, "kept")) == 200, message="the honest peer's records")
            why = {"definitions": "more definitions than it announced", "records": "more records than it announced",
                   "trickle": "stalled"}[mode]
            assert any("bootstrap_sync_failed" in line and why in line for line in joining.log_tail(400).splitlines())
            assert _rss_mb(joining) < 400
        finally:
            joining.terminate()
    finally:
        liar.stop()
        good.terminate()


def test_a_node_whose_only_ready_peer_lies_stays_not_ready_and_bounded(tmp_path):
    liar = LyingPeer("127.0.0.1", "definitions")
    joining = _joining(tmp_path, [f"liar={liar.address}"]).start(wait_ready=False)
    try:
        wait_until(lambda: liar.snapshots >= 2, timeout=30, message="the liar asked again, after a pause")
        with joining.client() as client:
            assert client.ready() is False
        wait_until(lambda: any("bootstrap_refused" in line for line in joining.log_errors()), timeout=20,
                   message="the refusal in the log")
        assert _rss_mb(joining) < 400
        assert liar.sent_bytes < 200 * 1024 * 1024
    finally:
        joining.terminate()
        liar.stop()
