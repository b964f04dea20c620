"""
The kopf handlers of ``LeaderboardCluster`` resources, and their registration.

The handlers are module-level functions with keyword-only arguments: kopf's usual kwargs
(``body``, ``spec``, ``patch``, ``logger``...) plus a :class:`Context` (the API client, the
operator's settings and metrics) as ``context`` (not ``runtime``: kopf passes its own).
:func:`register` binds them to one context and puts them into a kopf registry; the same
functions can be called directly, e.g. twice in a row in tests to prove them idempotent.

=====================  ===========================================================================
login                  credentials for kopf and for our own client (:mod:`.kube`), same source
configure (startup)    kopf settings: our finalizer and annotation prefix, quieter event posting
children               on create, resume and spec update: render, adopt, create-or-patch children,
                       then observe: a status (and ``observedGeneration``) for the new spec at once
drift (timer)          the same every ``reconcile_interval``: repairs edited or deleted children
members (timer)        observe -- pods + members' ``/v1/cluster`` -> status, conditions, events --
                       every ``busy_poll_interval`` while anything is in progress (not Ready, a
                       generation not observed yet, a pod changed), else every ``poll_interval``
pods (event)           a change of a managed pod: its cluster is observed at the next tick
certificates (event)   a CertificateSigningRequest to our signer: approved and signed, or denied
                       (``identity.py``)
cleanup (delete)       explicit deletion of the children (and PVCs unless retained)
=====================  ===========================================================================

``observedGeneration`` is written only together with a status computed from that generation's
spec, so a status never claims Ready for a spec it has not seen (``kubectl scale`` to 2 of a
Ready cluster of 5 reads Scaling at once, not "Ready, 5 ready" until the next poll).

Errors: an invalid spec, or children the API rejects as invalid (400, 422), are a
:class:`kopf.PermanentError` (retrying cannot help until the spec changes; the drift timer
re-checks anyway); everything else is a :class:`kopf.TemporaryError` with the configured delay. Either way the failure is written to ``status.lastError`` and posted as a Warning event
(once per distinct message, not on every retry); the next success clears it.

Caveats:

* Deletion is explicit although every child carries an owner reference: a real cluster's
  garbage collector would do it, but explicit deletion is faster and also removes the PVCs
  (which the StatefulSet's retention policy only handles on Kubernetes >= 1.27). The token
  Secret is the exception: the operator may create Secrets but not read or delete them, so the
  garbage collector removes it.
* Drift is found by a timer, not by watching the children: watching eight more kinds
  cluster-wide would cost kopf memory per object, while the timer costs a few GETs per
  cluster per interval. A deleted child is back within ``reconcile_interval``.
* A per-cluster lock serialises the children handler, the drift timer and the deletion, and
  the timer gives up as soon as kopf says the object is going (``stopped``): a drift check
  that started just before a deletion must not re-create what the deletion removed.
* ``kopf.event()`` needs a running operator; direct calls (tests) skip the events.
* The pods are watched by kopf (one watch per namespace, filtered by labels on the client:
  kopf sends no label selector), only to wake their cluster's status up; the status itself is
  computed from a fresh list of the cluster's pods.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import functools
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import kopf

from leaderboard_operator import children, identity, members, rendering, resources
from leaderboard_operator import status as status_mod
from leaderboard_operator.kube import ApiError, Kube
from leaderboard_operator.metrics import OperatorMetrics
from leaderboard_operator.settings import OperatorConfig

FINALIZER = f"{resources.GROUP}/finalizer"
RECONCILE_REASONS = frozenset({"ReconcileFailed", "InvalidSpec", "OwnershipConflict"})
MONITOR_REASONS = frozenset({"MonitorFailed"})


@dataclasses.dataclass(kw_only=True)
class Context:
    """What the handlers share: settings, the API client, metrics, the members' HTTP session."""

    config: OperatorConfig
    kube: Kube
    metrics: OperatorMetrics
    _http: aiohttp.ClientSession | None = None
    _locks: dict[tuple[str, str], asyncio.Lock] = dataclasses.field(default_factory=dict)
    _polled: dict[tuple[str, str], float] = dataclasses.field(default_factory=dict)  # monotonic time
    _nudged: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    _observed: dict[tuple[str, str], Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    _observing: dict[tuple[str, str], asyncio.Lock] = dataclasses.field(default_factory=dict)
    _ca: identity.ClusterCA | None = None
    _ca_lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)

    async def identity_ca(self) -> identity.ClusterCA:
        """The CA of the nodes' identity certificates (read, or created, once)."""
        async with self._ca_lock:
            if self._ca is None:
                self._ca = await identity.load_or_create_ca(self.kube, namespace=self.config.namespace,
                                                            name=self.config.identity_ca_secret)
            return self._ca

    def lock(self, namespace: str, name: str) -> asyncio.Lock:
        """One lock per cluster: its children are never created and deleted concurrently."""
        return self._locks.setdefault((namespace, name), asyncio.Lock())

    def forget(self, namespace: str, name: str) -> None:
        for memory in (self._locks, self._polled, self._observed, self._observing):
            memory.pop((namespace, name), None)
        self._nudged.discard((namespace, name))

    def observing(self, namespace: str, name: str) -> asyncio.Lock:
        """One observation of a cluster at a time: two at once would post the same events twice."""
        return self._observing.setdefault((namespace, name), asyncio.Lock())

    def last_observed(self, namespace: str, name: str, *, status: Mapping[str, Any]) -> Mapping[str, Any]:
        """The status last published (kopf's body may not show it yet: the next timer tick can come
        before the watch event of the previous tick's patch); the body's after a restart."""
        return self._observed.get((namespace, name)) or status

    def published(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self._observed[(namespace, name)] = status

    def nudge(self, namespace: str, name: str) -> None:
        """Something of the cluster changed (a pod): observe it at the next tick."""
        self._nudged.add((namespace, name))

    def poll_due(self, namespace: str, name: str, *, status: Mapping[str, Any], generation: Any) -> bool:
        """Whether the cluster is to be observed now (see the module docstring); consumes a nudge."""
        key = (namespace, name)
        nudged = key in self._nudged
        self._nudged.discard(key)
        last = self._polled.get(key)
        return (nudged or last is None or status.get("phase") != status_mod.READY
                or status.get("observedGeneration") != generation
                or time.monotonic() - last >= self.config.poll_interval)

    def polled(self, namespace: str, name: str) -> None:
        self._polled[(namespace, name)] = time.monotonic()

    @classmethod
    def create(cls, config: OperatorConfig, *, metrics: OperatorMetrics | None = None) -> Context:
        return cls(config=config, kube=Kube(timeout=config.api_timeout),
                   metrics=metrics if metrics is not None else OperatorMetrics())

    def member_session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(headers={"User-Agent": "leaderboard-operator"})
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        await self.kube.close()


def configure(settings: kopf.OperatorSettings) -> None:
    """Kopf settings of this operator: our own finalizer and annotations, fewer events."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=resources.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=resources.GROUP, key="last-handled-configuration")
    settings.posting.reporting_component = "leaderboard-operator"
    # Handlers' log lines stay logs; Events are posted explicitly (phase changes, failures).
    settings.posting.level = logging.WARNING
    # On deletion, kopf stops the timers; ours stop within one API call. If one is slower,
    # re-check soon rather than after kopf's default 60 s, which would hold the deletion back.
    settings.background.instant_exit_timeout = 0.5
    settings.background.cancellation_polling = 2


async def login(*, context: Context, logger: kopf.Logger, settings: kopf.OperatorSettings,
                **_: Any) -> kopf.ConnectionInfo | None:
    """Credentials for kopf (returned) and for the operator's own client (the same ones)."""
    async def relogin() -> kopf.ConnectionInfo | None:
        return _credentials(context.config, logger=logger, settings=settings)

    info = _credentials(context.config, logger=logger, settings=settings)
    if info is not None:
        context.kube.use(info)
        context.kube.relogin = relogin
    return info


def _credentials(config: OperatorConfig, *, logger: kopf.Logger,
                 settings: kopf.OperatorSettings) -> kopf.ConnectionInfo | None:
    """The configured API server as is, or in-cluster/kubeconfig credentials (kubernetes client)."""
    if config.server:
        return kopf.ConnectionInfo(server=config.server)
    return kopf.login_via_client(logger=logger, settings=settings)


async def startup(*, settings: kopf.OperatorSettings, **_: Any) -> None:
    configure(settings)


async def shutdown(*, context: Context, **_: Any) -> None:
    await context.close()


async def reconcile(
    *,
    context: Context,
    trigger: str,
    body: kopf.Body,
    meta: Mapping[str, Any],
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    name: str,
    namespace: str,
    uid: str | None,
    patch: kopf.Patch,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    stopped: Any = None,
    **_: Any,
) -> None:
    """Render the children, adopt them and create-or-patch each; idempotent."""
    def stopping() -> bool:  # the cluster is being deleted (kopf's flag for timers), or the operator exits
        return bool(stopped) or bool(meta.get("deletionTimestamp"))

    async with context.lock(namespace, name):
        if stopping():
            return
        outcomes = await _apply_children(context, trigger=trigger, body=body, spec=spec, status=status,
                                          name=name, namespace=namespace, uid=uid, patch=patch, stopping=stopping)

    context.metrics.reconciles.labels(trigger, "success").inc()
    changed = {child: outcome for child, outcome in outcomes.items() if outcome is not children.Outcome.UNCHANGED}
    for child, outcome in changed.items():
        context.metrics.child_changes.labels(child.split("/", 1)[0], outcome.value).inc()
    if changed:
        summary = "; ".join(f"{outcome.value} {child}" for child, outcome in changed.items())
        reason = "DriftCorrected" if trigger == "drift" else "Reconciled"
        logger.info(f"{reason}: {summary}")
        _post_event(body, type="Normal", reason=reason, message=summary)

    if (status.get("lastError") or {}).get("reason") in RECONCILE_REASONS:
        patch.status["lastError"] = None
    if trigger != "drift" or status.get("observedGeneration") != meta.get("generation"):
        try:  # the status of the new spec, now; failing here is the monitor's to report
            await observe(context=context, body=body, meta=meta, spec=spec, status=status, name=name,
                          namespace=namespace, patch=patch, logger=logger, stopped=stopped)
        except kopf.TemporaryError:
            pass


async def _apply_children(
    context: Context, *, trigger: str, body: kopf.Body, spec: Mapping[str, Any], status: Mapping[str, Any],
    name: str, namespace: str, uid: str | None, patch: kopf.Patch, stopping: Callable[[], bool],
) -> dict[str, children.Outcome]:
    """Render, adopt and apply; failures are recorded (status, event, metrics) and re-raised for kopf."""
    def fail(reason: str, message: str) -> None:
        _record_error(context, body=body, status=status, patch=patch, reason=reason, message=message,
                      stage="reconcile")
        context.metrics.reconciles.labels(trigger, "error").inc()

    try:
        cluster = rendering.ClusterSpec.parse(spec, default_image=context.config.default_image)
        rendering.check_name(name)
    except (ValueError, TypeError) as exc:
        fail("InvalidSpec", f"invalid spec: {exc}")
        raise kopf.PermanentError(f"invalid spec: {exc}") from exc

    try:
        ca = (await context.identity_ca()).pem if cluster.identity else ""
        wanted = rendering.render_children(name, namespace, cluster, identity_ca=ca,
                                           node_csr_role=context.config.node_csr_cluster_role)
        if cluster.peer_token_secret is None:
            token = secrets.token_urlsafe(32)  # used only if the Secret does not exist yet
            wanted.insert(0, rendering.render_peer_token_secret(name, namespace, token=token))
        kopf.adopt([child.manifest for child in wanted if not child.cluster_scoped], owner=body)
        for child in wanted:  # no owner reference across scopes: the operator deletes them itself
            if child.cluster_scoped:
                child.manifest["metadata"].setdefault("annotations", {})[rendering.OWNER_UID_ANNOTATION] = uid
        outcomes = await children.ensure_all(context.kube, wanted, owner_uid=uid, should_stop=stopping)
        for deleted in await children.delete_all(context.kube, rendering.render_switched_off(name, namespace, cluster),
                                                 owner_uid=uid):
            outcomes[deleted] = children.Outcome.DELETED
        return outcomes
    except children.OwnershipConflict as exc:
        fail("OwnershipConflict", str(exc))
        # Only a human can resolve it: retry, but less eagerly.
        raise kopf.TemporaryError(str(exc), delay=context.config.retry_delay * 6) from exc
    except ApiError as exc:
        fail("ReconcileFailed", f"cannot apply the children: {exc}")
        if not exc.retriable:  # e.g. 422: the API rejects what the spec renders; a spec change will retry
            raise kopf.PermanentError(f"cannot apply the children: {exc}") from exc
        raise kopf.TemporaryError(f"cannot apply the children: {exc}", delay=context.config.retry_delay) from exc


async def monitor(
    *,
    context: Context,
    meta: Mapping[str, Any],
    status: Mapping[str, Any],
    name: str,
    namespace: str,
    **kwargs: Any,
) -> None:
    """The members timer: observe the cluster when due (see the module docstring)."""
    if context.poll_due(namespace, name, status=status, generation=meta.get("generation")):
        await observe(context=context, meta=meta, status=status, name=name, namespace=namespace, **kwargs)


async def observe(
    *,
    context: Context,
    body: kopf.Body,
    meta: Mapping[str, Any],
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    name: str,
    namespace: str,
    patch: kopf.Patch,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    stopped: Any = None,
    **_: Any,
) -> None:
    """Poll the pods and members; publish status, conditions, ``observedGeneration`` and events."""
    async with context.observing(namespace, name):
        await _observe(context=context, body=body, meta=meta, spec=spec, status=status, name=name,
                       namespace=namespace, patch=patch, logger=logger, stopped=stopped)


async def _observe(
    *, context: Context, body: kopf.Body, meta: Mapping[str, Any], spec: Mapping[str, Any],
    status: Mapping[str, Any], name: str, namespace: str, patch: kopf.Patch,
    logger: logging.Logger | logging.LoggerAdapter[Any], stopped: Any,
) -> None:
    config, metrics = context.config, context.metrics
    generation = meta.get("generation")
    previous = context.last_observed(namespace, name, status=status)
    if isinstance(generation, int) and (previous.get("observedGeneration") or 0) > generation:
        return  # a stale body: a newer spec's status is published already
    try:
        rendering.check_name(name)
        desired = rendering.ClusterSpec.parse(spec, default_image=config.default_image).replicas
    except (ValueError, TypeError):
        return  # the children handler reports the invalid spec
    try:
        pods = await members.list_pods(context.kube, namespace=namespace, cluster=name)
    except ApiError as exc:
        _record_error(context, body=body, status=status, patch=patch, reason="MonitorFailed",
                      message=f"cannot list the pods: {exc}", stage="monitor")
        raise kopf.TemporaryError(f"cannot list the pods: {exc}", delay=config.retry_delay) from exc

    reports = await members.poll_members(
        context.member_session(), pods, scheme=config.member_scheme, port=config.member_port,
        path=config.member_path, timeout=config.member_timeout)
    if stopped:
        return  # being deleted: the status no longer matters
    context.polled(namespace, name)
    for report in reports.values():
        metrics.members_polled.labels("ok" if report.reachable else "unreachable").inc()
        if not report.reachable:
            logger.debug(f"Member {report.pod} is unreachable: {report.error}")

    observed = status_mod.compute_status(
        desired=desired, pods=pods, reports=reports, selector=rendering.selector_string(name),
        previous=previous, now=datetime.datetime.now(datetime.UTC))
    for key, value in status_mod.changed_fields(status, observed).items():  # against what is stored
        patch.status[key] = value
    if generation is not None and status.get("observedGeneration") != generation:
        patch.status["observedGeneration"] = generation
    if (status.get("lastError") or {}).get("reason") in MONITOR_REASONS:
        patch.status["lastError"] = None
    context.published(namespace, name, {**observed, "observedGeneration": generation})

    metrics.observe_phase(namespace=namespace, cluster=name, phase=observed["phase"], ready=observed["readyReplicas"])
    if previous.get("phase") != observed["phase"]:
        logger.info(f"Phase {previous.get('phase')} -> {observed['phase']}")
    for notice in status_mod.notices(previous, observed):
        logger.info(f"{notice.reason}: {notice.message}")
        _post_event(body, type=notice.type, reason=notice.reason, message=notice.message)


async def pod_changed(*, context: Context, labels: Mapping[str, str], namespace: str | None, **_: Any) -> None:
    """A managed pod changed: its cluster's status is observed at the next tick."""
    cluster = labels.get(rendering.LABEL_INSTANCE)
    if cluster and namespace:
        context.nudge(namespace, cluster)


async def delete(
    *,
    context: Context,
    body: kopf.Body,
    spec: Mapping[str, Any],
    name: str,
    namespace: str,
    uid: str | None,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> None:
    """Delete every child this cluster owns, and its PVCs unless ``storage.retainOnDelete``."""
    try:
        cluster = rendering.ClusterSpec.parse(spec, default_image=context.config.default_image)
        owned = rendering.render_children(name, namespace, cluster)  # only their names matter here
    except (ValueError, TypeError):
        return  # nothing could have been created from an invalid spec
    try:
        async with context.lock(namespace, name):  # wait for a drift check in progress, if any
            deleted = await children.delete_all(context.kube, owned, owner_uid=uid)
            if not cluster.storage.retain_on_delete:
                deleted += await children.delete_claims(context.kube, namespace=namespace, cluster=name)
    except ApiError as exc:
        context.metrics.errors.labels("delete").inc()
        _post_event(body, type="Warning", reason="CleanupFailed", message=str(exc))
        raise kopf.TemporaryError(f"cannot delete the children: {exc}", delay=context.config.retry_delay) from exc
    context.metrics.forget(namespace=namespace, cluster=name)
    context.forget(namespace, name)
    if deleted:
        logger.info(f"Deleted: {', '.join(deleted)}")


def _record_error(
    context: Context, *, body: kopf.Body, status: Mapping[str, Any], patch: kopf.Patch,
    reason: str, message: str, stage: str,
) -> None:
    context.metrics.errors.labels(stage).inc()
    previous = status.get("lastError") or {}
    patch.status["lastError"] = {
        "time": status_mod.timestamp(datetime.datetime.now(datetime.UTC)),
        "reason": reason,
        "message": message[:1024],
    }
    if previous.get("reason") != reason or previous.get("message") != message[:1024]:
        _post_event(body, type="Warning", reason=reason, message=message)


def _post_event(body: kopf.Body, *, type: str, reason: str, message: str) -> None:
    try:
        kopf.event(body, type=type, reason=reason, message=message[:1024])
    except LookupError:
        pass  # not inside a running operator (a direct call): there is nowhere to post


async def certificate_request(*, context: Context, body: kopf.Body, **_: Any) -> None:
    """A CertificateSigningRequest to our signer: answer it (``identity.answer``). Errors are
    logged, not retried: the node asks again (see ``identity.py``)."""
    try:
        await identity.answer(context.kube, body, ca=await context.identity_ca(),
                              max_seconds=context.config.certificate_seconds)
    except ApiError as exc:
        context.metrics.errors.labels("certificates").inc()
        identity.log.warning("Cannot answer certificate request %s: %s", body.get("metadata", {}).get("name"), exc)


def register(
    registry: kopf.OperatorRegistry,
    *,
    config: OperatorConfig,
    context: Context | None = None,
) -> Context:
    """Register all the handlers, bound to one :class:`Context` (created unless given)."""
    context = context if context is not None else Context.create(config)
    resource = (resources.GROUP, resources.VERSION, resources.PLURAL)

    def bind(fn: Any, **kwargs: Any) -> Any:
        return functools.partial(fn, context=context, **kwargs)

    kopf.on.login(registry=registry, id="login")(bind(login))
    kopf.on.startup(registry=registry, id="configure")(startup)
    kopf.on.cleanup(registry=registry, id="shutdown")(bind(shutdown))
    kopf.on.create(*resource, registry=registry, id="children")(bind(reconcile, trigger="create"))
    kopf.on.resume(*resource, registry=registry, id="children")(bind(reconcile, trigger="resume"))
    kopf.on.update(*resource, registry=registry, id="children", field="spec")(bind(reconcile, trigger="update"))
    kopf.timer(*resource, registry=registry, id="drift", interval=config.reconcile_interval,
               initial_delay=config.reconcile_interval)(bind(reconcile, trigger="drift"))
    kopf.timer(*resource, registry=registry, id="members",
               interval=min(config.poll_interval, config.busy_poll_interval))(bind(monitor))
    kopf.on.event("", "v1", "pods", registry=registry, id="pods",
                  labels={rendering.LABEL_NAME: rendering.APP_NAME, rendering.LABEL_INSTANCE: kopf.PRESENT},
                  )(bind(pod_changed))
    kopf.on.event(resources.CSRS.group, resources.CSRS.version, resources.CSRS.plural, registry=registry,
                  id="certificates", field="spec.signerName", value=rendering.SIGNER_NAME,
                  )(bind(certificate_request))
    kopf.on.delete(*resource, registry=registry, id="cleanup")(bind(delete))
    return context
