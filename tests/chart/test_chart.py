"""The Helm chart: it lints, renders valid objects, and grants what the operator needs."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from leaderboard_operator import resources

from .conftest import CHART, KUBERNETES_VERSION, HelmRun, Render, only


def test_the_chart_lints(run_helm: HelmRun) -> None:
    result = run_helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in result.stdout


def test_the_chart_lints_with_a_cluster_and_namespaces(run_helm: HelmRun) -> None:
    run_helm("lint", "--strict", str(CHART), "--set", "cluster.enabled=true", "--set", "watchNamespaces={games,ops}")


@pytest.mark.parametrize("sets", [
    (),
    ("cluster.enabled=true",),
    ("watchNamespaces={games}", "metrics.enabled=false", "serviceAccount.create=false", "rbac.create=false"),
], ids=["defaults", "with-cluster", "minimal"])
def test_every_rendered_object_is_valid(render: Render, crd_schema: dict[str, Any], sets: tuple[str, ...]) -> None:
    documents = render(*sets, tests=True)
    assert documents
    for document in documents:
        if document["apiVersion"].startswith(resources.GROUP + "/"):
            jsonschema.Draft4Validator(crd_schema).validate(document)
        else:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_chart_installs_the_crd(render: Render) -> None:
    crd = only(render(), "CustomResourceDefinition")
    assert crd["metadata"]["name"] == "leaderboardclusters.leaderboard-cluster.dev"


def test_the_operator_is_one_recreated_replica_with_probes(render: Render) -> None:
    deployment = only(render(), "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "leaderboard-operator:0.1.0"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in container["ports"]
    assert {"name": "liveness", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert "--all-namespaces" in container["args"]
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_the_operator_gives_clusters_the_charts_node_image(render: Render) -> None:
    env = {e["name"]: e.get("value") for e in only(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LEADERBOARD_OPERATOR_DEFAULT_IMAGE"] == "leaderboard-node:0.1.0"
    custom = render("node.image.repository=registry.example/lb-node", "node.image.tag=2.0")
    env = {e["name"]: e.get("value") for e in only(custom, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LEADERBOARD_OPERATOR_DEFAULT_IMAGE"] == "registry.example/lb-node:2.0"


def test_watched_namespaces_become_arguments(render: Render) -> None:
    args = only(render("watchNamespaces={games,ops}"), "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=games" in args and "--namespace=ops" in args
    assert "--all-namespaces" not in args


def test_the_operator_arguments_are_accepted_by_its_command_line(render: Render) -> None:
    from leaderboard_operator import cli
    args = only(render("watchNamespaces={games}", "operator.verbose=true"), "Deployment")[
        "spec"]["template"]["spec"]["containers"][0]["args"]
    parsed = cli.build_parser().parse_args(args)
    assert parsed.namespaces == ["games"] and parsed.verbose and parsed.metrics_port == 9090


def test_disabling_metrics_removes_the_port_and_the_service(render: Render) -> None:
    documents = render("metrics.enabled=false")
    assert not [d for d in documents if d["kind"] == "Service"]
    container = only(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--metrics-port=0" in container["args"]
    assert [p["name"] for p in container["ports"]] == ["liveness"]


Grants = dict[tuple[str, str], set[str]]


def grants(*roles: dict[str, Any]) -> Grants:
    """(API group, resource) -> verbs, over the rules of some Roles or ClusterRoles."""
    granted: Grants = {}
    for role in roles:
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for plural in rule["resources"]:
                    granted.setdefault((group, plural), set()).update(rule["verbs"])
    return granted


def used(*, namespaced: bool | None = None) -> Grants:
    """What the operator uses (resources.py), namespaced or cluster-scoped or all."""
    found: Grants = {}
    for res in resources.ALL:
        if namespaced is None or res.namespaced == namespaced:
            found.setdefault((res.group, res.plural), set()).update(res.verbs)
    if namespaced is not False:
        for sub, verbs in resources.CLUSTER_SUBRESOURCES.items():
            found[(resources.GROUP, f"{resources.PLURAL}/{sub}")] = set(verbs)
        found[("events.k8s.io", "events")] = set(resources.EVENTS.verbs)  # either events API
    if namespaced is not True:
        for sub, verbs in resources.CSR_SUBRESOURCES.items():
            found[(resources.CSRS.group, f"{resources.CSRS.plural}/{sub}")] = set(verbs)
        for key, verbs in resources.SIGNER_GRANTS.items():
            found[key] = set(verbs)
    return found


def operator_role(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """The operator's ClusterRole (the other one is the nodes' node-csr role)."""
    roles = [d for d in documents if d["kind"] == "ClusterRole" and not d["metadata"]["name"].endswith("-node-csr")]
    assert len(roles) == 1, roles
    return roles[0]


def test_the_cluster_role_grants_exactly_what_the_operator_uses(render: Render) -> None:
    assert grants(operator_role(render())) == used()


def test_names_restrict_the_signer_the_bound_role_and_the_secret_read(render: Render) -> None:
    documents = render()
    restricted = {(rule["resources"][0], tuple(rule["resourceNames"])) for role in documents
                  if role["kind"] in ("Role", "ClusterRole") for rule in role["rules"] if "resourceNames" in rule}
    assert restricted == {("signers", ("leaderboard-cluster.dev/node-identity",)),
                          ("clusterroles", ("lb-leaderboard-operator-node-csr",)),
                          ("secrets", ("lb-leaderboard-operator-identity-ca",))}
    env = {e["name"]: e.get("value") for e in only(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LEADERBOARD_OPERATOR_IDENTITY_CA_SECRET"] == "lb-leaderboard-operator-identity-ca"
    assert env["LEADERBOARD_OPERATOR_NODE_CSR_CLUSTER_ROLE"] == "lb-leaderboard-operator-node-csr"
    nodes = [d for d in documents if d["kind"] == "ClusterRole" and d["metadata"]["name"].endswith("-node-csr")]
    assert [rule for role in nodes for rule in role["rules"]] == [
        {"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"], "verbs": ["create", "get"]}]


def test_the_operator_may_create_secrets_but_read_only_its_own_ca(render: Render) -> None:
    for documents in (render(), render("watchNamespaces={games}")):
        roles = [d for d in documents if d["kind"] in ("Role", "ClusterRole")]
        assert grants(*roles)[("", "secrets")] == {"create", "get"}
        reads = [(role["kind"], role["metadata"].get("namespace"), rule.get("resourceNames"))
                 for role in roles for rule in role["rules"] if "secrets" in rule["resources"] and "get" in rule["verbs"]]
        assert reads == [("Role", "leaderboard-system", ["lb-leaderboard-operator-identity-ca"])]


def test_watched_namespaces_get_roles_and_the_cluster_role_keeps_no_namespaced_rule(render: Render) -> None:
    documents = render("watchNamespaces={games,ops}")
    assert grants(operator_role(documents)) == used(namespaced=False)
    roles = {d["metadata"]["namespace"]: d for d in documents
             if d["kind"] == "Role" and not d["metadata"]["name"].endswith("-identity-ca")}
    assert set(roles) == {"games", "ops"}
    for role in roles.values():
        assert grants(role) == used(namespaced=True)
    bindings = [d for d in documents if d["kind"] == "RoleBinding" and not d["metadata"]["name"].endswith("-identity-ca")]
    account = only(documents, "ServiceAccount")["metadata"]["name"]
    assert {b["metadata"]["namespace"] for b in bindings} == {"games", "ops"}
    assert all(b["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "leaderboard-system"}]
               and b["roleRef"]["kind"] == "Role" for b in bindings)


def test_watched_namespace_globs_need_the_cluster_role(render: Render) -> None:
    documents = render("watchNamespaces={games-*}")
    assert [d["metadata"]["name"] for d in documents if d["kind"] == "Role"] == ["lb-leaderboard-operator-identity-ca"]
    assert grants(operator_role(documents)) == used()


def test_the_operators_rules_cover_the_nodes_role(render: Render) -> None:
    # RBAC forbids granting what one does not hold: the operator must hold the nodes' rules.
    from leaderboard_operator import rendering
    for documents in (render(), render("watchNamespaces={games}")):
        granted = grants(*[d for d in documents if d["kind"] in ("Role", "ClusterRole")])
        for rule in rendering.render_role("lb", "ns").manifest["rules"]:
            for group in rule["apiGroups"]:
                for plural in rule["resources"]:
                    assert set(rule["verbs"]) <= granted[(group, plural)]


def test_the_binding_names_the_service_account(render: Render) -> None:
    documents = render()
    binding = only(documents, "ClusterRoleBinding")
    account = only(documents, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": "leaderboard-system"}]
    assert binding["roleRef"]["name"] == operator_role(documents)["metadata"]["name"]
    deployment = only(documents, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]


def test_a_cluster_can_come_with_the_chart(render: Render) -> None:
    assert not [d for d in render() if d["kind"] == resources.KIND]
    cluster = only(render("cluster.enabled=true", "cluster.name=games", "cluster.spec.replicas=5",
                          namespace="games"), resources.KIND)
    assert cluster["metadata"] == {"name": "games", "namespace": "games", "labels": cluster["metadata"]["labels"]}
    assert cluster["spec"] == {"replicas": 5}
    empty = only(render("cluster.enabled=true", "cluster.spec=null"), resources.KIND)
    assert empty["spec"] == {}


@pytest.mark.parametrize("bad", [
    "operator.pollInterval=0",
    "operator.logFormat=xml",
    "metrics.port=0",
    "cluster.name=Not_A_Name",
    "cluster.spec.replicas=0",
    "unknownKey=1",
], ids=lambda bad: bad.split("=")[0])
def test_the_values_schema_rejects_nonsense(run_helm: HelmRun, bad: str) -> None:
    result = run_helm("template", "lb", str(CHART), "--set", bad, check=False)
    assert result.returncode != 0, f"{bad} was accepted"
    assert "schema" in result.stderr.lower(), result.stderr


def test_the_values_schema_is_a_valid_json_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(yaml.safe_load((CHART / "values.yaml").read_text()))


def test_the_notes_say_what_to_do_next(run_helm: HelmRun) -> None:
    output = run_helm("install", "lb", str(CHART), "--dry-run=client", "--namespace", "games").stdout
    notes = output[output.index("NOTES:"):]
    assert "kubectl -n games rollout status deployment/lb-leaderboard-operator" in notes
    assert "kind: LeaderboardCluster" in notes
    assert "kubectl scale lbc/leaderboard --replicas=5" in notes
    assert "kubectl delete lbc" in notes  # before uninstalling


def test_the_readme_documents_running_on_kubernetes() -> None:
    readme = (CHART / "README.md").read_text()
    for step in ("docker build -f node/Dockerfile", "docker build -f operator/Dockerfile", "kind load docker-image",
                 "helm install", "apply -f crds/examples/minimal.yaml", "scale lbc/leaderboard --replicas=5",
                 "get lbc"):
        assert step in readme, step


def test_the_operators_environment_is_its_settings(render: Render) -> None:
    from leaderboard_operator.settings import OperatorConfig
    container = only(render("operator.busyPollInterval=2"), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    config = OperatorConfig.from_env(env)
    assert (config.poll_interval, config.busy_poll_interval, config.reconcile_interval) == (10.0, 2.0, 30.0)


def test_the_operators_identity_is_its_pods_name(render: Render) -> None:
    from leaderboard_operator import cli
    container = only(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in container["env"]
    args = cli.build_parser().parse_args(container["args"])
    assert cli.identity(args, {"POD_NAME": "lb-operator-5f9c-abcde"}) == "lb-operator-5f9c-abcde"


def test_helm_test_checks_the_operator_and_the_charts_cluster(render: Render) -> None:
    from leaderboard_operator import check
    for sets, cluster in (((), False), (("cluster.enabled=true", "cluster.name=games"), True),
                          (("metrics.enabled=false",), False)):
        documents = render(*sets, tests=True)
        hooks = [d for d in documents if (d["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test"]
        assert {d["kind"] for d in hooks} == {"ServiceAccount", "Role", "RoleBinding", "Pod"}
        pod = next(d for d in hooks if d["kind"] == "Pod")
        container = pod["spec"]["containers"][0]
        assert container["image"] == only(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
        assert container["command"] == ["python", "-m", check.__name__]
        args = container["args"]
        assert f"--deployment={only(documents, 'Deployment')['metadata']['name']}" in args
        assert ("--cluster=games" in args) is cluster
        assert any(a.startswith("--metrics-url=http://lb-leaderboard-operator-metrics.") for a in args) is (
            "metrics.enabled=false" not in sets)
        role = next(d for d in hooks if d["kind"] == "Role")
        assert {r for rule in role["rules"] for r in rule["resources"]} == (
            {"deployments", "deployments/status"} | ({"leaderboardclusters"} if cluster else set()))
        assert all(rule["verbs"] == ["get"] and rule["resourceNames"] for rule in role["rules"])
