"""The chart's monitoring: the Grafana dashboard ConfigMap, the PodMonitor and ServiceMonitor,
and the PrometheusRule, validated against the prometheus-operator's own CRD schemas (vendored
from prometheus-operator v0.93.0, Apache-2.0, in ``crds/``) as an API server would, and checked
to select what the operator and the chart really create and to use metrics the nodes export."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from leaderboard_operator import rendering
from leaderboard_operator.rendering import ClusterSpec

from .conftest import CHART, KUBERNETES_VERSION, HelmRun, Render, only

REPO = Path(__file__).resolve().parents[2]
MONITORING_CRDS = Path(__file__).parent / "crds"
DASHBOARD = CHART / "dashboards" / "leaderboard-cluster.json"
ALL_ON = ("monitoring.dashboard.enabled=true", "monitoring.podMonitor.enabled=true",
          "monitoring.serviceMonitor.enabled=true", "monitoring.prometheusRule.enabled=true")
PROMQL_WORDS = {"sum", "max", "min", "count", "by", "rate", "increase", "histogram_quantile", "abs", "vector", "or",
                "and", "on", "le", "up"}


def _crd_schema(kind: str) -> dict[str, Any]:
    crd = yaml.safe_load((MONITORING_CRDS / f"monitoring.coreos.com_{kind.lower()}s.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v["served"])
    return version["schema"]["openAPIV3Schema"]


def _validate(document: dict[str, Any]) -> None:
    assert document["apiVersion"] == "monitoring.coreos.com/v1"
    jsonschema.Draft4Validator(_crd_schema(document["kind"])).validate(document)


def _documented_metrics() -> set[str]:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Metrics, dashboard and alerts"):readme.index("## Measured")]
    return set(re.findall(r"^\| `(leaderboard_[a-z_]+)` \|", section, flags=re.M))


def _metrics_in(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', "", expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_strings)
    names = set(re.findall(r"[a-z_][a-z0-9_]*(?=\s*[{(\s)]|$)", without_ranges))
    names = {n for n in names if n.startswith("leaderboard_") or n == "up"}
    # histograms are documented by their name, queried by their series
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


def test_monitoring_is_off_by_default(render: Render) -> None:
    documents = render()
    assert not [d for d in documents if d["apiVersion"].startswith("monitoring.coreos.com/")]
    assert not [d for d in documents if d["kind"] == "ConfigMap"]


def test_everything_on_renders_valid_objects(render: Render) -> None:
    documents = render(*ALL_ON)
    kinds = [d["kind"] for d in documents]
    for kind in ("ConfigMap", "PodMonitor", "ServiceMonitor", "PrometheusRule"):
        assert kinds.count(kind) == 1, kind
    for document in documents:
        if document["apiVersion"].startswith("monitoring.coreos.com/"):
            _validate(document)
        elif document["kind"] != "CustomResourceDefinition":
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_chart_lints_with_monitoring_on(run_helm: HelmRun) -> None:
    run_helm("lint", "--strict", str(CHART), *[arg for item in ALL_ON for arg in ("--set", item)])


# -------------------------------------------------------------------------- dashboard


def test_the_dashboard_configmap_carries_the_repository_dashboard_for_the_sidecar(render: Render) -> None:
    config_map = only(render("monitoring.dashboard.enabled=true"), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "leaderboard-system"
    assert json.loads(config_map["data"]["leaderboard-cluster.json"]) == json.loads(DASHBOARD.read_text())


def test_the_dashboard_can_go_to_grafanas_namespace_with_a_folder(render: Render) -> None:
    config_map = only(render("monitoring.dashboard.enabled=true", "monitoring.dashboard.namespace=grafana",
                             "monitoring.dashboard.annotations.grafana_folder=Games"), "ConfigMap")
    assert config_map["metadata"]["namespace"] == "grafana"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Games"}


def test_every_dashboard_query_uses_documented_metrics_and_the_chosen_data_source() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    documented = _documented_metrics()
    assert dashboard["uid"] and dashboard["title"]
    queries = [t for p in dashboard["panels"] if p["type"] != "row" for t in p["targets"]]
    assert len(queries) >= 20
    used: set[str] = set()
    for panel in (p for p in dashboard["panels"] if p["type"] != "row"):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            metrics = _metrics_in(target["expr"])
            assert metrics and metrics <= documented, (panel["title"], metrics - documented)
            assert 'namespace=~"$namespace"' in target["expr"], panel["title"]
            used |= metrics
    # every metric has a panel but these: two that entries_sent says better, and the lives'
    # retirement horizons (epochs, not a quantity to plot)
    assert documented - used == {"leaderboard_replication_batches_sent_total",
                                 "leaderboard_replication_entries_coalesced_total",
                                 "leaderboard_retired_lives_horizon"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


# ---------------------------------------------------------------------- what is scraped


def test_the_pod_monitor_selects_the_node_pods_the_operator_creates_on_their_metrics_port(render: Render) -> None:
    monitor = only(render("monitoring.podMonitor.enabled=true"), "PodMonitor")
    stateful_set = rendering.render_stateful_set(
        "lb", "games", ClusterSpec.parse({}, default_image="leaderboard-node:test")).manifest
    pod = stateful_set["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    port = next(p for p in pod["spec"]["containers"][0]["ports"] if p["name"] == endpoint["port"])
    assert port["containerPort"] == rendering.CLIENT_PORT and endpoint["path"] == "/metrics"
    assert labels[monitor["spec"]["jobLabel"]] == "leaderboard-node"  # the job LeaderboardNodeDown watches
    assert monitor["spec"]["namespaceSelector"] == {"any": True}


def test_the_pod_monitor_can_be_limited_to_namespaces(render: Render) -> None:
    monitor = only(render("monitoring.podMonitor.enabled=true", "monitoring.podMonitor.namespaces={games,ops}",
                          "monitoring.podMonitor.labels.release=prom"), "PodMonitor")
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["games", "ops"]}
    assert monitor["metadata"]["labels"]["release"] == "prom"
    _validate(monitor)


def test_the_service_monitor_selects_the_operators_metrics_service(render: Render) -> None:
    documents = render("monitoring.serviceMonitor.enabled=true")
    monitor = only(documents, "ServiceMonitor")
    service = only(documents, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in [p["name"] for p in service["spec"]["ports"]]
    assert not [d for d in render("monitoring.serviceMonitor.enabled=true", "metrics.enabled=false")
                if d["kind"] == "ServiceMonitor"]


# --------------------------------------------------------------------------- alerts


def test_the_rules_alert_on_each_failure_the_issue_names(render: Render) -> None:
    rule = only(render("monitoring.prometheusRule.enabled=true"), "PrometheusRule")
    alerts = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert set(alerts) == {"LeaderboardNodeDown", "LeaderboardNodeNotReady", "LeaderboardReplicationLag",
                           "LeaderboardSyncFailures", "LeaderboardDigestMismatch", "LeaderboardClockOffset",
                           "LeaderboardClockSkewed"}
    documented = _documented_metrics()
    for name, alert in alerts.items():
        metrics = _metrics_in(alert["expr"])
        assert metrics and metrics <= documented | {"up"}, (name, metrics)
        assert alert["labels"]["severity"] in ("warning", "critical")
        assert "{{ $labels." in alert["annotations"]["summary"], name
    assert "> 5" in alerts["LeaderboardReplicationLag"]["expr"]
    assert 'role="taken"' in alerts["LeaderboardDigestMismatch"]["expr"]


def test_thresholds_come_from_the_values(render: Render) -> None:
    # --set reads 2.5 as a string (helm parses only integers there); a values file or --set-json does not
    rule = only(render("monitoring.prometheusRule.enabled=true", "monitoring.prometheusRule.thresholds.clockOffsetFor=15m",
                       extra=("--set-json", "monitoring.prometheusRule.thresholds.replicationLagSeconds=2.5")),
                "PrometheusRule")
    alerts = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert alerts["LeaderboardReplicationLag"]["expr"].endswith("> 2.5")
    assert alerts["LeaderboardClockOffset"]["for"] == "15m"
    _validate(rule)


@pytest.mark.parametrize("bad", [
    "monitoring.podMonitor.interval=soon",
    "monitoring.podMonitor.scheme=ftp",
    "monitoring.prometheusRule.thresholds.replicationLagSeconds=0",
    "monitoring.dashboard.unknown=1",
], ids=lambda bad: bad.split("=")[0])
def test_the_values_schema_rejects_bad_monitoring_values(run_helm: HelmRun, bad: str) -> None:
    result = run_helm("template", "lb", str(CHART), "--set", bad, check=False)
    assert result.returncode != 0 and "schema" in result.stderr.lower(), f"{bad} was accepted"
