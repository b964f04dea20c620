"""``leaderboardctl``: talk to any node of a cluster, or start a local one.

    leaderboardctl local --nodes 3 --sample-data      a real cluster on 127.0.0.1
    leaderboardctl create weekly --reset-schedule "0 0 * * 1"
    leaderboardctl submit weekly player-1 100
    leaderboardctl top weekly --limit 10
    leaderboardctl around weekly player-1
    leaderboardctl cluster                           this node, its members and their lag
    leaderboardctl digests weekly                    every member's digest side by side

The node is ``--url`` or ``$LEADERBOARD_URL`` (default http://127.0.0.1:7350).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from .client import ApiError, LeaderboardClient


def _print_records(records: list[dict[str, Any]]) -> None:
    if not records:
        print("(no records)")
        return
    print(f"{'rank':>6}  {'score':>12}  {'subscore':>8}  {'num':>4}  owner")
    for record in records:
        name = f"  ({record['username']})" if record.get("username") else ""
        print(f"{record['rank']:>6}  {record['score']:>12}  {record['subscore']:>8}  {record['num_score']:>4}  "
              f"{record['owner_id']}{name}")


def _cmd_local(args: argparse.Namespace) -> int:
    from .local import LocalCluster, load_sample_data

    def interrupt(signum: int, frame: object) -> None:  # SIGTERM stops the cluster as Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    cluster = LocalCluster(nodes=args.nodes, base_port=args.base_port, data=args.persist)
    print(f"starting {args.nodes} nodes in {cluster.workdir} ...", flush=True)
    try:
        cluster.start()
        urls = [node.url for node in cluster.nodes]
        sample = None
        if args.sample_data:
            sample = load_sample_data(urls, players=args.players)
            print(f"loaded {sample['records']} sample records into global, weekly, kills, speedrun, daily_cup")
        print("\nthe cluster is ready:")
        for node in cluster.nodes:
            print(f"  {node.name}: client API {node.url}  (peers on {node.host}:{node.peer_port}, "
                  f"log {cluster.workdir / (node.name + '.log')})")
        first, last = urls[0], urls[-1]
        owner = sample["first_owner"] if sample else "player-1"
        beside = Path(sys.executable).parent / "leaderboardctl"  # the venv's, when it is not on PATH
        ctl = "leaderboardctl" if shutil.which("leaderboardctl") == str(beside) and os.environ.get(
            "VIRTUAL_ENV") else str(beside) if beside.exists() else "leaderboardctl"
        print(f"""
try it from another terminal (any node answers, any node accepts writes):
  {ctl} --url {first} top global --limit 5
  {ctl} --url {last} submit global {owner} 2000000
  {ctl} --url {first} around global {owner} --limit 5
  {ctl} --url {first} digests global
  {ctl} --url {first} cluster
  curl -s '{first}/v1/leaderboards/global/records?limit=3'
""")
        if args.exit_after is not None:
            time.sleep(args.exit_after)
            return 0
        print("press Ctrl-C to stop the cluster", flush=True)
        while all(node.process is not None and node.process.poll() is None for node in cluster.nodes):
            time.sleep(0.5)
        print("a node exited; stopping the cluster", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        cluster.stop()


def _member_urls(client: LeaderboardClient) -> list[tuple[str, str]]:
    status = client.cluster()
    urls = [(status["node"]["name"], client.url)]
    for member in status["members"]:
        if member.get("client_address"):
            urls.append((member["name"], f"http://{member['client_address']}"))
    return urls


def run(args: argparse.Namespace) -> int:
    if args.command == "local":
        return _cmd_local(args)
    client = LeaderboardClient(args.url)
    out: Any
    if args.command == "create":
        settings: dict[str, Any] = {"sort_order": args.sort_order, "operator": args.operator}
        if args.reset_schedule:
            settings["reset_schedule"] = args.reset_schedule
        out = client.create_leaderboard(args.leaderboard, **settings)
    elif args.command == "submit":
        fields: dict[str, Any] = {"subscore": args.subscore}
        if args.operator:
            fields["operator"] = args.operator
        if args.username:
            fields["username"] = args.username
        out = client.write_record(args.leaderboard, args.owner, args.score, **fields)
    elif args.command == "top":
        out = client.records(args.leaderboard, limit=args.limit)
        if not args.json:
            _print_records(out["records"])
            print(f"({out['rank_count']} records)")
            return 0
    elif args.command == "around":
        out = client.around(args.leaderboard, args.owner, limit=args.limit)
        if not args.json:
            _print_records(out["records"])
            return 0
    elif args.command == "cluster":
        out = client.cluster()
        if not args.json:
            node = out["node"]
            print(f"{node['name']}: {node['state']}, {node['records']} records, log at {node.get('log_seq', 0)}")
            print(f"{'member':<16} {'state':<9} {'reachable':<9} {'lag':>6} {'lag s':>8} {'records':>9}")
            for member in out["members"]:
                print(f"{member['name'] or member['address']:<16} {member['state']:<9} "
                      f"{str(member['reachable']):<9} {member['lag_entries'] or 0:>6} "
                      f"{member['lag_seconds'] or 0:>8} {member['records']:>9}")
            return 0
    elif args.command == "digests":
        out = []
        for name, url in _member_urls(client):
            with LeaderboardClient(url, timeout=5) as member:
                try:
                    digest = member.digest(args.leaderboard, expiry=args.expiry)
                    out.append({"node": name, "url": url, "count": digest["count"], "digest": digest["digest"]})
                except (ApiError, OSError) as exc:
                    out.append({"node": name, "url": url, "error": str(exc)})
        if not args.json:
            for row in out:
                print(f"{row['node']:<16} {row.get('count', '-'):>9}  {row.get('digest', row.get('error'))}")
            digests = {row.get("digest") for row in out}
            print("all equal" if len(digests) == 1 and None not in digests else "DIFFERENT")
            return 0
    else:  # pragma: no cover - argparse refuses unknown commands
        raise SystemExit(2)
    print(json.dumps(out, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leaderboardctl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("LEADERBOARD_URL", "http://127.0.0.1:7350"))
    parser.add_argument("--json", action="store_true", help="print JSON")
    sub = parser.add_subparsers(dest="command", required=True)
    local = sub.add_parser("local", help="start a local cluster of node processes")
    local.add_argument("--nodes", type=int, default=3)
    local.add_argument("--base-port", type=int, default=7350)
    local.add_argument("--sample-data", action="store_true")
    local.add_argument("--players", type=int, default=1000)
    local.add_argument("--persist", action="store_true", help="give each node a data directory")
    local.add_argument("--exit-after", type=float, help=argparse.SUPPRESS)
    create = sub.add_parser("create", help="create a leaderboard")
    create.add_argument("leaderboard")
    create.add_argument("--sort-order", choices=["desc", "asc"], default="desc")
    create.add_argument("--operator", choices=["best", "set", "incr", "decr"], default="best")
    create.add_argument("--reset-schedule")
    submit = sub.add_parser("submit", help="write a score")
    submit.add_argument("leaderboard")
    submit.add_argument("owner")
    submit.add_argument("score", type=int)
    submit.add_argument("--subscore", type=int, default=0)
    submit.add_argument("--operator", choices=["best", "set", "incr", "decr"])
    submit.add_argument("--username")
    top = sub.add_parser("top", help="the first page of a leaderboard")
    top.add_argument("leaderboard")
    top.add_argument("--limit", type=int, default=10)
    around = sub.add_parser("around", help="records around an owner")
    around.add_argument("leaderboard")
    around.add_argument("owner")
    around.add_argument("--limit", type=int, default=10)
    sub.add_parser("cluster", help="this node, its members and their replication lag")
    digests = sub.add_parser("digests", help="a leaderboard's digest on every member, side by side")
    digests.add_argument("leaderboard")
    digests.add_argument("--expiry", type=int)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        raise SystemExit(run(args))
    except ApiError as exc:
        print(f"leaderboardctl: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except OSError as exc:
        print(f"leaderboardctl: cannot reach {args.url}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
