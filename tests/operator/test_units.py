"""Small pure parts: patch computation, settings, resources, metrics, the command line."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import aiohttp
import pytest

from leaderboard_operator import children, cli, rendering, resources
from leaderboard_operator.members import MemberReport, PodInfo, fetch_member, pod_info, poll_members
from leaderboard_operator.metrics import OperatorMetrics
from leaderboard_operator.rendering import ClusterSpec
from leaderboard_operator.settings import OperatorConfig

from .conftest import FakeMembers

if TYPE_CHECKING:
    from leaderboard_operator import Context


def sts_child(spec: dict | None = None) -> rendering.Child:
    return rendering.render_stateful_set("lb", "ns", ClusterSpec.parse(spec or {}, default_image="img"))


def test_the_patch_leaves_out_immutable_fields() -> None:
    patch = children.desired_patch(sts_child())
    assert "selector" not in patch["spec"]
    assert "volumeClaimTemplates" not in patch["spec"]
    assert "serviceName" not in patch["spec"]
    assert patch["spec"]["replicas"] == 3


def test_the_patch_clears_optional_fields_the_spec_dropped() -> None:
    patch = children.desired_patch(sts_child())
    pod = patch["spec"]["template"]["spec"]
    assert pod["tolerations"] is None and pod["nodeSelector"] is None and pod["topologySpreadConstraints"] is None
    kept = children.desired_patch(sts_child({"nodeSelector": {"a": "b"}}))
    assert kept["spec"]["template"]["spec"]["nodeSelector"] == {"a": "b"}


def test_the_patch_does_not_touch_the_rendered_manifest() -> None:
    child = sts_child()
    children.desired_patch(child)
    assert "selector" in child.manifest["spec"]


@pytest.mark.parametrize("actual, wanted, satisfied", [
    ({"a": 1, "extra": 2}, {"a": 1}, True),
    ({"a": 1}, {"a": 2}, False),
    ({"a": {"b": 1, "c": 2}}, {"a": {"b": 1}}, True),
    ({"a": 1}, {"b": None}, True),
    ({"a": 1, "b": 2}, {"b": None}, False),
    ({"l": [{"x": 1, "default": 0}]}, {"l": [{"x": 1}]}, True),
    ({"l": [{"x": 1}, {"x": 2}]}, {"l": [{"x": 1}]}, False),
    ({"f": True}, {"f": 1}, False),
    ({}, {"a": {}}, False),
])
def test_satisfaction_is_a_subset_check(actual: dict, wanted: dict, satisfied: bool) -> None:
    assert children.is_satisfied(actual, wanted) is satisfied


@pytest.mark.parametrize("actual, wanted", [("500m", "0.5"), ("1", "1000m"), ("1Gi", "1024Mi"), ("2", 2)])
def test_quantities_are_compared_by_meaning(actual: str, wanted: str | int) -> None:
    assert children.is_satisfied({"q": {"cpu": actual}}, {"q": {"cpu": wanted}}, quantities=[("q",)])
    assert not children.is_satisfied({"q": {"cpu": actual}}, {"q": {"cpu": "3"}}, quantities=[("q",)])


def test_in_an_owned_field_a_key_the_spec_dropped_is_drift() -> None:
    owned = [("spec", "sel")]
    assert not children.is_satisfied({"spec": {"sel": {"a": "1", "b": "2"}}}, {"spec": {"sel": {"a": "1"}}}, owned=owned)
    assert children.is_satisfied({"spec": {"sel": {"a": "1"}, "x": 1}}, {"spec": {"sel": {"a": "1"}}}, owned=owned)


def test_the_patch_removes_what_the_spec_dropped_from_an_owned_map() -> None:
    child = sts_child({"nodeSelector": {"disk": "ssd"}})
    actual = {"spec": {"template": {"spec": {"nodeSelector": {"disk": "ssd", "zone": "a"}}}}}
    patch = children.desired_patch(child, actual)
    assert patch["spec"]["template"]["spec"]["nodeSelector"] == {"disk": "ssd", "zone": None}


def test_resources_the_spec_dropped_are_drift_inside_the_container_list() -> None:
    child = sts_child({"resources": {"requests": {"cpu": "1"}}})
    patch = children.desired_patch(child)
    actual = copy.deepcopy(child.manifest)
    assert children.is_satisfied(actual, patch, owned=child.owned, quantities=child.quantities)
    actual["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] = {"memory": "1Gi"}
    assert not children.is_satisfied(actual, patch, owned=child.owned, quantities=child.quantities)
    bare = sts_child()
    assert not children.is_satisfied(actual, children.desired_patch(bare), owned=bare.owned, quantities=bare.quantities)


@pytest.mark.parametrize("spec", [{"resources": {"requests": {"cpu": "lots"}}}, {"storage": {"size": "big"}}])
def test_a_value_that_is_no_quantity_is_an_invalid_spec(spec: dict) -> None:
    with pytest.raises(ValueError, match="must be a quantity"):
        ClusterSpec.parse(spec, default_image="img")


def test_a_rendered_child_satisfies_its_own_patch() -> None:
    child = sts_child({"tolerations": [{"key": "k", "operator": "Exists"}], "resources": {"limits": {"cpu": "0.5"}}})
    assert children.is_satisfied(child.manifest, children.desired_patch(child, child.manifest),
                                 owned=child.owned, quantities=child.quantities)


def test_pod_info_reads_readiness_restarts_and_port() -> None:
    info = pod_info({
        "metadata": {"name": "lb-1", "deletionTimestamp": "2025-01-01T00:00:00Z"},
        "spec": {"containers": [{"name": "node", "ports": [{"name": "peer", "containerPort": 7351},
                                                           {"name": "http", "containerPort": 7350}]}]},
        "status": {"podIP": "10.0.0.1", "phase": "Running",
                   "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [{"restartCount": 2}, {"restartCount": 1}]},
    })
    assert info == PodInfo(name="lb-1", ip="10.0.0.1", ready=True, restarts=3, terminating=True, phase="Running",
                           port=7350)
    assert pod_info({"metadata": {"name": "lb-2"}}).ready is False


async def test_polling_reports_answers_and_failures(members: FakeMembers) -> None:
    members.answers[0] = members.report("lb-0")
    members.answers[1] = 500
    pods = [PodInfo(name=f"lb-{i}", ip="127.0.0.1", port=members.ports[i], ready=True, restarts=0, terminating=False)
            for i in range(2)]
    pods.append(PodInfo(name="lb-2", ip=None, ready=False, restarts=0, terminating=False))
    pods.append(PodInfo(name="lb-3", ip="127.0.0.1", port=members.ports[2], ready=True, restarts=0, terminating=True))
    async with aiohttp.ClientSession() as session:
        reports = await poll_members(session, pods, timeout=1.0)
    assert set(reports) == {"lb-0", "lb-1"}  # no IP, or terminating: not asked
    assert reports["lb-0"].reachable and reports["lb-0"].node["state"] == "ready"
    assert not reports["lb-1"].reachable and "HTTP 500" in (reports["lb-1"].error or "")


async def test_a_member_answering_nonsense_is_unreachable(members: FakeMembers) -> None:
    members.answers[0] = {"unexpected": True}
    pod = PodInfo(name="lb-0", ip="127.0.0.1", port=members.ports[0], ready=True, restarts=0, terminating=False)
    async with aiohttp.ClientSession() as session:
        report = await fetch_member(session, pod, scheme="http", port=None, path="/v1/cluster", timeout=1.0)
        closed = await fetch_member(session, pod, scheme="http", port=1, path="/v1/cluster", timeout=1.0)
    url = f"http://127.0.0.1:{members.ports[0]}/v1/cluster"
    assert report == MemberReport(pod="lb-0", error=f"unexpected answer from {url}")
    assert not closed.reachable  # the override wins over the pod's port


def test_settings_come_from_the_environment() -> None:
    config = OperatorConfig.from_env({
        "LEADERBOARD_OPERATOR_DEFAULT_IMAGE": "img:1", "LEADERBOARD_OPERATOR_POLL_INTERVAL": "3",
        "LEADERBOARD_OPERATOR_RECONCILE_INTERVAL": "7", "LEADERBOARD_OPERATOR_MEMBER_PORT": "8000",
        "LEADERBOARD_OPERATOR_SERVER": "http://x"}, poll_interval=4.0)
    assert (config.default_image, config.poll_interval, config.reconcile_interval, config.member_port, config.server) == (
        "img:1", 4.0, 7.0, 8000, "http://x")
    assert OperatorConfig.from_env({}).member_port is None


@pytest.mark.parametrize("kwargs", [{"poll_interval": 0}, {"member_port": 70000}, {"member_scheme": "ftp"},
                                    {"default_image": ""}])
def test_nonsense_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        OperatorConfig(**kwargs)


def test_resource_urls() -> None:
    assert resources.PODS.url(namespace="ns") == "/api/v1/namespaces/ns/pods"
    assert resources.CLUSTERS.url(namespace="ns", name="lb", subresource="status") == (
        "/apis/leaderboard-cluster.dev/v1alpha1/namespaces/ns/leaderboardclusters/lb/status")
    assert resources.CRDS.url(name="x") == "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/x"


def test_metrics_track_phases_and_forget_deleted_clusters() -> None:
    metrics = OperatorMetrics()
    metrics.observe_phase(namespace="ns", cluster="lb", phase="Ready", ready=3)
    text = metrics.render().decode()
    assert 'leaderboard_operator_cluster_phase{cluster="lb",namespace="ns",phase="Ready"} 1.0' in text
    assert 'leaderboard_operator_cluster_phase{cluster="lb",namespace="ns",phase="Degraded"} 0.0' in text
    assert 'leaderboard_operator_cluster_ready_replicas{cluster="lb",namespace="ns"} 3.0' in text
    metrics.forget(namespace="ns", cluster="lb")
    assert 'cluster="lb"' not in metrics.render().decode()


async def test_the_metrics_endpoint_serves_prometheus_text() -> None:
    metrics = OperatorMetrics()
    metrics.reconciles.labels("create", "success").inc()
    runner = await cli.serve_metrics(metrics, port=0, host="127.0.0.1")
    try:
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            assert 'leaderboard_operator_reconciles_total{outcome="success",trigger="create"} 1.0' in await response.text()
    finally:
        await runner.cleanup()


def test_the_command_line_maps_to_settings() -> None:
    args = cli.build_parser().parse_args(["-n", "games", "-n", "ops", "--member-port", "9000",
                                          "--default-image", "img:2", "--metrics-port", "0"])
    assert args.namespaces == ["games", "ops"]
    config = cli.config_from_args(args)
    assert (config.member_port, config.default_image) == (9000, "img:2")


def test_the_command_line_refuses_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--poll-interval", "-1"]) == 2
    assert "poll_interval must be positive" in capsys.readouterr().err


def test_the_member_url_uses_the_override_else_the_pods_port_else_7350() -> None:
    from leaderboard_operator.members import member_url
    pod = PodInfo(name="lb-0", ip="10.0.0.1", ready=True, restarts=0, terminating=False, port=8000)
    assert member_url(pod, scheme="http", port=None, path="/v1/cluster") == "http://10.0.0.1:8000/v1/cluster"
    assert member_url(pod, scheme="https", port=9000, path="/x") == "https://10.0.0.1:9000/x"
    bare = PodInfo(name="lb-0", ip="fd00::1", ready=True, restarts=0, terminating=False)
    assert member_url(bare, scheme="http", port=None, path="/v1/cluster") == "http://[fd00::1]:7350/v1/cluster"


async def test_the_api_client_logs_in_again_on_401() -> None:
    import aiohttp.web
    import kopf

    from leaderboard_operator.kube import ApiError, Kube

    async def handle(request: aiohttp.web.Request) -> aiohttp.web.Response:
        if request.headers.get("Authorization") != "Bearer fresh":
            return aiohttp.web.json_response({"reason": "Unauthorized", "message": "expired"}, status=401)
        return aiohttp.web.json_response({"metadata": {"name": "lb-0"}})

    app = aiohttp.web.Application()
    app.router.add_get("/api/v1/namespaces/ns/pods/lb-0", handle)
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", 0).start()
    server = f"http://127.0.0.1:{runner.addresses[0][1]}"
    kube = Kube()
    try:
        kube.use(kopf.ConnectionInfo(server=server, token="stale"))
        with pytest.raises(ApiError) as err:
            await kube.get(resources.PODS, namespace="ns", name="lb-0")
        assert err.value.status == 401

        async def relogin() -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=server, token="fresh")

        kube.relogin = relogin
        assert (await kube.get(resources.PODS, namespace="ns", name="lb-0"))["metadata"]["name"] == "lb-0"
    finally:
        await kube.close()
        await runner.cleanup()


async def test_a_node_that_wants_an_api_key_is_read_from_its_open_readiness(members: FakeMembers) -> None:
    members.answers = {0: 401, 1: 401, 2: 401}
    members.readiness = {0: (200, {"ready": True, "state": "ready"}),
                         1: (503, {"ready": False, "state": "syncing"}),
                         2: (503, {"ready": False, "state": "ready", "reason": "clock_skew"})}
    pods = [PodInfo(name=f"lb-{i}", ip="127.0.0.1", port=members.ports[i], ready=i == 0, restarts=0, terminating=False)
            for i in range(3)]
    async with aiohttp.ClientSession() as session:
        reports = await poll_members(session, pods, timeout=1.0)
    assert all(report.reachable and report.limited for report in reports.values())
    assert (reports["lb-0"].node["state"], reports["lb-0"].node["synced"], reports["lb-0"].clock.skewed) == (
        "ready", True, False)
    assert (reports["lb-1"].node["state"], reports["lb-1"].clock) == ("syncing", None)
    assert reports["lb-2"].clock.skewed is True


async def test_api_errors_are_the_kubernetes_packages_typed_errors(context: "Context") -> None:
    from kubernetes.client.exceptions import ApiException, NotFoundException, UnprocessableEntityException

    from leaderboard_operator.kube import NotFound
    with pytest.raises(NotFoundException) as missing:
        await context.kube.get(resources.PODS, namespace="lb-test", name="nope")
    assert isinstance(missing.value, NotFound) and missing.value.status == 404 and not str(missing.value).startswith("(")
    service = rendering.render_client_service("lb.x", "lb-test", ClusterSpec.parse({}, default_image="i")).manifest
    with pytest.raises(UnprocessableEntityException) as invalid:
        await context.kube.create(resources.SERVICES, service)
    assert isinstance(invalid.value, ApiException) and invalid.value.reason == "Invalid" and not invalid.value.retriable
    assert "DNS-1035" in str(invalid.value)
