"""A small Python client of the leaderboard-cluster client API.

Used by ``leaderboardctl``, by the tests and by users alike::

    from leaderboard_client import LeaderboardClient
    client = LeaderboardClient("http://127.0.0.1:7350")
    client.create_leaderboard("weekly", reset_schedule="0 0 * * 1")
    client.write_record("weekly", "player-1", score=100)
    client.top("weekly", limit=10)["records"]

``AsyncLeaderboardClient`` has the same operations for asyncio code (a pool of keep-alive
connections; ``await client.around("weekly", "player-1")``).
"""

from .async_client import AsyncLeaderboardClient
from .client import LeaderboardClient
from .operations import ApiError

__all__ = ["ApiError", "AsyncLeaderboardClient", "LeaderboardClient"]
