"""leaderboardctl: talk to any node of a cluster, or start a local one.

    leaderboardctl local --nodes 3 --sample-data      a real cluster on 127.0.0.1, supervised
    leaderboardctl create weekly --reset-schedule "0 0 * * 1"
    leaderboardctl list                              leaderboards (get, delete one)
    leaderboardctl submit weekly player-1 100
    leaderboardctl import weekly scores.csv          many records from a CSV or JSONL file
    leaderboardctl top weekly --limit 10             a page; --cursor for the next one, --rank to start there
    leaderboardctl rank weekly 1                     the record at a rank
    leaderboardctl update weekly --ranks off         live settings: ranks, --event-top, --webhook-url
    leaderboardctl around weekly player-1
    leaderboardctl owners weekly player-1 player-2   some owners' records and ranks
    leaderboardctl record weekly player-1            one record (delete-record to delete it)
    leaderboardctl tournament create cup --duration 3600 --reset-schedule "0 12 * * *"
    leaderboardctl tournament join cup player-1      (tournament list)
    leaderboardctl tournament attempts cup player-1 2  extra attempts beyond max_num_score
    leaderboardctl owner records player-1            an owner's records everywhere (owner erase: all gone)
    leaderboardctl events --follow                   reset and end events with final standings, as they come
    leaderboardctl cluster                           this node, its members and their lag
    leaderboardctl digests weekly                    every member's digest side by side

The node is --url or $LEADERBOARD_URL (default http://127.0.0.1:7350).

API keys: a cluster with keys (see the README's Security) takes the server key for creating
and deleting and the client key for the rest. Give them as $LEADERBOARD_SERVER_KEY and
$LEADERBOARD_CLIENT_KEY, or as files with --server-key-file and --client-key-file (not on
the command line, where `ps` shows them to every user). leaderboardctl sends the server key
when it has one (it may do everything), else the client key.

Output: a table, or JSON with --json (every command). Times in tables are UTC.

Exit status: 0 done; 1 the node refused the request or could not be reached; 2 a usage
error; 3 digests: the members' digests differ or a member is unreachable; 141 the reader of
the output went away (`leaderboardctl top weekly | head`), as a tool killed by SIGPIPE.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .client import ApiError, LeaderboardClient

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DIFFERENT = 3
EXIT_READER_GONE = 128 + signal.SIGPIPE
DEFAULT_URL = "http://127.0.0.1:7350"
IMPORT_CHUNK = 50_000  # records per import request (and at most IMPORT_CHUNK_BYTES of them)
IMPORT_CHUNK_BYTES = 3 * 1024 * 1024  # under the node's default limits.max_body_bytes (4 MiB)
RECORD_FIELDS = ("owner_id", "score", "subscore", "username", "metadata", "operator")
OPERATORS = ("best", "set", "incr", "decr")
SORT_ORDERS = ("desc", "asc")
CRON_HELP = "reset schedule: a 5-field cron expression in UTC (minute hour day month weekday), e.g. \"0 0 * * 1\""


def package_version() -> str:
    try:
        return version("leaderboard-cluster")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "0+unknown"


class ReaderGone(Exception):
    """stdout's reader went away (``| head``): stop quietly."""


class UsageError(Exception):
    """Input the command cannot use (a bad file, a bad --metadata): exit 2 with the reason."""


# ----------------------------------------------------------------------------- output


def out(line: str = "") -> None:
    """One line of output; ``ReaderGone`` when nobody reads it any more."""
    try:
        print(line)
    except BrokenPipeError:
        raise ReaderGone from None


def flush() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise ReaderGone from None


def out_json(value: Any) -> None:
    out(json.dumps(value, indent=2))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, right: Iterable[int] = ()) -> None:
    """Aligned columns under a header; ``right`` are the indexes of right-aligned (numeric) columns."""
    aligned = set(right)
    cells = [[("-" if value is None else str(value)) for value in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if i in aligned else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))
                         ).rstrip()

    out(line(headers))
    for row in cells:
        out(line(row))


def when(seconds: int | float | None) -> str:
    """Unix seconds as UTC time; ``-`` for 0 (never)."""
    if not seconds:
        return "-"
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def print_records(records: list[dict[str, Any]], *, empty: str = "(no records)") -> None:
    if not records:
        out(empty)
        return
    table(["rank", "score", "subscore", "num", "owner", "username"],
          ([r["rank"], r["score"], r["subscore"], r["num_score"], r["owner_id"], r.get("username") or ""]
           for r in records), right=(0, 1, 2, 3))


def print_page(page: dict[str, Any]) -> None:
    print_records(page["records"])
    out(f"({page['rank_count']} records)")
    if page.get("prev_cursor"):
        out(f"previous page: --cursor {page['prev_cursor']}")
    if page.get("next_cursor"):
        out(f"next page:     --cursor {page['next_cursor']}")


def print_leaderboards(boards: list[dict[str, Any]]) -> None:
    if not boards:
        out("(no leaderboards)")
        return
    table(["id", "sort", "operator", "reset schedule", "ranks", "created", "next reset"],
          ([b["id"], b["sort_order"], b["operator"], b["reset_schedule"] or "", "on" if b["ranks_active"] else "off",
            when(b["create_time"]), when(b["next_reset"])] for b in boards))


def print_tournaments(cups: list[dict[str, Any]]) -> None:
    if not cups:
        out("(no tournaments)")
        return
    table(["id", "title", "cat", "active", "size", "max", "active from", "active until", "reset schedule"],
          ([t["id"], t["title"], t["category"], "yes" if t["active"] else "no", t["size"], t["max_size"] or "-",
            when(t["start_active"]), when(t["end_active"]), t["reset_schedule"] or ""] for t in cups),
          right=(2, 4, 5))


def print_definition(body: dict[str, Any]) -> None:
    (print_tournaments if "duration" in body else print_leaderboards)([body])


def print_cursor(cursor: str | None) -> None:
    if cursor:
        out(f"next page: --cursor {cursor}")


def print_owner_records(records: list[dict[str, Any]]) -> None:
    if not records:
        out("(no records)")
        return
    table(["leaderboard", "period end", "rank", "score", "subscore", "num", "max"],
          ([r["leaderboard_id"], when(r["expiry_time"]), r["rank"], r["score"], r["subscore"], r["num_score"],
            r["max_num_score"] or "-"] for r in records), right=(2, 3, 4, 5, 6))


def print_events(events: list[dict[str, Any]]) -> None:
    for event in events:
        leader = event["records"][0] if event["records"] else None
        out(f"{when(event['period_end'])}  {event['kind']:<17} {event['leaderboard_id']}  "
            f"{event['rank_count']} records" + (f", first {leader['owner_id']} ({leader['score']})" if leader else "")
            + f"  id {event['id']}")


# ------------------------------------------------------------------------- commands


def _cmd_local(args: argparse.Namespace) -> int:
    from .local import LocalCluster, NodeFailed, PortsTaken, load_sample_data

    def interrupt(signum: int, frame: object) -> None:  # SIGTERM stops the cluster as Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    cluster = LocalCluster(nodes=args.nodes, base_port=args.base_port, data=args.persist)
    lock = threading.Lock()

    def report(line: str) -> None:  # from the supervision threads: whole lines, one at a time
        with lock:
            try:
                print(f"[{datetime.now().strftime('%H:%M:%S')}] {line}", flush=True)
            except BrokenPipeError:
                pass

    out(f"starting {args.nodes} node{'s' if args.nodes != 1 else ''} in {cluster.workdir}")
    for node in cluster.nodes:
        out(f"  {node.name}: config {node.config_path}")
        out(f"  {node.name}: log    {node.log_path}")
    flush()
    try:
        cluster.start()
    except (PortsTaken, NodeFailed) as exc:
        cluster.stop()
        print(f"leaderboardctl local: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        cluster.stop()
        return EXIT_OK
    try:
        urls = [node.url for node in cluster.nodes]
        sample = None
        if args.sample_data:
            sample = load_sample_data(urls, players=args.players)
            out(f"loaded {sample['records']} sample records into global, weekly, kills, speedrun, daily_cup")
        out("\nthe cluster is ready:")
        for node in cluster.nodes:
            out(f"  {node.name}: client API {node.url}, peers on {node.host}:{node.peer_port}, pid {node.pid}")
        first, last = urls[0], urls[-1]
        owner = sample["first_owner"] if sample else "player-1"
        beside = Path(sys.executable).parent / "leaderboardctl"  # the venv's, when it is not on PATH
        ctl = "leaderboardctl" if shutil.which("leaderboardctl") == str(beside) and os.environ.get(
            "VIRTUAL_ENV") else str(beside) if beside.exists() else "leaderboardctl"
        victim = cluster.nodes[-1]
        out(f"""
try it from another terminal (any node answers, any node accepts writes):
  {ctl} --url {first} top global --limit 5
  {ctl} --url {last} submit global {owner} 2000000
  {ctl} --url {first} around global {owner} --limit 5
  {ctl} --url {first} digests global
  {ctl} --url {first} cluster
  curl -s '{first}/v1/leaderboards/global/records?limit=3'
  kill -9 {victim.pid}    # {victim.name}: watch it come back here and resync from its peers
""")
        flush()
        cluster.supervise(report)
        if args.exit_after is not None:
            time.sleep(args.exit_after)
            return EXIT_OK
        out("nodes that exit are restarted; press Ctrl-C to stop the cluster")
        flush()
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        try:
            print("stopping the cluster", file=sys.stderr)
        except OSError:
            pass
        cluster.stop()


def _member_urls(client: LeaderboardClient) -> list[tuple[str, str | None, dict[str, Any] | None]]:
    """(name, client URL or None when unknown, the member's entry) of this node and its members."""
    status = client.cluster()
    urls: list[tuple[str, str | None, dict[str, Any] | None]] = [(status["node"]["name"], client.url, None)]
    for member in status["members"]:
        address = member.get("client_address")
        urls.append((member["name"] or member["address"], f"http://{address}" if address else None, member))
    return urls


def _unreachable_since(member: dict[str, Any], now: float) -> float | None:
    """When the node lost this member: its ``unreachable_since``, or else (a node that does not
    report it) the last time it was seen."""
    since = member.get("unreachable_since")
    if since:
        return float(since)
    seen = member.get("last_seen_seconds_ago")
    return now - seen if seen is not None else None


def member_state(member: dict[str, Any], now: float) -> tuple[str, str]:
    """(state, since) as ``cluster`` shows them: a member the node cannot reach is unreachable,
    whatever state it last reported."""
    if member.get("state") == "unreachable" or member.get("reachable") is False:
        since = _unreachable_since(member, now)
        return "unreachable", (f"{when(since)} ({ago(now - since)})" if since else "never reached")
    return str(member.get("state")), ""


def _cmd_cluster(client: LeaderboardClient, args: argparse.Namespace) -> int:
    status = client.cluster()
    if args.json:
        out_json(status)
        return EXIT_OK
    node, now = status["node"], time.time()
    out(f"{node['name']} (version {node.get('version', '?')}): {node['state']}, {node['records']} records, "
        f"log at {node.get('log_seq', 0)}")
    if not status["members"]:
        out("(no members)")
        return EXIT_OK
    rows = []
    for member in status["members"]:
        state, since = member_state(member, now)
        rows.append([member["name"] or member["address"], state, since, member.get("lag_entries") or 0,
                     member.get("lag_seconds") or 0, member.get("records", 0)])
    table(["member", "state", "since", "lag", "lag s", "records"], rows, right=(3, 4, 5))
    return EXIT_OK


def _cmd_digests(client: LeaderboardClient, args: argparse.Namespace, keys: Keys) -> int:
    rows: list[dict[str, Any]] = []
    now = time.time()
    for name, url, member in _member_urls(client):
        row: dict[str, Any] = {"node": name, "url": url}
        if url is None:
            row.update(state="unreachable", error="its client address is unknown (never reached)")
        else:
            with LeaderboardClient(url, timeout=5, api_key=keys.key) as other:
                try:
                    digest = other.digest(args.leaderboard, expiry=args.expiry)
                    row.update(state="ok", count=digest["count"], digest=digest["digest"])
                except ApiError as exc:
                    row.update(state="error", error=str(exc))
                except OSError as exc:
                    row.update(state="unreachable", error=f"cannot reach {url}: {exc}")
        if row["state"] == "unreachable" and member is not None:
            state, since = member_state(member, now)
            row["since"] = since if state == "unreachable" else None
        rows.append(row)
    answered = {row["digest"] for row in rows if row["state"] == "ok"}
    if len(answered) > 1 or any(row["state"] == "error" for row in rows):
        verdict = "different"
    elif any(row["state"] == "unreachable" for row in rows):
        verdict = "unreachable"
    else:
        verdict = "equal"
    if args.json:
        out_json({"leaderboard": args.leaderboard, "verdict": verdict, "members": rows})
    else:
        table(["node", "records", "digest"],
              ([row["node"], row.get("count"), row.get("digest") or
                (f"UNREACHABLE since {row['since']}" if row.get("since") else
                 "UNREACHABLE" if row["state"] == "unreachable" else "ERROR") + f": {row.get('error', '')}"]
               for row in rows), right=(1,))
        out({"equal": "all equal", "unreachable": "UNREACHABLE: a member could not be asked",
             "different": "DIFFERENT"}[verdict])
    return EXIT_OK if verdict == "equal" else EXIT_DIFFERENT


# ---------------------------------------------------------------------- batch import


def _integer(value: str, *, where: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{where}: {name} must be an integer, got {value!r}") from None


def _csv_records(text: str, source: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    unknown = [name for name in header if name not in RECORD_FIELDS]
    if "owner_id" not in header or "score" not in header or unknown:
        raise UsageError(f"{source}: the CSV header must name owner_id and score, and may name "
                         f"{', '.join(RECORD_FIELDS[2:])}" + (f" (not {', '.join(unknown)})" if unknown else ""))
    records = []
    for row in reader:
        where = f"{source}:{reader.line_num}"
        record: dict[str, Any] = {"owner_id": row["owner_id"], "score": _integer(row["score"], where=where,
                                                                                  name="score")}
        if row.get("subscore"):
            record["subscore"] = _integer(row["subscore"], where=where, name="subscore")
        for name in ("username", "operator"):
            if row.get(name):
                record[name] = row[name]
        if row.get("metadata"):
            try:
                record["metadata"] = json.loads(row["metadata"])
            except ValueError:
                raise UsageError(f"{where}: metadata must be a JSON object") from None
        records.append((reader.line_num, record))
    return records


def _jsonl_records(text: str, source: str) -> list[tuple[int, dict[str, Any]]]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise UsageError(f"{source}:{number}: not JSON ({exc})") from None
        if not isinstance(record, dict):
            raise UsageError(f"{source}:{number}: each line must be a JSON object")
        records.append((number, record))
    return records


def read_records(path: str, fmt: str | None) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) of every record in a CSV or JSONL file (``-``: stdin)."""
    source = "stdin" if path == "-" else path
    if fmt is None:
        suffix = Path(path).suffix.lower()
        fmt = "csv" if suffix == ".csv" else "jsonl" if suffix in (".jsonl", ".ndjson", ".json") else None
        if fmt is None:
            raise UsageError(f"{source}: say --format csv or --format jsonl (the file name does not tell)")
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {source}: {exc}") from None
    return _csv_records(text, source) if fmt == "csv" else _jsonl_records(text, source)


def _refused_line(exc: ApiError, chunk: list[tuple[int, dict[str, Any]]], source: str) -> str:
    """The file line of the record a refused import names (``lines[3].score``: the chunk's third)."""
    field = exc.field or ""
    if field.startswith("lines[") and "]" in field:
        index = int(field[len("lines["):field.index("]")]) - 1
        if 0 <= index < len(chunk):
            rest = field[field.index("]") + 1:].lstrip(".")
            message = exc.message.split(": ", 1)[-1] if exc.message.startswith("line ") else exc.message
            return f"{source}:{chunk[index][0]}: {rest or 'record'}: {message}"
    return str(exc)


def _chunks(records: list[tuple[int, dict[str, Any]]], size: int) -> Any:
    """The records as import bodies (JSON lines): at most ``size`` records and about 3 MiB each."""
    chunk: list[tuple[int, dict[str, Any]]] = []
    lines: list[bytes] = []
    total = 0
    for record in records:
        line = json.dumps(record[1], separators=(",", ":"), ensure_ascii=False).encode()
        if chunk and (len(chunk) >= size or total + len(line) > IMPORT_CHUNK_BYTES):
            yield chunk, b"\n".join(lines)
            chunk, lines, total = [], [], 0
        chunk.append(record)
        lines.append(line)
        total += len(line) + 1
    if chunk:
        yield chunk, b"\n".join(lines)


def _cmd_import(client: LeaderboardClient, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    records = read_records(args.file, args.format)
    source = "stdin" if args.file == "-" else args.file
    started, written, batches = time.monotonic(), 0, 0
    # disable=None: a bar only when stderr is a terminal (a pipe or a log gets the summary alone)
    with tqdm(total=len(records), unit="records", desc=f"importing into {args.leaderboard}", file=sys.stderr,
              disable=None if not args.progress else False, dynamic_ncols=True) as bar:
        for chunk, body in _chunks(records, args.chunk_size):
            try:
                answer = client.import_records(args.leaderboard, body)
            except ApiError as exc:
                bar.close()
                print(f"leaderboardctl: {_refused_line(exc, chunk, source)}; the {written} records before "
                      f"line {chunk[0][0]} were written, none after", file=sys.stderr)
                return EXIT_FAILED
            for refusal in answer["refused"]:  # a write that broke a rule (a full tournament): the others stand
                line = chunk[refusal["line"] - 1][0]
                print(f"leaderboardctl: {source}:{line}: {refusal.get('message', 'refused')}", file=sys.stderr)
            written += answer["imported"]
            batches += 1
            bar.update(len(chunk))
    seconds = round(time.monotonic() - started, 3)
    summary = {"leaderboard": args.leaderboard, "records": written, "batches": batches, "seconds": seconds}
    if args.json:
        out_json(summary)
    else:
        table(["leaderboard", "records", "batches", "seconds"], [[args.leaderboard, written, batches, seconds]],
              right=(1, 2, 3))
    return EXIT_OK


# ------------------------------------------------------------------------- dispatch


class Keys:
    """The API key leaderboardctl sends: the server key when it has one, else the client key."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.key = (self._read(args.server_key_file, "LEADERBOARD_SERVER_KEY")
                    or self._read(args.client_key_file, "LEADERBOARD_CLIENT_KEY"))

    @staticmethod
    def _read(path: Path | None, env: str) -> str | None:
        if path is not None:
            try:
                value = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise UsageError(f"cannot read the key file {path}: {exc.strerror or exc}") from None
            if not value:
                raise UsageError(f"the key file {path} is empty")
            return value
        return os.environ.get(env, "").strip() or None


def _metadata(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise UsageError(f"--metadata must be a JSON object, got {text!r}")
    return value


def _definition_settings(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {"sort_order": args.sort_order, "operator": args.operator}
    if args.reset_schedule:
        settings["reset_schedule"] = args.reset_schedule
    metadata = _metadata(args.metadata)
    if metadata is not None:
        settings["metadata"] = metadata
    if args.authoritative:
        settings["authoritative"] = True
    if args.no_ranks:
        settings["enable_ranks"] = False
    return settings


def _live_settings(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if args.ranks is not None:
        settings["enable_ranks"] = args.ranks == "on"
    if args.event_top is not None:
        settings["event_top"] = args.event_top
    if args.default_event_top:
        settings["event_top"] = None
    if args.webhook_url is not None:
        settings["webhook_url"] = args.webhook_url
    if args.no_webhook_url:
        settings["webhook_url"] = None
    if not settings:
        raise UsageError("update: say what to change (--ranks, --event-top, --default-event-top, --webhook-url, "
                         "--no-webhook-url)")
    return settings


def _cmd_events(client: LeaderboardClient, args: argparse.Namespace) -> int:
    """A page of events, or with --follow every event as it comes (long polls) until Ctrl-C."""
    cursor = args.after
    wait = args.wait or (30.0 if args.follow else None)
    try:
        while True:
            page = client.events(after=cursor, limit=args.limit, wait=wait, leaderboard_id=args.leaderboard)
            cursor = page["next_cursor"]
            if args.json:
                if args.follow:
                    for event in page["events"]:
                        out(json.dumps(event))
                else:
                    out_json(page)
            else:
                print_events(page["events"])
                if not args.follow:
                    if not page["events"]:
                        out("(no events)")
                    out(f"next: --after {cursor}")
            flush()
            if not args.follow:
                return EXIT_OK
    except KeyboardInterrupt:  # how --follow is stopped
        return EXIT_OK


def _show(args: argparse.Namespace, value: Any, printer: Callable[[Any], None]) -> int:
    if args.json:
        out_json(value)
    else:
        printer(value)
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    if args.command == "local":
        return _cmd_local(args)
    keys = Keys(args)
    with LeaderboardClient(args.url, api_key=keys.key, timeout=args.timeout) as client:
        return _dispatch(client, args, keys)


def _dispatch(client: LeaderboardClient, args: argparse.Namespace, keys: Keys) -> int:
    command = args.command
    if command == "create":
        return _show(args, client.create_leaderboard(args.leaderboard, **_definition_settings(args)), print_definition)
    if command == "list":
        page = client.list_leaderboards(limit=args.limit, cursor=args.cursor)
        return _show(args, page, lambda p: (print_leaderboards(p["leaderboards"]), print_cursor(p["cursor"])))
    if command == "get":
        return _show(args, client.get_leaderboard(args.leaderboard), print_definition)
    if command == "delete":
        return _show(args, client.delete_leaderboard(args.leaderboard), lambda d: out(f"deleted {d['deleted']}"))
    if command == "submit":
        fields: dict[str, Any] = {"subscore": args.subscore}
        for name in ("operator", "username"):
            if getattr(args, name):
                fields[name] = getattr(args, name)
        metadata = _metadata(args.metadata)
        if metadata is not None:
            fields["metadata"] = metadata
        record = client.write_record(args.leaderboard, args.owner, args.score, **fields)
        return _show(args, record, lambda r: print_records([r]))
    if command == "import":
        return _cmd_import(client, args)
    if command == "top":
        page = client.records(args.leaderboard, limit=args.limit, cursor=args.cursor, expiry=args.expiry,
                              rank=args.rank)
        return _show(args, page, print_page)
    if command == "rank":
        return _show(args, client.record_at_rank(args.leaderboard, args.rank, expiry=args.expiry),
                     lambda r: print_records([r]))
    if command == "update":
        return _show(args, client.update_leaderboard(args.leaderboard, **_live_settings(args)), print_definition)
    if command == "owner":
        if args.action == "erase":
            erased = client.erase_owner(args.owner)
            return _show(args, erased, lambda e: out(f"erased {e['records_erased']} records of {e['owner_id']}"))
        page = client.owner_records(args.owner, limit=args.limit, cursor=args.cursor)
        return _show(args, page, lambda p: (print_owner_records(p["records"]), print_cursor(p["next_cursor"])))
    if command == "events":
        return _cmd_events(client, args)
    if command == "around":
        page = client.around(args.leaderboard, args.owner, limit=args.limit, expiry=args.expiry)
        return _show(args, page, lambda p: print_records(p["records"]))
    if command == "owners":
        page = client.records(args.leaderboard, limit=1, owner_ids=args.owners, expiry=args.expiry)
        return _show(args, {"owner_records": page["owner_records"], "rank_count": page["rank_count"]},
                     lambda p: print_records(p["owner_records"], empty="(none of these owners has a record)"))
    if command == "record":
        return _show(args, client.record(args.leaderboard, args.owner, expiry=args.expiry),
                     lambda r: print_records([r]))
    if command == "delete-record":
        return _show(args, client.delete_record(args.leaderboard, args.owner),
                     lambda d: out(f"deleted the record of {d['deleted']} in {args.leaderboard}"))
    if command == "tournament":
        return _dispatch_tournament(client, args)
    if command == "cluster":
        return _cmd_cluster(client, args)
    if command == "digests":
        return _cmd_digests(client, args, keys)
    raise AssertionError(f"unknown command {command}")  # pragma: no cover - argparse refuses them


def _dispatch_tournament(client: LeaderboardClient, args: argparse.Namespace) -> int:
    if args.action == "create":
        settings = _definition_settings(args)
        settings["duration"] = args.duration
        for name in ("title", "description", "category", "start_time", "end_time", "max_size", "max_num_score"):
            if getattr(args, name) is not None:
                settings[name] = getattr(args, name)
        if args.join_required:
            settings["join_required"] = True
        return _show(args, client.create_tournament(args.tournament, **settings), print_definition)
    if args.action == "attempts":
        granted = client.grant_attempts(args.tournament, args.owner, args.count)
        return _show(args, granted, lambda g: out(f"{g['owner_id']} may now change its score {g['max_num_score']} "
                                                  f"times in this period ({g['extra_attempts']} granted)"))
    if args.action == "join":
        joined = client.join_tournament(args.tournament, args.owner)
        return _show(args, joined, lambda j: out(f"{j['owner_id']} {'joined' if j['joined'] else 'had joined'} "
                                                 f"{j['tournament_id']}"))
    filters = {name: getattr(args, name) for name in ("category_start", "category_end", "start_time", "end_time",
                                                      "limit", "cursor") if getattr(args, name) is not None}
    page = client.list_tournaments(**filters)
    return _show(args, page, lambda p: (print_tournaments(p["tournaments"]), print_cursor(p["cursor"])))


# ---------------------------------------------------------------------------- parser


def _common() -> argparse.ArgumentParser:
    """The options every command takes, before or after its name (``top x --json``)."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: an option left out after the command does not reset what was given before it
    common.add_argument("--url", default=argparse.SUPPRESS,
                        help=f"a node's client API (default $LEADERBOARD_URL or {DEFAULT_URL})")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON, not a table")
    common.add_argument("--server-key-file", type=Path, default=argparse.SUPPRESS, metavar="FILE",
                        help="file holding the server key (default: $LEADERBOARD_SERVER_KEY)")
    common.add_argument("--client-key-file", type=Path, default=argparse.SUPPRESS, metavar="FILE",
                        help="file holding the client key (default: $LEADERBOARD_CLIENT_KEY)")
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS, metavar="SECONDS",
                        help="seconds to wait for an answer (default 10)")
    return common


def _add_definition_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sort-order", choices=SORT_ORDERS, default="desc",
                        help="desc: higher scores rank first (default); asc: lower ones do")
    parser.add_argument("--operator", choices=OPERATORS, default="best",
                        help="how a write combines with the record: best (default) keeps the better, set replaces, "
                             "incr adds, decr subtracts (floored at 0)")
    parser.add_argument("--reset-schedule", metavar="CRON", help=CRON_HELP + "; default: never reset")
    parser.add_argument("--metadata", metavar="JSON", help="a JSON object stored with the definition")
    parser.add_argument("--authoritative", action="store_true", help="only the server key may write records")
    parser.add_argument("--no-ranks", action="store_true", help="keep no rank cache (records list with rank 0)")


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(prog="leaderboardctl", description=__doc__, parents=[common],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, parents=[common])

    local = command("local", "start a local cluster of node processes, restarting any that exits, until Ctrl-C")
    local.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3)")
    local.add_argument("--base-port", type=int, default=7350,
                       help="client port of the first node; node i listens on BASE+2i (client) and BASE+2i+1 "
                            "(peers) (default 7350)")
    local.add_argument("--sample-data", action="store_true",
                       help="create global, weekly, kills, speedrun and daily_cup and fill them with scores")
    local.add_argument("--players", type=int, default=1000, help="players in the sample data (default 1000)")
    local.add_argument("--persist", action="store_true",
                       help="give each node a data directory, so a restarted node recovers from its disk")
    local.add_argument("--exit-after", type=float, help=argparse.SUPPRESS)

    create = command("create", "create a leaderboard")
    create.add_argument("leaderboard", help="its id: ASCII letters, digits and _ . : @ + -")
    _add_definition_options(create)

    listing = command("list", "list leaderboards (tournaments: tournament list)")
    listing.add_argument("--limit", type=int, help="leaderboards per page (default 100)")
    listing.add_argument("--cursor", help="the cursor a previous page printed")
    command("get", "one leaderboard's definition").add_argument("leaderboard")
    command("delete", "delete a leaderboard with all its records (server key)").add_argument("leaderboard")

    submit = command("submit", "write a score")
    submit.add_argument("leaderboard")
    submit.add_argument("owner")
    submit.add_argument("score", type=int)
    submit.add_argument("--subscore", type=int, default=0, help="breaks ties between equal scores (default 0)")
    submit.add_argument("--operator", choices=OPERATORS, help="this write's operator instead of the leaderboard's")
    submit.add_argument("--username", help="a display name stored with the record")
    submit.add_argument("--metadata", metavar="JSON", help="a JSON object stored with the record")

    batch = command("import", "write many records from a CSV or JSONL file through the bulk import API (owners "
                              "with no record are written at once), with a progress bar")
    batch.add_argument("leaderboard")
    batch.add_argument("file", help="CSV with a header (owner_id, score and optionally subscore, username, "
                                    "metadata, operator) or JSONL (one record object a line); - reads stdin")
    batch.add_argument("--format", choices=["csv", "jsonl"], help="default: from the file name (.csv, .jsonl)")
    batch.add_argument("--chunk-size", type=int, default=IMPORT_CHUNK,
                       help=f"records per import request (default {IMPORT_CHUNK}, and about 3 MiB of them; at most "
                            "the node's limits.max_import_records)")
    batch.add_argument("--progress", action="store_true",
                       help="show the progress bar even when stderr is not a terminal")

    top = command("top", "a page of a leaderboard in rank order, with the cursors of the pages around it")
    top.add_argument("leaderboard")
    top.add_argument("--limit", type=int, default=10, help="records per page (default 10)")
    top.add_argument("--cursor", help="a cursor a previous page printed (next or previous page)")
    top.add_argument("--expiry", type=int, help="read the reset period that ended at this time (Unix seconds)")
    top.add_argument("--rank", type=int, help="start the page at this rank (not with --cursor)")

    at_rank = command("rank", "the record at a rank")
    at_rank.add_argument("leaderboard")
    at_rank.add_argument("rank", type=int, help="1-based")
    at_rank.add_argument("--expiry", type=int, help="read the reset period that ended at this time (Unix seconds)")

    update = command("update", "change live settings of a leaderboard or tournament (its records stay; server key)")
    update.add_argument("leaderboard")
    update.add_argument("--ranks", choices=["on", "off"], help="turn ranks on or off")
    update.add_argument("--event-top", type=int, metavar="N", help="records in each of its events' standings")
    update.add_argument("--default-event-top", action="store_true", help="back to the node's events.top")
    update.add_argument("--webhook-url", metavar="URL", help="also deliver its events there (signed)")
    update.add_argument("--no-webhook-url", action="store_true", help="remove its webhook")

    around = command("around", "records around an owner")
    around.add_argument("leaderboard")
    around.add_argument("owner")
    around.add_argument("--limit", type=int, default=10, help="how many records (default 10)")
    around.add_argument("--expiry", type=int, help="read the reset period that ended at this time (Unix seconds)")

    owners = command("owners", "the records and ranks of some owners, wherever they rank")
    owners.add_argument("leaderboard")
    owners.add_argument("owners", nargs="+", metavar="owner")
    owners.add_argument("--expiry", type=int, help="read the reset period that ended at this time (Unix seconds)")

    record = command("record", "one owner's record and rank")
    record.add_argument("leaderboard")
    record.add_argument("owner")
    record.add_argument("--expiry", type=int, help="read the reset period that ended at this time (Unix seconds)")

    delete_record = command("delete-record", "delete one owner's record (server key)")
    delete_record.add_argument("leaderboard")
    delete_record.add_argument("owner")

    tournament = command("tournament", "create, join and list tournaments")
    actions = tournament.add_subparsers(dest="action", required=True, metavar="ACTION")
    cup = actions.add_parser("create", help="create a tournament", description="create a tournament",
                             parents=[common])
    cup.add_argument("tournament", help="its id: ASCII letters, digits and _ . : @ + -")
    cup.add_argument("--duration", type=int, required=True,
                     help="seconds it accepts scores after each reset (or after start-time without a schedule)")
    cup.add_argument("--title")
    cup.add_argument("--description")
    cup.add_argument("--category", type=int, help="0-127, for filtering lists")
    cup.add_argument("--start-time", type=int, help="Unix seconds when it opens (default now)")
    cup.add_argument("--end-time", type=int, help="Unix seconds when it closes for good (default never)")
    cup.add_argument("--max-size", type=int, help="most owners with a record (default unlimited)")
    cup.add_argument("--max-num-score", type=int, help="most score changes per owner and period (default unlimited)")
    cup.add_argument("--join-required", action="store_true", help="only owners that joined may submit scores")
    _add_definition_options(cup)
    attempts = actions.add_parser("attempts", help="grant an owner score attempts beyond max_num_score (server key)",
                                  description="grant an owner score attempts beyond max_num_score in the current "
                                              "period (server key)", parents=[common])
    attempts.add_argument("tournament")
    attempts.add_argument("owner")
    attempts.add_argument("count", type=int, nargs="?", default=1, help="how many (default 1)")
    join = actions.add_parser("join", help="join a tournament", description="join a tournament", parents=[common])
    join.add_argument("tournament")
    join.add_argument("owner")
    cups = actions.add_parser("list", help="list tournaments", description="list tournaments", parents=[common])
    cups.add_argument("--category-start", type=int, help="lowest category (default 0)")
    cups.add_argument("--category-end", type=int, help="highest category (default 127)")
    cups.add_argument("--start-time", type=int, help="only those starting at or after (Unix seconds)")
    cups.add_argument("--end-time", type=int, help="only those ending at or before (Unix seconds)")
    cups.add_argument("--limit", type=int, help="tournaments per page (default 100)")
    cups.add_argument("--cursor", help="the cursor a previous page printed")

    owner = command("owner", "every record of an owner, or erase them all")
    owner_actions = owner.add_subparsers(dest="action", required=True, metavar="ACTION")
    owned = owner_actions.add_parser("records", help="its records in every leaderboard, tournament and period",
                                     description="its records in every leaderboard, tournament and period kept",
                                     parents=[common])
    owned.add_argument("owner")
    owned.add_argument("--limit", type=int, help="records per page (default 100)")
    owned.add_argument("--cursor", help="the cursor a previous page printed")
    erase = owner_actions.add_parser("erase", help="erase all its records, joins and attempts (server key)",
                                     description="erase every record, join and attempt grant of an owner, "
                                                 "everywhere (account deletion; server key)", parents=[common])
    erase.add_argument("owner")

    events = command("events", "reset and end events with their final standings, oldest first")
    events.add_argument("--after", metavar="CURSOR", help="the cursor a previous answer printed (next: --after ...)")
    events.add_argument("--limit", type=int, help="events per answer (default 100)")
    events.add_argument("--leaderboard", metavar="ID", help="only this leaderboard's or tournament's")
    events.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                        help="wait this long for an event when there is none yet (with --follow: default 30)")
    events.add_argument("--follow", action="store_true", help="keep printing events as they come, until Ctrl-C")

    command("cluster", "this node, its members, their state (unreachable since when) and replication lag")
    digests = command("digests", "a leaderboard's digest on every member, side by side; exit 3 unless all equal")
    digests.add_argument("leaderboard")
    digests.add_argument("--expiry", type=int, help="compare the reset period that ended at this time")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    for name, default in (("url", os.environ.get("LEADERBOARD_URL") or DEFAULT_URL), ("json", False),
                          ("server_key_file", None), ("client_key_file", None), ("timeout", 10.0)):
        if not hasattr(args, name):
            setattr(args, name, default)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        code = run(args)
        flush()
    except ReaderGone:
        code = EXIT_READER_GONE
    except UsageError as exc:
        print(f"leaderboardctl: {exc}", file=sys.stderr)
        code = EXIT_USAGE
    except ApiError as exc:
        print(f"leaderboardctl: {exc}", file=sys.stderr)
        code = EXIT_FAILED
    except OSError as exc:
        print(f"leaderboardctl: cannot reach {args.url}: {exc}", file=sys.stderr)
        code = EXIT_FAILED
    if code == EXIT_READER_GONE:
        # Nothing more reaches the reader: point stdout at /dev/null so that the interpreter's
        # own flush at exit does not report the broken pipe either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    raise SystemExit(code)


if __name__ == "__main__":
    main()
