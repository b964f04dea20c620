"""Which lives are retired: read from the members' version vectors (see ``domain.lives``).

A life ``(name, epoch)`` is *dead* once a member reports a newer life of the same name as its
current one (names are unique in a cluster, so the older process is gone: a StatefulSet pod,
a static peer). It is *retired* once, in addition, every current member's vector holds the
same position in its log, and has for ``fold_delay`` seconds since this node first saw it
dead: everything it wrote has reached every member, and nothing it sent can still be on its
way (its process is gone, and the delay outlasts any request in flight). What a retired life
wrote is folded (``records.settle``); an entry of it that still arrives later changes nothing.

Lives of a name that has no current member (a node scaled away) are never retired: the name
may come back, and only its next life proves the last one over. Writes of builds before
lives existed read as the life of epoch 0; they are retired together with every dead life of
their name, once all of those are (which of them wrote what is not known).

The decision needs every member: no member unreachable, none speaking an older protocol, and
two members claiming one name (a pod still terminating beside its replacement) suspend it for
that name. It is a pure function of what was observed, so every node decides the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .versions import OriginKey, VersionVector


@dataclass(frozen=True, slots=True)
class MemberView:
    """What one member reported: its current life and its version vector."""

    life: OriginKey
    vector: VersionVector


def horizons(
    views: Sequence[MemberView],
    *,
    dead_since: dict[OriginKey, float],
    now: float,
    fold_delay: float,
) -> dict[str, int]:
    """Per node name, the epoch below which every life of that name is retired (names whose
    lives cannot all be retired yet are left out). ``views`` holds every member, this node
    included; ``dead_since`` remembers when each dead life was first seen dead (updated here)."""
    current: dict[str, int] = {}
    contested: set[str] = set()
    for view in views:
        name, epoch = view.life
        if name in current and current[name] != epoch:
            contested.add(name)
        current[name] = epoch
    lives: dict[str, set[int]] = {}
    for view in views:
        for (name, epoch), _ in view.vector.items():
            lives.setdefault(name, set()).add(epoch)
    decided: dict[str, int] = {}
    for name, live in current.items():
        if name in contested:
            continue
        dead = sorted(epoch for epoch in lives.get(name, ()) if epoch < live)
        if not dead:
            continue
        for epoch in dead:
            dead_since.setdefault((name, epoch), now)
        if all(_settled((name, epoch), views) and now - dead_since[(name, epoch)] >= fold_delay
               for epoch in dead):
            decided[name] = live
    return decided


def _settled(life: OriginKey, views: Sequence[MemberView]) -> bool:
    positions = {view.vector.get(life) for view in views}
    return len(positions) == 1


def forget(dead_since: dict[OriginKey, float], retired: Mapping[str, int]) -> None:
    """Drop what ``dead_since`` remembers of lives now retired."""
    for life in [life for life in dead_since if life[1] < retired.get(life[0], 0)]:
        del dead_since[life]
