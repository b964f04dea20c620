"""The client package as a library: documented methods, one page shape, typed."""

from __future__ import annotations

import inspect
from importlib import resources

import pytest

from leaderboard_client import AsyncLeaderboardClient, LeaderboardClient
from leaderboard_client.operations import Operations


@pytest.mark.parametrize("cls", [LeaderboardClient, AsyncLeaderboardClient])
def test_every_public_method_has_a_docstring(cls):
    undocumented = [name for name, member in inspect.getmembers(cls, callable)
                    if not name.startswith("_") and not (member.__doc__ or "").strip()]
    assert not undocumented
    assert (cls.__doc__ or "").strip()


def test_the_package_is_marked_typed():
    assert resources.files("leaderboard_client").joinpath("py.typed").is_file()


def test_top_records_and_around_return_the_same_shape(tmp_path):
    from ..harness import NodeProcess, fill_board

    node = NodeProcess("shapes", tmp_path).start()
    try:
        with node.client() as client:
            fill_board(client, "shapes", 30)
            top, page, around = client.top("shapes", limit=5), client.records("shapes", limit=5), \
                client.around("shapes", "p10", limit=5)
        keys = {"records", "owner_records", "next_cursor", "prev_cursor", "rank_count", "expiry_time"}
        assert set(top) == set(page) == set(around) == keys
        assert top == page
    finally:
        node.terminate()


def test_the_operations_are_written_once_for_both_clients():
    for name, member in inspect.getmembers(Operations, inspect.isfunction):
        if not name.startswith("_") and name not in ("request_raw",):
            assert getattr(LeaderboardClient, name) is member and getattr(AsyncLeaderboardClient, name) is member
