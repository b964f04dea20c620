"""The README's metrics reference names every metric a node exports, with its type."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import generate_latest

from leaderboard_node.config import Settings
from leaderboard_node.server import NodeServer

README = Path(__file__).resolve().parents[2] / "README.md"


def _documented() -> dict[str, str]:
    text = README.read_text()
    section = text[text.index("## Metrics, dashboard and alerts"):text.index("## Measured")]
    return dict(re.findall(r"^\| `(leaderboard_[a-z_]+)` \| (counter|gauge|histogram) \|", section, flags=re.M))


def test_every_exported_metric_is_documented_with_its_type_and_nothing_else():
    exposition = generate_latest(NodeServer(Settings()).metrics.registry).decode()
    exported = dict(re.findall(r"^# TYPE (\S+) (\S+)$", exposition, flags=re.M))
    assert exported, exposition[:200]
    documented = _documented()
    assert exported == documented


def test_the_api_table_lists_the_openapi_description():
    assert "| `GET /openapi.json` |" in README.read_text()
