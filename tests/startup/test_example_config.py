"""The example node config in the repository: every setting, explained, at its default, and a
node starts with it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel

from leaderboard_client import LeaderboardClient
from leaderboard_node.config import Settings, load_settings

from ..harness import free_ports, loopback_host, wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "node" / "leaderboard-node.example.yaml"
ENV_ONLY = {"auth.server_key", "auth.client_key", "events.webhook_secret"}  # secrets: named in a comment, never set in a file


def _settings(model: type[BaseModel] = Settings, prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths += _settings(annotation, f"{prefix}{name}.")
        else:
            paths.append(prefix + name)
    return paths


def _documented_keys() -> dict[str, bool]:
    """Each setting path the file names -> whether a comment line stands right above it.

    A section is ``name:`` alone on its line; a setting is ``name: value``, or a comment
    ``# name: not here: ...`` for a secret that belongs in the environment.
    """
    found: dict[str, bool] = {}
    sections: list[tuple[int, str]] = []
    previous = ""
    for line in EXAMPLE.read_text().splitlines():
        match = re.match(r"^(\s*)(# )?([a-z_]+):( .*)?$", line)
        commented = match is not None and match.group(2) is not None
        if match and (not commented or "not here" in (match.group(4) or "")):
            depth = len(match.group(1)) // 2
            sections = [item for item in sections if item[0] < depth]
            if match.group(4) is None:
                sections.append((depth, match.group(3)))
            else:
                found[".".join([name for _, name in sections] + [match.group(3)])] = previous.lstrip().startswith("#")
        previous = line
    return found


def test_the_example_names_and_explains_every_setting():
    documented = _documented_keys()
    assert set(documented) == set(_settings())
    assert all(documented.values()), [path for path, explained in documented.items() if not explained]


def test_the_example_holds_the_defaults():
    loaded = load_settings(config_file=EXAMPLE, environ={})
    expected = Settings.model_validate({"node": {"name": "node-0"}})
    assert loaded == expected
    text = EXAMPLE.read_text()
    for secret in ENV_ONLY:
        assert f"# {secret.split('.')[1]}: not here" in text


def test_a_node_starts_with_the_example(tmp_path):
    host = loopback_host()
    port, peer_port = free_ports(host, 2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADERBOARD_")}
    process = subprocess.Popen([sys.executable, "-m", "leaderboard_node.cli", "--config", str(EXAMPLE),
                                "--listen", f"{host}:{port}", "--peer-listen", f"{host}:{peer_port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        with LeaderboardClient(f"http://{host}:{port}", timeout=2) as client:
            def ready() -> bool:
                assert process.poll() is None, process.stderr.read().decode()
                try:
                    return bool(client.ready())
                except OSError:
                    return False

            wait_until(ready, timeout=30, message="the node started with the example config to be ready")
            assert client.cluster()["node"]["name"] == "node-0"
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stderr.close()
