"""Lives: every run of a node process is a writer of its own.

A node's *life* is one run of its process: it starts with an *epoch* (its start time in
milliseconds, made larger than any earlier life of the same name it can learn of) and ends
when the process does, whether or not the next run finds its data on disk. Everything a life
writes is stamped with its *life id*, ``name@epoch`` (the epoch zero-padded, so ids of one
name sort by epoch). A life never continues another's work: a restarted node that full-syncs
from a peer holding an old copy of its previous life's slots builds nothing on them, so it
cannot shrink, replace or overwrite what that life wrote and another replica still holds.

Ids written by builds before lives existed are plain node names; they read as the life of
epoch 0 of that name (one pseudo-life for all of that name's earlier runs, as those builds
kept one slot per name).

**Retiring lives.** One slot per life would grow a record with every restart of every node
that wrote it. A life is *dead* once a newer life of its name has been seen, and *stable*
once every current member holds the same, final position in that life's log (read from the
members' version vectors): nothing it wrote can still arrive that some member lacks. The
``Horizons`` record, per node name, the epoch below which every life of that name is dead and
stable (retired); records fold the contributions of retired lives into one *fold slot* per
name (``records.settle``), and the current life of that name absorbs the fold slot into its
own slot the next time it writes the record. A record then holds at most one slot per node
name that contributes to it, plus one fold slot for a name whose current life has not
written it since.
"""

from __future__ import annotations

from functools import lru_cache

SEPARATOR = "@"
EPOCH_DIGITS = 13  # milliseconds since 1970 have 13 digits until the year 2286


def life_id(name: str, epoch: int) -> str:
    """The id that stamps what the life ``epoch`` of node ``name`` writes."""
    return f"{name}{SEPARATOR}{epoch:0{EPOCH_DIGITS}d}"


@lru_cache(maxsize=4096)  # a few ids, read on every merge of a record with several slots
def life_name(life: str) -> str:
    name, separator, _ = life.rpartition(SEPARATOR)
    return name if separator else life


@lru_cache(maxsize=4096)
def life_epoch(life: str) -> int:
    """The epoch of a life id; 0 for a plain node name (written before lives existed)."""
    _, separator, epoch = life.rpartition(SEPARATOR)
    if not separator:
        return 0
    try:
        return int(epoch)
    except ValueError:
        return 0


def split_life(life: str) -> tuple[str, int]:
    return life_name(life), life_epoch(life)


class Horizons:
    """Per node name, the epoch below which every life of that name is retired.

    Only grows. Decided by replication (``Replicator``) from the members' version vectors;
    read by every merge of a record, which folds what retired lives contributed.
    """

    __slots__ = ("_by_name", "version")

    def __init__(self) -> None:
        self._by_name: dict[str, int] = {}
        self.version = 0  # bumped on every advance: lets a sweep tell what it has seen

    def __bool__(self) -> bool:
        return bool(self._by_name)

    def get(self, name: str) -> int:
        return self._by_name.get(name, 0)

    def advance(self, name: str, horizon: int) -> bool:
        """Retire every life of ``name`` below ``horizon``; True when that retired more."""
        if horizon <= self._by_name.get(name, 0):
            return False
        self._by_name[name] = horizon
        self.version += 1
        return True

    def items(self) -> list[tuple[str, int]]:
        return sorted(self._by_name.items())


NO_HORIZONS = Horizons()  # for merges that fold nothing (tests, and tools that read snapshots)
