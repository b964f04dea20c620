"""What a node and the operator say about themselves: versions, logs, deprecated settings."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from importlib.metadata import version
from pathlib import Path

import pytest

from leaderboard_node.config import DeprecatedSetting, load_settings

from ..harness import NodeProcess, node_info

VERSION = version("leaderboard-cluster")


@pytest.mark.parametrize(("command", "module"), [("leaderboard-node", "leaderboard_node.cli"),
                                                ("leaderboard-operator", "leaderboard_operator.cli")])
def test_each_command_prints_the_package_version(command: str, module: str):
    result = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [command, VERSION]


def test_the_cluster_view_and_the_api_description_carry_the_build_version(tmp_path: Path):
    node = NodeProcess("versioned", tmp_path).start()
    try:
        assert node_info(node)["version"] == VERSION
        with node.client() as client:
            assert client.request("GET", "/openapi.json")["info"]["version"] == VERSION
    finally:
        node.terminate()


def test_text_logs_keep_every_structured_field(tmp_path: Path):
    node = NodeProcess("texty", tmp_path, settings={"log": {"format": "text"}}).start()
    node.terminate()
    lines = node.log_path.read_text().splitlines()
    listening = [line for line in lines if " listening " in line]
    assert f"node=texty address={node.host}:{node.port}" in listening[0], listening
    warning = next(line for line in lines if " client_api_open " in line)
    assert " WARNING " in warning and 'hint="no API keys are configured' in warning


def test_json_logs_carry_the_same_fields(tmp_path: Path):
    node = NodeProcess("jsony", tmp_path).start()
    node.terminate()
    records = [json.loads(line) for line in node.log_path.read_text().splitlines() if line.startswith("{")]
    listening = next(r for r in records if r["event"] == "listening")
    assert listening["address"] == f"{node.host}:{node.port}" and listening["node"] == "jsony"


def test_queue_size_is_ignored_with_a_deprecation_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        settings = load_settings(environ={}, overrides={"cluster": {"leaderboard_sync": {"queue_size": 5}}})
    assert not hasattr(settings.cluster.leaderboard_sync, "queue_size")
    assert [w.category for w in caught] == [DeprecatedSetting]
    assert "cluster.leaderboard_sync.queue_size is deprecated and ignored" in str(caught[0].message)


def test_a_node_with_queue_size_in_an_old_config_file_starts_and_logs_it_once(tmp_path: Path):
    node = NodeProcess("old-config", tmp_path, settings={"cluster": {"leaderboard_sync": {"queue_size": 1000}}})
    node.start()
    node.terminate()
    records = [json.loads(line) for line in node.log_path.read_text().splitlines() if line.startswith("{")]
    deprecated = [r for r in records if r["event"] == "setting_deprecated"]
    assert len(deprecated) == 1 and "queue_size" in deprecated[0]["problem"]
    assert deprecated[0]["level"] == "WARNING"
