"""The build's version, from the installed package metadata (``leaderboard-cluster``).

Read once at import: ``leaderboard-node --version``, ``GET /v1/cluster`` (``node.version``)
and ``GET /openapi.json`` (``info.version``) all show this one value.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "leaderboard-cluster"


def _installed() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "0+unknown"


VERSION = _installed()
