"""
The Dockerfiles cannot be built here (no Docker engine), but what they reference can be checked:
the files they copy exist in the build context (the repository root), the entrypoints are the
project's console scripts, and the images run as a non-root user.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from .conftest import REPO

DOCKERFILES = {"node": REPO / "node" / "Dockerfile", "operator": REPO / "operator" / "Dockerfile"}
ENTRYPOINTS = {"node": "leaderboard-node", "operator": "leaderboard-operator"}


def instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


@pytest.mark.parametrize("image", DOCKERFILES)
def test_the_dockerfile_copies_only_files_that_exist(image: str) -> None:
    for keyword, rest in instructions(DOCKERFILES[image]):
        if keyword != "COPY" or rest.startswith("--from"):
            continue
        *sources, _destination = rest.split()
        literal = [s for s in sources if not any(c in s for c in "*?[")]
        assert literal, rest
        for source in literal:
            assert (REPO / source).exists(), f"{image}: COPY {source} does not exist in the build context"


@pytest.mark.parametrize("image", DOCKERFILES)
def test_the_image_is_python_311_slim_and_not_root(image: str) -> None:
    steps = instructions(DOCKERFILES[image])
    assert all(rest.split()[0] == "python:3.11-slim" for keyword, rest in steps if keyword == "FROM")
    users = [rest for keyword, rest in steps if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")


@pytest.mark.parametrize("image", DOCKERFILES)
def test_the_entrypoint_is_the_projects_console_script(image: str) -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    entrypoint = [rest for keyword, rest in instructions(DOCKERFILES[image]) if keyword == "ENTRYPOINT"][-1]
    assert entrypoint == f'["{ENTRYPOINTS[image]}"]'
    assert ENTRYPOINTS[image] in scripts


def test_the_node_image_runs_the_command_the_operator_renders() -> None:
    from leaderboard_operator import rendering
    spec = rendering.ClusterSpec.parse({}, default_image="img")
    container = rendering.render_stateful_set("lb", "ns", spec).manifest["spec"]["template"]["spec"]["containers"][0]
    cmd = [rest for keyword, rest in instructions(DOCKERFILES["node"]) if keyword == "CMD"][-1]
    assert container["command"] == ["leaderboard-node"]
    assert cmd == '["--config", "/etc/leaderboard/node.yaml"]' and container["args"] == ["--config", rendering.CONFIG_FILE]
    assert rendering.NODE_UID == 10001 and "10001" in DOCKERFILES["node"].read_text()


def test_the_build_context_keeps_the_sources() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert not ignored & {"node", "operator", "client", "pyproject.toml"}
