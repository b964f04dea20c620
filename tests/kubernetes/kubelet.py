"""
A kubelet and a StatefulSet controller on top of kmock, running real node processes.

kmock emulates the Kubernetes API (objects, patches, watches) but no controller: a StatefulSet
makes no pods and nothing runs them. :class:`Kubelet` plays both parts for the end-to-end tests,
in the test's event loop, next to the embedded operator:

* **StatefulSet controller.** It polls the StatefulSets through the API. For each ordinal below
  ``spec.replicas`` without a pod it creates the pod object: the template's labels and
  annotations plus the StatefulSet's pod-name and pod-index labels, a controller
  ``ownerReference``, the template's spec, and a status as a kubelet would report it
  (``phase: Running``, a fresh ``podIP`` on 127.0.0.x, ``containerStatuses`` with
  ``restartCount``, ``Ready: False``). It scales down highest ordinal first, one pod at a time,
  as a graceful deletion: the pod is DELETEd (it gets a ``deletionTimestamp`` and stays), the
  process gets SIGTERM and the pod's grace period (capped), then the pod object goes. Pods
  whose StatefulSet is gone are deleted the same way (the garbage collector's part).
* **kubelet.** For each pod it starts ``leaderboard-node`` (``python -m leaderboard_node.cli``)
  as the pod's container would run: the container's args and env, ``fieldRef`` env evaluated
  (``metadata.name``, ``metadata.namespace``, ``status.podIP``), the projected ConfigMap and
  Secret volume written to disk from the objects in kmock, the ``data`` claim as a per-pod
  directory that outlives the process (a PVC: a restarted container finds its data again), and
  ``emptyDir`` volumes as fresh directories. Mount paths in args, env and the ConfigMap's
  ``node.yaml`` are translated to those directories. It probes the readiness endpoint of the
  template's ``readinessProbe`` and patches the pod's ``Ready``/``ContainersReady`` conditions;
  when the process dies it marks the pod not ready, and restarts it after a back-off with
  ``restartCount + 1`` (unless the test holds the pod down, see :meth:`Kubelet.hold`).

* **scheduler.** One node (``laptop``) with ``node_cpu`` allocatable CPU (unlimited if None):
  a pod whose container's CPU request does not fit beside the scheduled pods' stays unscheduled
  -- ``phase: Pending``, no IP, no process, ``PodScheduled=False`` with reason ``Unschedulable``
  and the scheduler's message (``0/1 nodes are available: 1 Insufficient cpu. ...``) -- and is
  scheduled when room frees up.
* **node lifecycle controller.** :meth:`Kubelet.node_not_ready` plays a node that stops
  heartbeating: every pod is marked ``Ready=False`` (and only that: ``ContainersReady`` stays
  as the kubelet last said) while the processes keep running, and the kubelet's own reports
  resume when the block ends.
* **readiness probe**: the first probe of a started container waits the probe's
  ``initialDelaySeconds`` (2 s as rendered), as the kubelet does; then every ``interval``.

What a laptop needs besides, and nothing more, overrides the pod's own settings (as env vars,
which win over the config file): every pod listens on its own 127.0.0.x with the same client
and peer ports (the test's port pair instead of 7350/7351, which may be taken), discovery talks
to kmock's URL with a dummy token file and no CA file instead of the in-cluster service account,
and discovery's peer port is the test's peer port. The operator reaches the members' client
port through its ``member_port`` setting. Each pod gets a token of its own, which the emulated
API (:attr:`ApiServer.tokens`) takes for that pod's bound ServiceAccount token, so that the
certificate requests its node makes are recorded as made by that pod.

What the harness adds to kmock, and why:

* :class:`WatchingApiServer` fixes a race in kmock 0.8's watch: it snapshots the existing objects,
  streams them, and only then subscribes to the live events, so an object created or changed
  while the snapshot is being written is never sent. Over loopback the window opens only when
  the write to the watcher blocks (a busy watcher, a full socket buffer: a node doing a full
  sync is one), and a lost event would hide a peer (or its new state) from that node until its
  watch restarts, which in kmock is never (``timeoutSeconds`` is ignored). Here the
  subscription is taken under the emulator's lock before the snapshot: an event may come twice
  (ADDED, then again), never not at all. ``test_discovery_through_the_api.py`` shows the race.
* Graceful pod deletion: kmock removes an object without finalizers at once on DELETE (and
  also as soon as a patch gives it a ``deletionTimestamp``), while a real API server keeps a
  pod, marked with its ``deletionTimestamp``, until the kubelet has stopped it. So every pod
  carries the harness's finalizer :data:`GRACE_FINALIZER`: DELETE marks it (watchers see it
  terminating, and discovery drops it), and the kubelet removes the finalizer once the process
  has exited, which lets kmock delete it.
* Pod status is merge-patched on the pod itself rather than its ``status`` subresource, which
  kmock does not separate; its merge patches replace lists, so each patch carries the whole
  ``conditions`` and ``containerStatuses`` lists.
* No label selectors: kmock ignores ``labelSelector`` and returns every pod of the namespace.
  Nothing is added for it: the node's discovery and the operator both filter by labels
  themselves, so the harness relies on (and thereby tests) that filtering.
* No resourceVersions: discovery gets ``resourceVersion: "..."`` from a list, which kmock's watch
  ignores (it replays every object as ADDED, which discovery handles as an upsert).
* ``kubectl scale`` on the custom resource PATCHes its ``scale`` subresource; kmock applies a
  subresource's patch to the object itself, which for ``{"spec": {"replicas": N}}`` is what the
  CRD's ``specReplicasPath: .spec.replicas`` means, so no emulation is needed for that.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import dataclasses
import datetime
import decimal
import inspect
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import attrs
import yaml
from kubernetes.utils import parse_quantity

from leaderboard_client import ApiError, LeaderboardClient
from leaderboard_operator import resources

from ..harness import log_errors, log_tail, loopback_host
from ..operator.apiserver import pod_token_identity
from ..operator.conftest import ApiServer, Cluster

log = logging.getLogger("tests.kubernetes.kubelet")
T = TypeVar("T")

NODE_COMMAND = "leaderboard-node"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
GRACE_FINALIZER = "kubelet.harness.test/graceful-termination"  # see _delete_pod
MAX_GRACE = 15.0  # seconds a terminating node gets before SIGKILL (the template says 30)


@attrs.define(kw_only=True)
class WatchingApiServer(ApiServer):
    """:class:`ApiServer` whose watches never miss an event between the snapshot and the stream."""

    async def _serve_watch(self, request: Any) -> AsyncIterator[Any]:
        yield b""  # send the headers: the client is waiting for them
        assert request.resource is not None
        bus = self._buses[request.resource]
        async with self._lock:  # every write puts its event on the bus while holding this lock
            mark = await bus.mark()
            events = [{"type": "ADDED", "object": obj.raw} for (resource, namespace, name), obj in self.objects.items()
                      if not obj.deleted and self._watched(request, resource, namespace, name)]
        try:
            for event in events:
                yield event
            async for event in bus.stream(since=mark):
                metadata = (event.get("object") or {}).get("metadata") or {}
                if self._watched(request, request.resource, metadata.get("namespace"), metadata.get("name")):
                    yield event
        finally:
            await bus.unmark(mark)

    @staticmethod
    def _watched(request: Any, resource: Any, namespace: str | None, name: str | None) -> bool:
        return bool(resource == request.resource
                    and (request.namespace is None or namespace == request.namespace)
                    and (request.name is None or name == request.name))


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(eq=False)
class Pod:
    """One pod: its object's identity, its container's process, and what the kubelet reports."""

    name: str
    statefulset: str
    ordinal: int
    ip: str
    spec: dict[str, Any]
    dir: Path
    client_port: int
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    ready: bool = False
    ready_since: str = dataclasses.field(default_factory=now)
    started_at: str | None = None
    started_monotonic: float | None = None
    last_exit: int | None = None
    exits: list[int] = dataclasses.field(default_factory=list)
    crashes_in_a_row: int = 0
    terminating: bool = False
    scheduled: bool = True
    task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.client_port}"

    @property
    def log_path(self) -> Path:
        return self.dir / "node.log"

    @property
    def token_file(self) -> Path:
        return self.dir / "serviceaccount" / "token"

    @property
    def container(self) -> dict[str, Any]:
        return dict(self.spec["containers"][0])

    @property
    def cpu_request(self) -> decimal.Decimal:
        cpu = ((self.container.get("resources") or {}).get("requests") or {}).get("cpu")
        return parse_quantity(cpu) if cpu is not None else decimal.Decimal(0)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def describe(self) -> str:
        return (f"{self.name} on {self.ip}: running={self.running} ready={self.ready} restarts={self.restarts} "
                f"exits={self.exits}; log tail:\n{self.log_tail(10)}")

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)

    def log_errors(self) -> list[str]:
        return log_errors(self.log_path)


class Kubelet:
    """The StatefulSet controller and the kubelet of one namespace (see the module docstring)."""

    def __init__(self, api: Cluster, *, workdir: Path, client_port: int, peer_port: int,
                 namespace: str, interval: float = 0.1, restart_backoff: float = 0.2,
                 node_cpu: str | None = None) -> None:
        self.api = api
        self.workdir = workdir
        self.client_port = client_port
        self.peer_port = peer_port
        self.namespace = namespace
        self.interval = interval
        self.restart_backoff = restart_backoff
        self.pods: dict[str, Pod] = {}
        self.removed: list[Pod] = []  # deleted pods, kept for their logs and exit codes
        self.errors: list[BaseException] = []
        self.node_cpu = parse_quantity(node_cpu) if node_cpu is not None else None
        self._node_ready = True
        self._held: set[str] = set()
        self._unready: set[str] = set()  # pods whose readiness probe is held back
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    # ----------------------------------------------------------------- life cycle

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._controller(), name="kubelet: statefulset controller")

    async def stop(self) -> None:
        """Stop the loops and SIGKILL every process still running; safe to call at any point."""
        tasks = [task for task in [self._task, *(pod.task for pod in self.pods.values())] if task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for pod in [*self.pods.values(), *self.removed]:
            if pod.process is not None and pod.process.poll() is None:
                pod.process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    pod.process.wait(timeout=10)
        if self._session is not None:
            await self._session.close()

    def raise_errors(self) -> None:
        if self.errors:
            raise AssertionError(f"the kubelet harness failed: {self.errors!r}") from self.errors[0]

    def log_errors(self) -> dict[str, list[str]]:
        found = {pod.name: pod.log_errors()[:3] for pod in [*self.removed, *self.pods.values()]}
        return {name: lines for name, lines in found.items() if lines}

    # ----------------------------------------------------------------- test controls

    def pod(self, name: str) -> Pod:
        return self.pods[name]

    def kill(self, name: str) -> None:
        """SIGKILL the pod's process, as an OOM kill or a crash would; the kubelet restarts it."""
        process = self.pods[name].process
        assert process is not None and process.poll() is None, f"{name} has no running process"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    @contextlib.contextmanager
    def hold(self, name: str) -> Iterator[None]:
        """Keep a dead container from being restarted until the block ends (a long back-off)."""
        self._held.add(name)
        try:
            yield
        finally:
            self._held.discard(name)

    @contextlib.contextmanager
    def hold_readiness(self, name: str) -> Iterator[None]:
        """Report the pod not ready whatever its probe says until the block ends (a long probe
        period), so that what the operator shows meanwhile can be checked."""
        self._unready.add(name)
        try:
            yield
        finally:
            self._unready.discard(name)

    @contextlib.asynccontextmanager
    async def node_not_ready(self) -> AsyncIterator[None]:
        """The node stops heartbeating: every pod Ready=False, the processes keep running."""
        self._node_ready = False
        for pod in list(self.pods.values()):
            if pod.scheduled and not pod.terminating:
                pod.ready, pod.ready_since = False, now()
                await self._patch(pod, {"status": self._status(pod)})
        try:
            yield
        finally:
            self._node_ready = True

    def unscheduled(self) -> list[str]:
        return sorted(name for name, pod in self.pods.items() if not pod.scheduled)

    def ready(self, *names: str) -> bool:
        """True once every named pod passes its readiness probe; else an AssertionError saying
        why not (for :func:`wait_for`, which reports the last one when it gives up)."""
        waiting = [name for name in names if name not in self.pods or not self.pods[name].ready]
        if waiting:
            raise AssertionError("; ".join(self.pods[name].describe() if name in self.pods else f"{name}: no pod yet"
                                           for name in waiting))
        return True

    # ----------------------------------------------------------------- StatefulSet controller

    async def _controller(self) -> None:
        while True:
            try:
                await self._reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reported to the test by raise_errors()
                log.exception("kubelet harness failed")
                self.errors.append(exc)
                return
            await asyncio.sleep(self.interval)

    async def _reconcile(self) -> None:
        listing = await self.api.request("GET", resources.STATEFULSETS.url(namespace=self.namespace))
        sets = {item["metadata"]["name"]: item for item in listing.get("items") or []}
        for name, sts in sets.items():
            replicas = int((sts.get("spec") or {}).get("replicas", 1))
            for ordinal in range(replicas):  # podManagementPolicy Parallel: all at once
                if f"{name}-{ordinal}" not in self.pods:
                    await self._create_pod(sts, ordinal)
            condemned = sorted((pod for pod in self.pods.values() if pod.statefulset == name and pod.ordinal >= replicas),
                               key=lambda pod: pod.ordinal, reverse=True)
            for pod in condemned:  # highest ordinal first, one at a time
                await self._delete_pod(pod)
        for pod in sorted(self.pods.values(), key=lambda pod: pod.ordinal, reverse=True):
            if pod.statefulset not in sets:  # the owner is gone: what the garbage collector does
                await self._delete_pod(pod)
        for pod in sorted(self.pods.values(), key=lambda pod: pod.ordinal):
            if not pod.scheduled and not pod.terminating and self._fits(pod):
                await self._bind(pod)

    def _fits(self, pod: Pod) -> bool:
        if self.node_cpu is None:
            return True
        used = sum((other.cpu_request for other in self.pods.values()
                    if other.scheduled and other is not pod), decimal.Decimal(0))
        return used + pod.cpu_request <= self.node_cpu

    async def _bind(self, pod: Pod) -> None:
        """The scheduler binds the pod to the node; the kubelet starts it."""
        pod.scheduled = True
        await self._patch(pod, {"spec": {"nodeName": "laptop"}, "status": {
            "phase": "Running", "podIP": pod.ip, "podIPs": [{"ip": pod.ip}], "hostIP": "127.0.0.1",
            "startTime": now(), **self._status(pod)}})
        pod.task = asyncio.create_task(self._run_pod(pod), name=f"kubelet: {pod.name}")

    async def _create_pod(self, sts: Mapping[str, Any], ordinal: int) -> None:
        sts_meta, template = sts["metadata"], sts["spec"]["template"]
        name = f"{sts_meta['name']}-{ordinal}"
        pod = Pod(name=name, statefulset=sts_meta["name"], ordinal=ordinal, ip=loopback_host(),
                  spec=copy.deepcopy(template["spec"]), dir=self.workdir / "pods" / name,
                  client_port=self.client_port)
        pod.dir.mkdir(parents=True, exist_ok=True)
        pod.scheduled = self._fits(pod)
        manifest = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {**(template.get("metadata") or {}).get("labels", {}),
                           POD_NAME_LABEL: name, POD_INDEX_LABEL: str(ordinal)},
                "annotations": dict((template.get("metadata") or {}).get("annotations") or {}),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": sts_meta["name"],
                                     "uid": sts_meta.get("uid"), "controller": True, "blockOwnerDeletion": True}],
                "finalizers": [GRACE_FINALIZER],
            },
            "spec": {**copy.deepcopy(template["spec"]), "hostname": name,
                     "subdomain": sts["spec"].get("serviceName"), **({"nodeName": "laptop"} if pod.scheduled else {})},
            "status": ({"phase": "Running", "podIP": pod.ip, "podIPs": [{"ip": pod.ip}], "hostIP": "127.0.0.1",
                        "startTime": now(), **self._status(pod)} if pod.scheduled else self._unschedulable(pod)),
        }
        created = await self.api.request("POST", resources.PODS.url(namespace=self.namespace), json=manifest)
        self._issue_token(pod, service_account=pod.spec.get("serviceAccountName") or "default",
                          uid=created["metadata"]["uid"])
        self.pods[name] = pod
        if pod.scheduled:
            pod.task = asyncio.create_task(self._run_pod(pod), name=f"kubelet: {name}")

    def _issue_token(self, pod: Pod, *, service_account: str, uid: str) -> None:
        """The pod's bound ServiceAccount token, projected into it: the API (the harness's
        :attr:`ApiServer.tokens`) takes its bearer for this pod, as a real one would."""
        token = secrets.token_urlsafe(24)
        assert isinstance(self.api.kmock, ApiServer)
        self.api.kmock.tokens[token] = pod_token_identity(namespace=self.namespace, service_account=service_account,
                                                          pod=pod.name, pod_uid=uid)
        pod.token_file.parent.mkdir(parents=True, exist_ok=True)
        pod.token_file.write_text(token + "\n")

    def _unschedulable(self, pod: Pod) -> dict[str, Any]:
        return {"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "lastTransitionTime": now(),
            "message": "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: "
                       "1 No preemption victims found for incoming pod."}]}

    async def _delete_pod(self, pod: Pod) -> None:
        """A graceful deletion: DELETE (deletionTimestamp), SIGTERM, the grace period, then the object goes."""
        pod.terminating = True
        grace = float(pod.spec.get("terminationGracePeriodSeconds", 30))
        # The pod carries the harness's finalizer, so kmock marks it deleted and keeps it (a real
        # API server keeps every pod for its grace period, until the kubelet confirms).
        await self.api.request("DELETE", resources.PODS.url(namespace=self.namespace, name=pod.name))
        if pod.task is not None:
            pod.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pod.task
        if pod.process is not None and pod.process.poll() is None:
            pod.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + min(grace, MAX_GRACE)
            while pod.process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if pod.process.poll() is None:
                log.warning("pod %s did not stop within its grace period: SIGKILL", pod.name)
                pod.process.kill()
                pod.process.wait(timeout=10)
            pod.exits.append(pod.process.returncode)
        await self._patch(pod, {"metadata": {"finalizers": []}})  # kmock removes the object now
        del self.pods[pod.name]
        self.removed.append(pod)

    # ----------------------------------------------------------------- kubelet

    async def _run_pod(self, pod: Pod) -> None:
        try:
            await self._start_container(pod)
            while not pod.terminating:
                await asyncio.sleep(self.interval)
                assert pod.process is not None
                code = pod.process.poll()
                if code is None:
                    if not self._node_ready:
                        continue  # the node is down: nobody reports anything for its pods
                    delay = float((pod.container.get("readinessProbe") or {}).get("initialDelaySeconds", 0))
                    if pod.started_monotonic is not None and time.monotonic() - pod.started_monotonic < delay:
                        continue  # the first probe waits initialDelaySeconds
                    ready = await self._probe(pod) and pod.name not in self._unready
                    if not self._node_ready:
                        continue  # the node went down during the probe: its result goes nowhere
                    if ready != pod.ready:
                        pod.ready, pod.ready_since = ready, now()
                        if ready:
                            pod.crashes_in_a_row = 0
                        await self._patch(pod, {"status": self._status(pod)})
                    continue
                # The container died: not ready now, restarted after a back-off.
                pod.last_exit = code
                pod.exits.append(code)
                pod.ready, pod.ready_since = False, now()
                await self._patch(pod, {"status": self._status(pod)})
                while pod.name in self._held:
                    await asyncio.sleep(self.interval)
                await asyncio.sleep(min(self.restart_backoff * 2 ** pod.crashes_in_a_row, 3.0))
                pod.crashes_in_a_row += 1
                pod.restarts += 1
                await self._start_container(pod)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported to the test by raise_errors()
            log.exception("kubelet harness failed on %s", pod.name)
            self.errors.append(exc)

    async def _probe(self, pod: Pod) -> bool:
        """The template's readinessProbe (an HTTP GET), on the pod's IP and the test's client port."""
        assert self._session is not None
        probe = pod.container.get("readinessProbe") or {}
        path = (probe.get("httpGet") or {}).get("path", "/readyz")
        try:
            async with self._session.get(f"{pod.url}{path}", timeout=aiohttp.ClientTimeout(total=1.0)) as response:
                return 200 <= response.status < 400
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return False

    def _status(self, pod: Pod) -> dict[str, Any]:
        """The pod's conditions and container status, as the kubelet reports them."""
        container = pod.container
        state: dict[str, Any]
        if pod.running:
            state = {"running": {"startedAt": pod.started_at}}
        elif pod.last_exit is not None:
            state = {"terminated": {"exitCode": pod.last_exit, "reason": "Error" if pod.last_exit else "Completed"}}
        else:
            state = {"waiting": {"reason": "ContainerCreating"}}
        status = {"name": container["name"], "image": container.get("image"), "ready": pod.ready,
                  "started": pod.running, "restartCount": pod.restarts, "state": state}
        if pod.last_exit is not None:
            status["lastState"] = {"terminated": {"exitCode": pod.last_exit}}
        ready = "True" if pod.ready else "False"
        # The node lifecycle controller marks a lost node's pods Ready=False, nothing else: the
        # kubelet, which would report ContainersReady, is not heard from.
        containers_ready = "True" if pod.ready or (not self._node_ready and pod.running) else "False"
        return {
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Initialized", "status": "True"},
                {"type": "ContainersReady", "status": containers_ready, "lastTransitionTime": pod.ready_since},
                {"type": "Ready", "status": ready, "lastTransitionTime": pod.ready_since},
            ],
            "containerStatuses": [status],
        }

    async def _patch(self, pod: Pod, patch: Mapping[str, Any]) -> None:
        await self.api.request("PATCH", resources.PODS.url(namespace=self.namespace, name=pod.name), json=patch,
                               headers={"Content-Type": "application/merge-patch+json"})

    async def _start_container(self, pod: Pod) -> None:
        container = pod.container
        mounts = await self._mount_volumes(pod)

        def local(value: str) -> str:
            for mount_path, directory in sorted(mounts.items(), key=lambda item: -len(item[0])):
                if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                    return str(directory) + value[len(mount_path.rstrip("/")):]
            return value

        command = list(container.get("command") or [])
        assert command == [NODE_COMMAND], f"unexpected container command {command!r}"
        argv = [sys.executable, "-m", "leaderboard_node.cli", *(local(arg) for arg in container.get("args") or [])]

        env = {key: value for key, value in os.environ.items() if not key.startswith("LEADERBOARD_")}
        env.update(self._file_paths(container, local))
        for item in container.get("env") or []:
            env[item["name"]] = local(self._env_value(pod, item))
        env.update(self._laptop_overrides(pod))

        with open(pod.log_path, "ab") as output:
            pod.process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=pod.dir)
        pod.started_at, pod.started_monotonic = now(), time.monotonic()
        await self._patch(pod, {"status": self._status(pod)})

    def _env_value(self, pod: Pod, item: Mapping[str, Any]) -> str:
        if "value" in item:
            return str(item["value"])
        field = ((item.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
        values = {"metadata.name": pod.name, "metadata.namespace": self.namespace, "status.podIP": pod.ip}
        if field not in values:
            raise NotImplementedError(f"the harness cannot evaluate env {item!r}")
        return values[field]

    def _file_paths(self, container: Mapping[str, Any], local: Callable[[str], str]) -> dict[str, str]:
        """Settings of the mounted config file that name mounted paths, pointed at the directories."""
        args = list(container.get("args") or [])
        config = Path(local(args[args.index("--config") + 1]))
        settings = yaml.safe_load(config.read_text()) or {}
        found: dict[str, str] = {}

        def walk(tree: Any, path: list[str]) -> None:
            if isinstance(tree, dict):
                for key, value in tree.items():
                    walk(value, [*path, str(key)])
            elif isinstance(tree, str) and tree.startswith("/") and local(tree) != tree:
                found["LEADERBOARD_" + "__".join(part.upper() for part in path)] = local(tree)

        walk(settings, [])
        return found

    def _laptop_overrides(self, pod: Pod) -> dict[str, str]:
        """What differs from a real pod: ports on a shared loopback, and the API outside a cluster."""
        prefix = "LEADERBOARD_CLUSTER__DISCOVERY__KUBERNETES__"
        return {
            "LEADERBOARD_NODE__LISTEN": f"{pod.ip}:{self.client_port}",
            "LEADERBOARD_NODE__PEER_LISTEN": f"{pod.ip}:{self.peer_port}",
            prefix + "PORT": str(self.peer_port),
            prefix + "API_SERVER": str(self.api.kmock.url),
            prefix + "TOKEN_FILE": str(pod.token_file),
            prefix + "CA_FILE": "null",
        }

    async def _mount_volumes(self, pod: Pod) -> dict[str, Path]:
        """The container's volumes as directories (mount path -> directory), filled as kubelet would."""
        volumes = {volume["name"]: volume for volume in pod.spec.get("volumes") or []}
        mounts: dict[str, Path] = {}
        for mount in pod.container.get("volumeMounts") or []:
            name, directory = mount["name"], pod.dir / "volumes" / mount["name"]
            volume = volumes.get(name)
            if volume is None:  # a volumeClaimTemplate: the PVC outlives the container and the pod
                directory = self.workdir / "pvc" / f"{name}-{pod.name}"
                directory.mkdir(parents=True, exist_ok=True)
            elif "emptyDir" in volume:
                directory.mkdir(parents=True, exist_ok=True)
            elif "projected" in volume:
                for source in volume["projected"].get("sources") or []:
                    await self._project(directory, source)
            else:
                raise NotImplementedError(f"the harness cannot mount volume {volume!r}")
            mounts[mount["mountPath"]] = directory
        return mounts

    async def _project(self, directory: Path, source: Mapping[str, Any]) -> None:
        if "configMap" in source:
            ref, resource, decode = source["configMap"], resources.CONFIGMAPS, str.encode
        elif "secret" in source:
            ref, resource, decode = source["secret"], resources.SECRETS, base64.b64decode
        else:
            raise NotImplementedError(f"the harness cannot project {source!r}")
        obj = await wait_for(lambda: self._get(resource, ref["name"]), timeout=10,
                             what=f"{resource.kind} {ref['name']} for a volume")
        data = obj.get("data") or {}
        for item in ref.get("items") or [{"key": key, "path": key} for key in data]:
            target = directory / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(decode(data[item["key"]]))

    async def _get(self, resource: resources.Resource, name: str) -> dict[str, Any] | None:
        async with self.api.kmock.request("GET", resource.url(namespace=self.namespace, name=name)) as response:
            if response.status == 404:
                return None
            assert response.status < 400, f"GET {resource.kind}/{name}: {response.status}"
            result: dict[str, Any] = await response.json()
            return result


async def wait_for(check: Callable[[], T | None | Awaitable[T | None]], *, timeout: float, what: str,
                   kubelet: Kubelet | None = None, interval: float = 0.1) -> T:
    """Poll ``check`` (sync or async) until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        if kubelet is not None:
            kubelet.raise_errors()
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await value
        except (AssertionError, KeyError, IndexError, TypeError, OSError, ApiError) as exc:
            last = exc
        else:
            if value:
                return value  # type: ignore[return-value]
            last = value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}")
        await asyncio.sleep(interval)


async def call(url: str, fn: Callable[[LeaderboardClient], T], *, timeout: float = 10.0,
               api_key: str | None = None) -> T:
    """Run a blocking :class:`LeaderboardClient` call in a thread (the event loop serves the API)."""
    def run() -> T:
        with LeaderboardClient(url, timeout=timeout, api_key=api_key) as client:
            return fn(client)

    return await asyncio.to_thread(run)
