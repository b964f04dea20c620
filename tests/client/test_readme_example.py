"""The README's Python example runs as pasted, against an open node and a keyed one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ..harness import NodeProcess

README = Path(__file__).resolve().parents[2] / "README.md"
SERVER_KEY = "readme-server-key-0123456789"


def _examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _run(code: str, node: NodeProcess, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LEADERBOARD_")}
    environ.update({"LEADERBOARD_URL": node.url, **env})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=environ)


def test_the_readme_has_a_client_example():
    assert any("AsyncLeaderboardClient" in code for code in _examples())


@pytest.mark.parametrize("keyed", [False, True], ids=["open-node", "keyed-node"])
def test_every_python_example_of_the_readme_runs_as_pasted(tmp_path, keyed):
    env = {"LEADERBOARD_AUTH__SERVER_KEY": SERVER_KEY} if keyed else {}
    node = NodeProcess("readme", tmp_path, env=env).start()
    try:
        printed = ""
        for code in _examples():
            for attempt in (1, 2):  # twice: the example must also run against a node it ran on before
                result = _run(code, node, **({"LEADERBOARD_SERVER_KEY": SERVER_KEY} if keyed else {}))
                assert result.returncode == 0, f"attempt {attempt}:\n{code}\n{result.stderr}"
                printed += result.stdout
        assert "1 player-1 100" in printed
    finally:
        node.terminate()
