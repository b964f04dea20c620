"""
Applying the rendered children: idempotent create-or-patch, and deletion.

:func:`ensure` brings one child in line with its rendering, whatever state it is found in:

* absent -> created (a concurrent creation, 409, is taken as "exists" and checked as such);
* create-only (the generated token Secret) -> created, or left as it is: never read;
* present and matching -> left alone (no write at all: the periodic drift check is cheap);
* present and drifted -> merge-patched with the rendered manifest, minus the immutable fields,
  plus ``null`` for what the spec no longer sets in the fields it owns (:attr:`Child.owned`);
* present but controlled by another owner -> :class:`OwnershipConflict`, never overwritten.

"Matching" is a subset check: every rendered field must be present with the same value; the
API server's own additions (defaults, status, managed fields) are ignored. Lists match
element-wise with the same length. Two exceptions, both from what a real API server does:

* in the fields the spec owns whole (``Child.owned``: resources, affinity, tolerations...) the
  match is exact, so that a field removed from the spec is removed from the child at once, not
  with the next unrelated patch (which would then roll every pod);
* quantities (``Child.quantities``) match by meaning (``kubernetes.utils.parse_quantity``): the
  server stores ``0.5`` as ``500m`` and ``1024Mi`` as ``1Gi``, and a string comparison would
  patch the child (and post an event) on every drift check, forever.

Within a list (the containers), a merge patch replaces the whole list, so an owned field the
spec dropped there needs no ``null``: sending the rendered list removes it.

Everything here can be called any number of times, concurrently or repeatedly: kopf may
invoke a handler twice, and the drift timer re-applies everything periodically.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from kubernetes.utils import parse_quantity

from leaderboard_operator import rendering, resources
from leaderboard_operator.kube import Conflict, Kube, NotFound
from leaderboard_operator.rendering import Child, FieldPath


class Outcome(enum.Enum):
    CREATED = "created"
    PATCHED = "patched"
    UNCHANGED = "unchanged"
    DELETED = "deleted"  # an optional child the spec switched off


class OwnershipConflict(Exception):
    """A child's name is taken by an object that another controller owns."""


def desired_patch(child: Child, actual: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The merge patch that brings an existing object (``actual``) to the rendered state (pure)."""
    patch = copy.deepcopy(child.manifest)
    for path in child.immutable:
        _pop_path(patch, path)
    for path in child.owned:
        if any(isinstance(key, int) for key in path):
            continue  # inside a list: the patch replaces the list whole
        wanted, current = _get_path(patch, path), _get_path(actual or {}, path)
        if wanted is _ABSENT:
            _set_path(patch, path, None)
        elif isinstance(wanted, Mapping) and isinstance(current, Mapping):
            _set_path(patch, path, _replacing(current, wanted))
    return patch


def is_satisfied(actual: Any, wanted: Any, *, owned: Sequence[FieldPath] = (),
                 quantities: Sequence[FieldPath] = ()) -> bool:
    """Whether ``actual`` already has everything ``wanted`` (a merge patch) would set, and, in the
    ``owned`` fields, nothing else; ``quantities`` are maps of quantities (pure)."""
    for path in owned:  # absent from the patch (inside a list, see desired_patch): must be absent
        if _get_path(wanted, path) is _ABSENT and _get_path(actual, path) is not _ABSENT:
            if _get_path(wanted, path[:-1]) is not _ABSENT:
                return False
    return _satisfies(actual, wanted, (), owned=tuple(owned), quantities=tuple(quantities))


def _satisfies(actual: Any, wanted: Any, path: FieldPath, *, owned: tuple[FieldPath, ...],
               quantities: tuple[FieldPath, ...]) -> bool:
    if wanted is None:
        return actual is None
    if isinstance(wanted, Mapping):
        if not isinstance(actual, Mapping):
            return False
        if any(path[:len(prefix)] == prefix for prefix in owned):
            if set(actual) - {key for key, value in wanted.items() if value is not None}:
                return False  # a key the spec does not set
        if path in quantities:
            return all((key not in actual) if value is None else (key in actual and same_quantity(actual[key], value))
                       for key, value in wanted.items())
        return all(
            (key not in actual) if value is None
            else (key in actual and _satisfies(actual[key], value, (*path, key), owned=owned, quantities=quantities))
            for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        return (isinstance(actual, list) and len(actual) == len(wanted)
                and all(_satisfies(a, w, (*path, index), owned=owned, quantities=quantities)
                        for index, (a, w) in enumerate(zip(actual, wanted, strict=True))))
    if isinstance(wanted, bool) or isinstance(actual, bool):
        return actual is wanted
    return bool(actual == wanted)


def same_quantity(actual: Any, wanted: Any) -> bool:
    """Whether two quantities mean the same (``500m`` and ``0.5``); else plain equality."""
    try:
        return bool(parse_quantity(actual) == parse_quantity(wanted))
    except (ValueError, TypeError):
        return bool(actual == wanted)


def _replacing(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch that turns ``current`` into exactly ``wanted`` (``null`` for dropped keys)."""
    patch: dict[str, Any] = {key: None for key in current if key not in wanted}
    for key, value in wanted.items():
        old = current.get(key)
        patch[key] = _replacing(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping) else value
    return patch


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def owned_by(obj: Mapping[str, Any], owner_uid: str | None) -> bool:
    """Whether ``obj`` is the owner's: by an owner reference, or (cluster-scoped objects, which
    cannot reference a namespaced owner) by :data:`~.rendering.OWNER_UID_ANNOTATION`."""
    metadata = obj.get("metadata") or {}
    refs = metadata.get("ownerReferences") or []
    annotation = (metadata.get("annotations") or {}).get(rendering.OWNER_UID_ANNOTATION)
    return any(ref.get("uid") == owner_uid for ref in refs) or (annotation is not None and annotation == owner_uid)


async def ensure(kube: Kube, child: Child, *, owner_uid: str | None) -> Outcome:
    """Create or patch one child (see the module docstring)."""
    if child.create_only:  # never read (it is a Secret): created, or there already
        try:
            await kube.create(child.resource, child.manifest)
        except Conflict:
            return Outcome.UNCHANGED
        return Outcome.CREATED
    try:
        actual = await kube.get(child.resource, namespace=child.namespace, name=child.name)
    except NotFound:
        try:
            await kube.create(child.resource, child.manifest)
        except Conflict:  # created meanwhile by a concurrent run of ourselves (or by someone else)
            actual = await kube.get(child.resource, namespace=child.namespace, name=child.name)
        else:
            return Outcome.CREATED

    controller = controller_uid(actual)
    if controller is not None and owner_uid is not None and controller != owner_uid:
        raise OwnershipConflict(
            f"{child} exists and is controlled by another owner (uid {controller}); "
            f"delete or rename it to let this cluster own it"
        )

    patch = desired_patch(child, actual)
    if is_satisfied(actual, patch, owned=child.owned, quantities=child.quantities):
        return Outcome.UNCHANGED
    await kube.patch(child.resource, namespace=child.namespace, name=child.name, patch=patch)
    return Outcome.PATCHED


async def ensure_all(
    kube: Kube, children: Iterable[Child], *, owner_uid: str | None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Outcome]:
    """Ensure the children one by one, in order (the ServiceAccount before its pods...)."""
    outcomes: dict[str, Outcome] = {}
    for child in children:
        if should_stop is not None and should_stop():
            break
        outcomes[str(child)] = await ensure(kube, child, owner_uid=owner_uid)
    return outcomes


async def delete_all(kube: Kube, children: Sequence[Child], *, owner_uid: str | None) -> list[str]:
    """Delete the children this owner owns (in reverse order); return what was deleted. The
    create-only ones (the token Secret, which the operator may not read) are left to the garbage
    collector, which deletes them through their owner reference."""
    deleted: list[str] = []
    for child in reversed(children):
        if child.create_only:
            continue
        try:
            actual = await kube.get(child.resource, namespace=child.namespace, name=child.name)
        except NotFound:
            continue
        if owner_uid is not None and not owned_by(actual, owner_uid):
            continue  # not ours: e.g. a pre-existing object we refused to take over
        if await kube.delete(child.resource, namespace=child.namespace, name=child.name):
            deleted.append(str(child))
    return deleted


async def delete_claims(kube: Kube, *, namespace: str, cluster: str) -> list[str]:
    """Delete the PersistentVolumeClaims of the cluster's pods (``data-NAME-<ordinal>``)."""
    deleted: list[str] = []
    claims = await kube.list(resources.PVCS, namespace=namespace, labels=rendering.selector_labels(cluster))
    for claim in claims:
        name = claim["metadata"]["name"]
        if await kube.delete(resources.PVCS, namespace=namespace, name=name):
            deleted.append(f"PersistentVolumeClaim/{name}")
    return deleted


class _Absent:
    pass


_ABSENT = _Absent()


def _get_path(tree: Any, path: FieldPath) -> Any:
    node: Any = tree
    for key in path:
        if isinstance(key, int):
            if not isinstance(node, list) or key >= len(node):
                return _ABSENT
        elif not isinstance(node, Mapping) or key not in node:
            return _ABSENT
        node = node[key]
    return node


def _set_path(tree: dict[str, Any], path: FieldPath, value: Any) -> None:
    """Set a value at a path of mapping keys (no list indexes: see :func:`desired_patch`)."""
    node = tree
    for key in path[:-1]:
        assert isinstance(key, str)
        node = node.setdefault(key, {})
    assert isinstance(path[-1], str)
    node[path[-1]] = value


def _pop_path(tree: dict[str, Any], path: FieldPath) -> None:
    node: Any = tree
    for key in path[:-1]:
        if not isinstance(node, dict) or key not in node:
            return
        node = node[key]
    if isinstance(node, dict):
        node.pop(path[-1], None)
