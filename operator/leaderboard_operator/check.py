"""
``python -m leaderboard_operator.check``: the chart's ``helm test``, run in a pod of the operator's image.

It checks, each until ``--timeout`` runs out, and exits 0 when all hold (else 1, saying which
did not and what it saw last):

* ``--deployment NAME``: the operator's Deployment has an available, up-to-date replica;
* ``--metrics-url URL``: the operator serves its metrics (``leaderboard_operator_*``);
* ``--cluster NAME``: the LeaderboardCluster is Ready for its current spec (``observedGeneration``
  equals ``generation``), and its client Service answers: ``/readyz`` is 200 (``--cluster-url``,
  default ``http://NAME.NAMESPACE.svc:PORT``, the port from the cluster's spec).

The Kubernetes API is reached with the ``kubernetes`` package's own configuration loading
(in-cluster service account, else kubeconfig), or at ``--server``. Its typed errors
(:class:`kubernetes.client.ApiException`) are what the API answered; a 403 says the test's
Role is missing a rule, and ends the check at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

import kubernetes
from kubernetes.client import ApiException

from leaderboard_operator import rendering, resources


class CheckFailed(Exception):
    """A check did not hold within the time allowed."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckSettings:
    namespace: str
    deployment: str | None = None
    metrics_url: str | None = None
    cluster: str | None = None
    cluster_url: str | None = None
    timeout: float = 300.0
    interval: float = 2.0


def api_client(server: str | None) -> kubernetes.client.ApiClient:
    """An API client: at ``server`` as is, else in-cluster, else from the kubeconfig."""
    if server:
        configuration = kubernetes.client.Configuration()
        configuration.host = server
        return kubernetes.client.ApiClient(configuration)
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    return kubernetes.client.ApiClient()


def wait_for(what: str, check: Callable[[], str | None], *, settings: CheckSettings,
             log: Callable[[str], None]) -> None:
    """Call ``check`` (None: it holds; else what it saw) until it holds or the time is up."""
    deadline = time.monotonic() + settings.timeout
    while True:
        try:
            seen = check()
        except ApiException as exc:
            if exc.status == 403:
                raise CheckFailed(f"{what}: forbidden ({exc.reason}): the test's Role lacks a rule") from exc
            seen = f"the API answered {exc.status} {exc.reason}"
        except (OSError, urllib.error.URLError) as exc:
            seen = f"{type(exc).__name__}: {exc}"
        if seen is None:
            log(f"ok: {what}")
            return
        if time.monotonic() >= deadline:
            raise CheckFailed(f"{what}: not within {settings.timeout:.0f} s; last seen: {seen}")
        time.sleep(settings.interval)


def deployment_available(api: kubernetes.client.ApiClient, settings: CheckSettings) -> str | None:
    assert settings.deployment is not None
    deployment = kubernetes.client.AppsV1Api(api).read_namespaced_deployment_status(
        settings.deployment, settings.namespace)
    status, wanted = deployment.status, deployment.spec.replicas or 0
    available, updated = (status.available_replicas or 0), (status.updated_replicas or 0)
    if available >= 1 and updated >= wanted:
        return None
    return f"{available} available, {updated}/{wanted} up to date"


def metrics_served(settings: CheckSettings) -> str | None:
    assert settings.metrics_url is not None
    with urllib.request.urlopen(settings.metrics_url, timeout=10) as response:
        text = response.read().decode()
    return None if "leaderboard_operator_reconciles_total" in text else "no leaderboard_operator_* metrics"


def cluster_ready(api: kubernetes.client.ApiClient, settings: CheckSettings) -> str | None:
    assert settings.cluster is not None
    obj: dict[str, Any] = kubernetes.client.CustomObjectsApi(api).get_namespaced_custom_object(
        resources.GROUP, resources.VERSION, settings.namespace, resources.PLURAL, settings.cluster)
    status, generation = obj.get("status") or {}, (obj.get("metadata") or {}).get("generation")
    if status.get("phase") == "Ready" and status.get("observedGeneration") == generation:
        return None
    return (f"phase {status.get('phase')}, observedGeneration {status.get('observedGeneration')} of {generation}, "
            f"{status.get('readyReplicas', 0)} ready; last error: {status.get('lastError')}")


def cluster_url(api: kubernetes.client.ApiClient, settings: CheckSettings) -> str:
    if settings.cluster_url:
        return settings.cluster_url.rstrip("/")
    assert settings.cluster is not None
    obj = kubernetes.client.CustomObjectsApi(api).get_namespaced_custom_object(
        resources.GROUP, resources.VERSION, settings.namespace, resources.PLURAL, settings.cluster)
    port = ((obj.get("spec") or {}).get("service") or {}).get("port") or rendering.CLIENT_PORT
    return f"http://{settings.cluster}.{settings.namespace}.svc:{port}"


def cluster_answers(url: str) -> str | None:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=10) as response:
            return None if response.status == 200 else f"/readyz answered {response.status}"
    except urllib.error.HTTPError as exc:
        return f"/readyz answered {exc.code}"


def run(settings: CheckSettings, *, server: str | None = None, log: Callable[[str], None] = print) -> None:
    """Every check asked for, in order; :class:`CheckFailed` for the first that does not hold."""
    api = api_client(server)
    with api:
        if settings.deployment:
            wait_for(f"Deployment {settings.namespace}/{settings.deployment} is available",
                     lambda: deployment_available(api, settings), settings=settings, log=log)
        if settings.metrics_url:
            wait_for(f"the operator serves its metrics at {settings.metrics_url}",
                     lambda: metrics_served(settings), settings=settings, log=log)
        if settings.cluster:
            wait_for(f"LeaderboardCluster {settings.namespace}/{settings.cluster} is Ready for its spec",
                     lambda: cluster_ready(api, settings), settings=settings, log=log)
            url = cluster_url(api, settings)
            wait_for(f"the cluster answers at {url}", lambda: cluster_answers(url), settings=settings, log=log)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leaderboard_operator.check",
                                     description="Check that the operator (and a cluster) work: helm test.")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--deployment", help="the operator's Deployment")
    parser.add_argument("--metrics-url", help="the operator's /metrics, e.g. through its metrics Service")
    parser.add_argument("--cluster", help="a LeaderboardCluster that must turn Ready and answer")
    parser.add_argument("--cluster-url", help="its client Service's URL (default: from its name and spec)")
    parser.add_argument("--server", help="the API server's URL (default: in-cluster, else kubeconfig)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds each check may take")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between tries")
    args = parser.parse_args(argv)
    if not (args.deployment or args.metrics_url or args.cluster):
        parser.error("nothing to check: give --deployment, --metrics-url or --cluster")
    settings = CheckSettings(namespace=args.namespace, deployment=args.deployment, metrics_url=args.metrics_url,
                             cluster=args.cluster, cluster_url=args.cluster_url, timeout=args.timeout,
                             interval=args.interval)
    try:
        run(settings, server=args.server)
    except CheckFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
