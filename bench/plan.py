"""How big and how long each workload runs: ``QUICK`` (under 2 minutes in all) and ``FULL``
(1,000,000 records where the README says so; under 20 minutes in all)."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Plan:
    name: str
    rounds: int = 3
    # rank_cache (in process)
    rank_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    rank_samples: int = 20_000  # inserts, updates and rank lookups per round and size
    rank_pages: int = 2_000  # top-100 pages and around-owner queries per round and size
    # client_api and memory (one node, one redis-server)
    api_records: int = 1_000_000
    api_load_batch: int = 1_000  # records per batch request (per pipeline for Redis) while loading
    api_op_seconds: float = 1.5  # per operation, concurrency and round
    api_op_max: int = 200_000
    api_concurrency: tuple[int, ...] = (1, 50)
    api_batch: int = 100  # records per batch write in the client_api workload
    # replication (3 nodes; Redis master + 2 replicas)
    repl_rates: tuple[int, ...] = (1_000, 5_000, 10_000, 0)  # records/s; 0 = saturation
    repl_seconds: float = 6.0  # per rate and round
    repl_batches_per_s: int = 100  # fixed rates: batches of rate/100 records (at least 10)
    repl_saturation_batch: int = 1_000
    repl_writers: int = 3  # batches in flight (one connection each)
    repl_converge_timeout: float = 60.0
    # full_sync
    sync_records: int = 1_000_000
    sync_load_batch: int = 10_000
    sync_timeout: float = 180.0
    # replication lag on the loaded full_sync systems, every write through one node
    big_rates: tuple[int, ...] = (5_000, 10_000)
    big_seconds: float = 6.0
    # bulk_import (3 nodes; Redis master + 2 replicas)
    import_records: int = 1_000_000
    import_chunk: int = 100_000
    # rounds after the first are skipped once the run has taken this long (the whole run
    # must stay under 2 minutes quick, 20 minutes full)
    budget_seconds: float = 1_080.0


FULL = Plan(name="full")

QUICK = Plan(
    name="quick",
    rank_sizes=(10_000, 50_000),
    rank_samples=2_000,
    rank_pages=300,
    api_records=20_000,
    api_op_seconds=0.25,
    api_op_max=20_000,
    repl_seconds=1.2,
    repl_converge_timeout=20.0,
    sync_records=30_000,
    sync_timeout=60.0,
    big_seconds=1.2,
    import_records=50_000,
    import_chunk=10_000,
    budget_seconds=100.0,
)


def plan_for(quick: bool, rounds: int | None) -> Plan:
    plan = QUICK if quick else FULL
    return replace(plan, rounds=rounds) if rounds else plan
