from __future__ import annotations

import itertools

import pytest

from leaderboard_node.domain.clock import HybridLogicalClock
from leaderboard_node.domain.leaderboards import Leaderboard, RankBlacklist
from leaderboard_node.domain.store import LeaderboardStore


def make_store(node: str = "n1", *, blacklist: tuple[str, ...] = (), start_ms: int = 1_700_000_000_000,
               retention: int = 86400) -> LeaderboardStore:
    ticks = itertools.count(start_ms)
    return LeaderboardStore(node=node, clock=HybridLogicalClock(wall=lambda: next(ticks)),
                            blacklist=RankBlacklist(blacklist), retention=retention)


@pytest.fixture
def store() -> LeaderboardStore:
    return make_store()


def leaderboard(leaderboard_id: str = "lb", **settings: object) -> Leaderboard:
    return Leaderboard(id=leaderboard_id, **settings)  # type: ignore[arg-type]
