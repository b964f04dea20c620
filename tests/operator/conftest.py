"""
Harness of the operator's tests: kmock as the Kubernetes API, the operator embedded in the
test's event loop, and fake members answering ``/v1/cluster`` over real HTTP.

kmock (a Kubernetes API emulator by kopf's author) serves discovery, CRUD, merge and JSON
patches, deletes that respect finalizers and watch streams. It does not emulate a garbage
collector, controllers (a StatefulSet makes no pods), label selectors, uids, resourceVersions
or schema validation. So:

* every resource is declared up front, including what kopf itself needs (namespaces, CRDs,
  events), or kopf finishes its discovery and then waits silently;
* :class:`~.apiserver.ApiServer` adds what kopf relies on: a new ``resourceVersion`` on every
  write (kopf skips the stale events queued before its own patch by it; without it, every
  handler runs again for each stale event), ``uid``, ``creationTimestamp`` and
  ``generateName`` on creation (kopf's Events are all named by ``generateName``; kmock would
  store only the first one), and 422 instead of 500 for a failed JSON-patch ``test`` (kopf's
  optimistic concurrency on finalizers: with 500 it retries the same stale patch 9 times with
  backoff); and what a real API server does to what it is sent: canonical quantities,
  defaulting, name and schema validation, generation, the status and scale subresources,
  garbage collection (see ``apiserver.py``);
* pods are created by hand (``add_pod``) when a test needs members;
* ``kopf.operator()`` is replaced by ``spawn_tasks()`` + ``run_tasks()`` (see ``operator``);
* the operator filters listed objects by labels itself (see ``leaderboard_operator.kube``),
  so no label-selector emulation is added here.

The operator logs in through its own login handler (``@kopf.on.login``), which returns
``kopf.ConnectionInfo(server=str(kmock.url))`` because ``OperatorConfig.server`` is set to the
emulator's URL; the same credentials reach the operator's own API client.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import aiohttp.web
import kmock as kmock_lib
import kopf
import pytest

from leaderboard_operator import OperatorConfig, Context, register, resources

from .apiserver import SKIP_ADMISSION_HEADER, ApiServer, kmock_key

NAMESPACE = "lb-test"
OPERATOR_NAMESPACE = "lb-operator"  # where the operator keeps its identity CA
T = TypeVar("T")


@contextlib.asynccontextmanager
async def emulated_api(server_class: type[ApiServer] = ApiServer) -> AsyncIterator[ApiServer]:
    """The emulated API with every resource the operator (and kopf) uses, and the test namespace;
    fails the test when the emulator itself failed to serve a request."""
    async with server_class() as server, kmock_lib.Server(server):
        for res in resources.ALL:
            server.resources[kmock_key(res)] = kmock_lib.ResourceInfo(
                kind=res.kind,
                singular=res.kind.lower(),
                namespaced=res.namespaced,
                verbs={"get", "list", "watch", "create", "patch", "update", "delete"},
                shortnames={"lbc"} if res is resources.CLUSTERS else set(),
                subresources={"status", "scale"} if res is resources.CLUSTERS else set(res.subresources),
            )
        server.objects[kmock_key(resources.NAMESPACES), None, NAMESPACE] = {
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        yield server
        unexpected = [exc for exc in server.errors if not isinstance(exc, kmock_lib.KubernetesError)]
        assert not unexpected, f"the emulated API failed to serve requests: {unexpected!r}"


@pytest.fixture()
async def k8s() -> AsyncIterator[ApiServer]:
    async with emulated_api() as server:
        yield server


class Cluster:
    """Reading and writing the emulated API's objects, with bounded waits."""

    def __init__(self, kmock: ApiServer) -> None:
        self.kmock = kmock

    def get(self, resource: resources.Resource, name: str, namespace: str | None = NAMESPACE) -> dict[str, Any] | None:
        """The object's current state, or None if absent or deleted."""
        try:
            obj = self.kmock.objects[kmock_key(resource), namespace, name]
        except KeyError:
            return None
        return None if obj.deleted else obj.raw

    def names(self, resource: resources.Resource, namespace: str = NAMESPACE) -> set[str]:
        return {name for (res, ns, name), obj in self.kmock.objects.items()
                if res == kmock_key(resource) and ns == namespace and not obj.deleted}

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self.kmock.request(method, path, **kwargs) as response:
            assert response.status < 400, f"{method} {path}: {response.status} {await response.text()}"
            return await response.json()

    async def apply_cluster(self, name: str, spec: Mapping[str, Any] | None = None, *,
                            admission: bool = True, **meta: Any) -> dict[str, Any]:
        """``kubectl apply`` a LeaderboardCluster; ``admission=False`` lets in what the CRD refuses,
        as an older CRD without its rules would have (the operator must refuse it itself)."""
        body = {
            "apiVersion": f"{resources.GROUP}/{resources.VERSION}",
            "kind": resources.KIND,
            "metadata": {"name": name, "namespace": NAMESPACE, **meta},
            "spec": dict(spec or {}),
        }
        headers = {} if admission else {SKIP_ADMISSION_HEADER: "true"}
        result: dict[str, Any] = await self.request("POST", resources.CLUSTERS.url(namespace=NAMESPACE), json=body,
                                                    headers=headers)
        return result

    async def patch(self, resource: resources.Resource, name: str, patch: Mapping[str, Any], *,
                    subresource: str | None = None, admission: bool = True) -> Any:
        headers = {"Content-Type": "application/merge-patch+json"}
        if not admission:
            headers[SKIP_ADMISSION_HEADER] = "true"
        return await self.request("PATCH", resource.url(namespace=NAMESPACE, name=name, subresource=subresource),
                                  json=patch, headers=headers)

    async def delete(self, resource: resources.Resource, name: str) -> Any:
        return await self.request("DELETE", resource.url(namespace=NAMESPACE, name=name))

    async def add_pod(self, cluster: str, ordinal: int, *, ip: str | None, port: int = 7350,
                      ready: bool = True, restarts: int = 0, **status: Any) -> None:
        """A pod as the StatefulSet controller and kubelet would make it (kmock has neither);
        ``status`` fields replace the usual ones (an unscheduled pod's, for example)."""
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{cluster}-{ordinal}", "namespace": NAMESPACE,
                         "labels": {"app.kubernetes.io/name": "leaderboard-node",
                                    "app.kubernetes.io/instance": cluster}},
            "spec": {"containers": [{"name": "node", "image": "leaderboard-node:test",
                                     "ports": [{"name": "http", "containerPort": port}]}]},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       "containerStatuses": [{"name": "node", "restartCount": restarts}], **status},
        }
        await self.request("POST", resources.PODS.url(namespace=NAMESPACE), json=pod)


async def eventually(check: Callable[[], T | None], *, timeout: float = 5.0, what: str) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except (KeyError, IndexError, TypeError, AssertionError) as exc:
            last = exc
        else:
            if last:
                return last
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}")
        await asyncio.sleep(0.05)


@pytest.fixture()
def cluster(k8s: ApiServer) -> Cluster:
    return Cluster(k8s)


@dataclasses.dataclass
class RunningOperator:
    context: Context
    config: OperatorConfig
    task: asyncio.Task[None]


@pytest.fixture()
def operator_config(k8s: ApiServer, request: pytest.FixtureRequest) -> OperatorConfig:
    """The operator's settings; a test changes some with ``parametrize("operator_config", [{...}], indirect=True)``."""
    settings: dict[str, Any] = dict(
        server=str(k8s.url),
        reconcile_interval=0.5,
        poll_interval=0.2,
        member_timeout=0.5,
        api_timeout=5.0,
        retry_delay=0.2,
        default_image="leaderboard-node:test",
        namespace=OPERATOR_NAMESPACE,
    )
    settings.update(getattr(request, "param", {}))
    return OperatorConfig(**settings)


class ForeignTasks(Collection["asyncio.Task[Any]"]):
    """The tasks that are not the operator's: the ones before it, and aiohttp servers' ones."""

    def __init__(self, tasks: Iterable[asyncio.Task[Any]]) -> None:
        self.tasks = set(tasks)

    def add(self, task: asyncio.Task[Any]) -> None:
        self.tasks.add(task)

    def __contains__(self, task: object) -> bool:
        if task in self.tasks:
            return True
        coro = task.get_coro() if isinstance(task, asyncio.Task) else None
        return getattr(coro, "__qualname__", "").startswith("RequestHandler.")  # aiohttp.web_protocol

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)


@pytest.fixture()
async def operator(k8s: ApiServer, operator_config: OperatorConfig) -> AsyncIterator[RunningOperator]:
    """
    The operator, embedded in the test's event loop, watching the test namespace.

    ``kopf.operator()`` treats every task created after its start as its own, and waits up to
    5 s for the leftovers when it stops, then cancels them -- including pytest-asyncio's task
    that runs this fixture's teardown, and the emulator's server-side connection tasks (a watch
    request's handler streams until cancelled). So the operator runs as ``kopf.spawn_tasks()``
    + ``kopf.run_tasks()`` with :class:`ForeignTasks` excluded.
    """
    registry = kopf.OperatorRegistry()
    context = register(registry, config=operator_config)
    settings = kopf.OperatorSettings()
    settings.scanning.disabled = True
    settings.watching.reconnect_backoff = 0.05
    # A worker of a resource's events idles this long before it exits, and the operator's stop
    # waits for it (5 s by default, in the teardown of every test that changed a cluster late).
    settings.queueing.idle_timeout = 0.5
    stop_flag: asyncio.Event = asyncio.Event()
    ready_flag: asyncio.Event = asyncio.Event()
    foreign = ForeignTasks(asyncio.all_tasks())
    tasks = await kopf.spawn_tasks(
        registry=registry, settings=settings, standalone=True, namespaces=[NAMESPACE],
        stop_flag=stop_flag, ready_flag=ready_flag)
    task = asyncio.create_task(kopf.run_tasks(tasks, ignored=foreign), name="embedded operator")
    foreign.add(task)
    try:
        await asyncio.wait_for(ready_flag.wait(), timeout=10)
        yield RunningOperator(context=context, config=operator_config, task=task)
    finally:
        current = asyncio.current_task()
        if current is not None:
            foreign.add(current)
        stop_flag.set()
        try:
            done, _ = await asyncio.wait({task}, timeout=0.3)
            if not done:
                # Timers spawned while kopf stops can miss its daemon killer, and a worker may be
                # in a handler (an observation polls members); kopf then waits 5 s for them
                # before cancelling them. Cancel them now instead.
                for leftover in asyncio.all_tasks():
                    if leftover.get_name().startswith(("runner of ", "worker for ")) and leftover not in foreign:
                        leftover.cancel()
            await asyncio.wait_for(task, timeout=10)
        finally:
            await context.close()


class FakeMembers:
    """
    Tiny HTTP servers playing leaderboard nodes on 127.0.0.1, one port per member, answering
    ``GET /v1/cluster`` with whatever the test sets for that member (a JSON body or a status).
    The fake pods carry the member's port as their ``http`` container port.
    """

    def __init__(self) -> None:
        self.ports: list[int] = []
        self.answers: dict[int, Mapping[str, Any] | int] = {}  # by member index
        self.readiness: dict[int, tuple[int, Mapping[str, Any]]] = {}  # /readyz; else from answers
        self.requests: list[int] = []  # member indexes, in order
        self._runners: list[aiohttp.web.AppRunner] = []

    async def _handle(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        port = request.transport.get_extra_info("sockname")[1] if request.transport else None
        index = self.ports.index(port)
        self.requests.append(index)
        answer = self.answers.get(index, 503)
        if isinstance(answer, int):
            return aiohttp.web.Response(status=answer)
        return aiohttp.web.json_response(answer)

    async def _readyz(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        port = request.transport.get_extra_info("sockname")[1] if request.transport else None
        index = self.ports.index(port)
        if index in self.readiness:
            status, body = self.readiness[index]
            return aiohttp.web.json_response(body, status=status)
        answer = self.answers.get(index, 503)
        ready = isinstance(answer, Mapping) and (answer.get("node") or {}).get("ready") is True
        return aiohttp.web.json_response({"ready": ready}, status=200 if ready else 503)

    async def start(self, count: int) -> None:
        app = aiohttp.web.Application()
        app.router.add_get("/v1/cluster", self._handle)
        app.router.add_get("/readyz", self._readyz)
        for _ in range(count):
            runner = aiohttp.web.AppRunner(app, access_log=None)
            await runner.setup()
            site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.ports.append(runner.addresses[0][1])
            self._runners.append(runner)

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()

    @staticmethod
    def report(name: str, *, state: str = "ready", ready: bool = True, synced: bool = True,
               peers: Mapping[str, int] | None = None, seq: int = 42,
               clock: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A node's answer, shaped like the node's ``/v1/cluster`` (``clock``: its ``node.clock``,
        absent as from nodes older than the clock check)."""
        return {
            "node": {"name": name, "epoch": 123, "state": state, "ready": ready, "synced": synced,
                     "version_vector": {name: {"epoch": 123, "seq": seq}}, "records": 1000,
                     **({"clock": dict(clock)} if clock is not None else {})},
            "members": [{"name": peer, "address": "10.0.0.9:7351", "state": "ready", "reachable": True,
                         "lag_entries": lag, "lag_seconds": 0.0} for peer, lag in (peers or {}).items()],
        }


MEMBERS = 3


@pytest.fixture()
async def members() -> AsyncIterator[FakeMembers]:
    fake = FakeMembers()
    await fake.start(MEMBERS)
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture()
async def context(k8s: ApiServer, operator_config: OperatorConfig) -> AsyncIterator[Context]:
    """The handlers' context without a running operator, for calling the handlers directly."""
    ctx = Context.create(operator_config)
    ctx.kube.use(kopf.ConnectionInfo(server=str(k8s.url)))
    try:
        yield ctx
    finally:
        await ctx.close()


def handler_kwargs(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The kwargs kopf passes to a resource handler, built from a raw object."""
    body = kopf.Body(dict(raw))
    return {
        "body": body, "meta": body.meta, "spec": body.spec, "status": body.status,
        "name": body.meta.name, "namespace": body.meta.namespace, "uid": body.meta.uid,
        "patch": kopf.Patch(), "logger": logging.getLogger("test.handlers"),
    }


def writes(k8s: ApiServer) -> list[str]:
    """The writing requests the emulated API has served so far, as "METHOD path"."""
    return [f"{request.method.value} {request.url.path}" for request in k8s
            if request.method.value in ("POST", "PATCH", "PUT", "DELETE")]
