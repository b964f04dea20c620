"""``leaderboardctl`` commands run as a user runs them (subprocesses) against real nodes: every
API operation, tables and --json, API keys, batch imports, help, versions, pipes."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from ..harness import NodeProcess, fill_board

SERVER_KEY = "ctl-server-key-0123456789abcdef"
CLIENT_KEY = "ctl-client-key-0123456789abcdef"


def ctl(*args: str, env: dict[str, str] | None = None, stdin: str | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LEADERBOARD_")}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "leaderboard_client.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=environ, input=stdin)


def ok(*args: str, **kwargs) -> str:
    result = ctl(*args, **kwargs)
    assert result.returncode == 0, f"leaderboardctl {' '.join(args)}: {result.returncode}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    process = NodeProcess("ctl-node", tmp_path_factory.mktemp("ctl-node")).start()
    yield process
    process.terminate()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    process = NodeProcess("ctl-keyed", tmp_path_factory.mktemp("ctl-keyed"),
                          env={"LEADERBOARD_AUTH__SERVER_KEY": SERVER_KEY, "LEADERBOARD_AUTH__CLIENT_KEY": CLIENT_KEY})
    process.start()
    yield process
    process.terminate()


# ----------------------------------------------------------------------- API keys


def test_without_a_key_a_keyed_node_refuses_and_says_why(keyed):
    result = ctl("--url", keyed.url, "create", "keyed-board")
    assert result.returncode == 1 and "api_key_missing" in result.stderr


def test_the_server_key_from_the_environment_creates_and_deletes(keyed):
    env = {"LEADERBOARD_URL": keyed.url, "LEADERBOARD_SERVER_KEY": SERVER_KEY}
    assert "keyed-env" in ok("create", "keyed-env", env=env)
    assert "deleted keyed-env" in ok("delete", "keyed-env", env=env)


def test_the_client_key_from_a_file_writes_but_may_not_create(keyed, tmp_path):
    (tmp_path / "client.key").write_text(CLIENT_KEY + "\n")
    ok("--url", keyed.url, "create", "keyed-file", env={"LEADERBOARD_SERVER_KEY": SERVER_KEY})
    args = ("--url", keyed.url, "--client-key-file", str(tmp_path / "client.key"))
    assert "p1" in ok(*args, "submit", "keyed-file", "p1", "5")
    refused = ctl(*args, "create", "keyed-other")
    assert refused.returncode == 1 and "server_key_required" in refused.stderr


def test_the_server_key_wins_when_both_are_given(keyed, tmp_path):
    (tmp_path / "server.key").write_text(SERVER_KEY)
    out = ok("--url", keyed.url, "--server-key-file", str(tmp_path / "server.key"), "create", "keyed-both",
             env={"LEADERBOARD_CLIENT_KEY": CLIENT_KEY})
    assert "keyed-both" in out


def test_a_missing_key_file_is_a_usage_error(keyed, tmp_path):
    result = ctl("--url", keyed.url, "--server-key-file", str(tmp_path / "nope"), "list")
    assert result.returncode == 2 and "cannot read the key file" in result.stderr


def test_help_documents_the_keys_and_their_variables():
    text = ok("--help")
    for needle in ("LEADERBOARD_SERVER_KEY", "LEADERBOARD_CLIENT_KEY", "--server-key-file", "--client-key-file"):
        assert needle in text


# ------------------------------------------------------------------ leaderboards


def test_create_list_get_and_delete_a_leaderboard(node):
    url = ("--url", node.url)
    created = ok(*url, "create", "ctl-weekly", "--reset-schedule", "0 0 * * 1", "--operator", "incr",
                 "--metadata", '{"season": 3}')
    assert created.splitlines()[0].split()[:4] == ["id", "sort", "operator", "reset"]
    assert "ctl-weekly  desc  incr" in created
    assert "ctl-weekly" in ok(*url, "list")
    got = json.loads(ok(*url, "get", "ctl-weekly", "--json"))
    assert got["reset_schedule"] == "0 0 * * 1" and got["metadata"] == {"season": 3}
    assert "deleted ctl-weekly" in ok(*url, "delete", "ctl-weekly")
    assert ctl(*url, "get", "ctl-weekly").returncode == 1


def test_listing_leaderboards_pages_with_cursors(node):
    for i in range(3):
        ok("--url", node.url, "create", f"ctl-page-{i}")
    first = ok("--url", node.url, "list", "--limit", "1")
    cursor = first.splitlines()[-1].split("--cursor ")[1]
    second = json.loads(ok("--url", node.url, "list", "--limit", "1", "--cursor", cursor, "--json"))
    assert second["leaderboards"][0]["id"] > cursor


def test_create_help_says_the_schedule_is_a_five_field_utc_cron():
    text = ok("create", "--help")
    assert "5-field cron expression in UTC" in text


# ------------------------------------------------------------------------ records


def test_top_prints_the_cursors_and_follows_them_both_ways(node):
    with node.client() as client:
        fill_board(client, "ctl-pages", 25)
    first = ok("--url", node.url, "top", "ctl-pages", "--limit", "10")
    assert "(25 records)" in first and "previous page" not in first
    cursor = next(line for line in first.splitlines() if line.startswith("next page:")).split("--cursor ")[1]
    second = ok("--url", node.url, "top", "ctl-pages", "--limit", "10", "--cursor", cursor)
    ranks = [int(line.split()[0]) for line in second.splitlines()[1:11]]
    assert ranks == list(range(11, 21))
    back = next(line for line in second.splitlines() if line.startswith("previous page:")).split("--cursor ")[1]
    again = json.loads(ok("--url", node.url, "top", "ctl-pages", "--limit", "10", "--cursor", back, "--json"))
    assert [r["rank"] for r in again["records"]] == list(range(1, 11))


def test_one_record_an_owner_lookup_around_and_delete(node):
    url = ("--url", node.url)
    with node.client() as client:
        fill_board(client, "ctl-records", 20)
    record = json.loads(ok(*url, "record", "ctl-records", "p7", "--json"))
    assert record["rank"] == 13 and record["score"] == 7
    owners = ok(*url, "owners", "ctl-records", "p19", "p0", "nobody")
    lines = owners.splitlines()
    assert lines[0].split()[:2] == ["rank", "score"] and len(lines) == 3
    assert " p19" in lines[1] and " p0" in lines[2]
    around = json.loads(ok(*url, "around", "ctl-records", "p10", "--limit", "3", "--json"))
    assert [r["owner_id"] for r in around["records"]] == ["p11", "p10", "p9"]
    assert "deleted the record of p7" in ok(*url, "delete-record", "ctl-records", "p7")
    missing = ctl(*url, "record", "ctl-records", "p7")
    assert missing.returncode == 1 and "record_not_found" in missing.stderr


def test_submit_prints_the_record_with_its_rank(node):
    ok("--url", node.url, "create", "ctl-submit")
    out = ok("--url", node.url, "submit", "ctl-submit", "ann", "50", "--username", "Ann", "--metadata", '{"lvl": 2}')
    assert out.splitlines()[1].split() == ["1", "50", "0", "1", "ann", "Ann"]


def test_bad_metadata_is_a_usage_error_before_anything_is_sent(node):
    result = ctl("--url", node.url, "submit", "ctl-submit", "bob", "5", "--metadata", "[1]")
    assert result.returncode == 2 and "--metadata must be a JSON object" in result.stderr


# --------------------------------------------------------------------- tournaments


def test_tournaments_are_created_joined_and_listed(node):
    url = ("--url", node.url)
    created = json.loads(ok(*url, "tournament", "create", "ctl-cup", "--duration", "3600", "--title", "Cup",
                            "--category", "7", "--max-size", "10", "--join-required", "--json"))
    assert created["duration"] == 3600 and created["join_required"] is True and created["category"] == 7
    assert "ann joined ctl-cup" in ok(*url, "tournament", "join", "ctl-cup", "ann")
    assert "ann had joined ctl-cup" in ok(*url, "tournament", "join", "ctl-cup", "ann")
    listed = ok(*url, "tournament", "list", "--category-start", "7", "--category-end", "7")
    assert "ctl-cup" in listed and "Cup" in listed
    assert "ctl-cup" not in ok(*url, "tournament", "list", "--category-start", "8")
    assert "1" in ok(*url, "submit", "ctl-cup", "ann", "3")


def test_a_tournament_without_duration_is_refused_by_argparse():
    result = ctl("tournament", "create", "cup")
    assert result.returncode == 2 and "--duration" in result.stderr


# --------------------------------------------------------------------------- import


def test_a_csv_file_is_imported_in_batches(node, tmp_path):
    ok("--url", node.url, "create", "ctl-csv")
    rows = ["owner_id,score,subscore,username,metadata"] + [
        f"o{i},{i * 10},{i % 3},user{i},\"{{\"\"i\"\": {i}}}\"" for i in range(2500)]
    path = tmp_path / "scores.csv"
    path.write_text("\n".join(rows) + "\n")
    summary = json.loads(ok("--url", node.url, "import", "ctl-csv", str(path), "--chunk-size", "1000", "--json"))
    assert summary["records"] == 2500 and summary["batches"] == 3
    with node.client() as client:
        record = client.record("ctl-csv", "o42")
        assert (record["score"], record["subscore"], record["username"], record["metadata"]) == (420, 0, "user42",
                                                                                                  {"i": 42})
        assert client.records("ctl-csv", limit=1)["rank_count"] == 2500


def test_jsonl_from_stdin_is_imported_and_the_table_summarises_it(node):
    ok("--url", node.url, "create", "ctl-jsonl")
    lines = "\n".join(json.dumps({"owner_id": f"j{i}", "score": i}) for i in range(30))
    out = ok("--url", node.url, "import", "ctl-jsonl", "-", "--format", "jsonl", "--chunk-size", "7", stdin=lines)
    header, row = out.splitlines()
    assert header.split() == ["leaderboard", "records", "batches", "seconds"]
    assert row.split()[:3] == ["ctl-jsonl", "30", "5"]


def test_a_refused_record_names_its_line_and_what_was_written_before(node, tmp_path):
    ok("--url", node.url, "create", "ctl-bad-line")
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([json.dumps({"owner_id": f"b{i}", "score": i}) for i in range(5)]
                              + [json.dumps({"owner_id": "b5", "score": 1.5})]) + "\n")
    result = ctl("--url", node.url, "import", "ctl-bad-line", str(path), "--chunk-size", "3")
    assert result.returncode == 1
    assert f"{path}:6: score:" in result.stderr and "the 3 records before line 4 were written" in result.stderr


def test_a_malformed_file_is_refused_before_anything_is_written(node, tmp_path):
    ok("--url", node.url, "create", "ctl-malformed")
    path = tmp_path / "bad.csv"
    path.write_text("owner_id,score\na,1\nb,lots\n")
    result = ctl("--url", node.url, "import", "ctl-malformed", str(path))
    assert result.returncode == 2 and f"{path}:3: score must be an integer" in result.stderr
    with node.client() as client:
        assert client.records("ctl-malformed")["rank_count"] == 0


def test_the_progress_bar_shows_on_a_terminal(node, tmp_path):
    import fcntl
    import pty
    import struct
    import termios

    ok("--url", node.url, "create", "ctl-progress")
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join(json.dumps({"owner_id": f"q{i}", "score": i}) for i in range(3000)) + "\n")
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal's size
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADERBOARD_")}
    process = subprocess.Popen([sys.executable, "-m", "leaderboard_client.cli", "--url", node.url, "import",
                                "ctl-progress", str(path), "--chunk-size", "500"],
                               stdout=subprocess.PIPE, stderr=secondary, env=env)
    os.close(secondary)
    seen = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    process.wait(timeout=30)
    os.close(primary)
    assert process.returncode == 0
    text = seen.decode(errors="replace")
    assert "importing into ctl-progress" in text and "3000/3000" in text and "100%" in text


# --------------------------------------------------------------- output, versions, pipes


@pytest.fixture(scope="module")
def json_board(node):
    with node.client() as client:
        fill_board(client, "ctl-json", 5)
    return "ctl-json"


@pytest.mark.parametrize("command", [
    ("list",), ("get", "ctl-json"), ("top", "ctl-json"), ("around", "ctl-json", "p1"), ("owners", "ctl-json", "p1"),
    ("record", "ctl-json", "p1"), ("cluster",), ("digests", "ctl-json"), ("tournament", "list"),
    ("submit", "ctl-json", "p2", "4"),
])
def test_every_command_prints_json_with_json_before_or_after_its_name(node, json_board, command):
    before = json.loads(ok("--url", node.url, "--json", *command))
    after = json.loads(ok("--url", node.url, *command, "--json"))
    assert type(before) is type(after) and before


def test_version_is_the_package_version():
    assert ok("--version").split() == ["leaderboardctl", version("leaderboard-cluster")]


def test_every_local_option_has_a_description():
    text = ok("local", "--help")
    for option, words in (("--nodes", "how many nodes"), ("--base-port", "client port of the first node"),
                          ("--sample-data", "create global"), ("--players", "players in the sample data")):
        assert option in text and words in text, option


def test_a_reader_that_goes_away_ends_the_command_quietly(node):
    with node.client() as client:
        fill_board(client, "ctl-pipe", 1000)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADERBOARD_")}
    for output in ("--json", None):
        args = [sys.executable, "-m", "leaderboard_client.cli", "--url", node.url, "top", "ctl-pipe", "--limit", "1000"]
        process = subprocess.Popen(args + ([output] if output else []), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=env, bufsize=0)
        fcntl.fcntl(process.stdout.fileno(), 1031, 4096)  # F_SETPIPE_SZ: the output is far more than the pipe holds
        # the first bytes, then the reader goes, as `| head -1` does; the rest (75 KB as a table,
        # 300 KB as JSON) is more than the pipe holds, so the command is still writing
        assert os.read(process.stdout.fileno(), 100)
        process.stdout.close()
        code = process.wait(timeout=30)
        stderr = process.stderr.read().decode()
        process.stderr.close()
        assert stderr == "" and code == 141, (output, code, stderr)


def test_a_node_that_cannot_be_reached_says_so(tmp_path):
    from ..harness import free_port

    result = ctl("--url", f"http://127.0.0.1:{free_port('127.0.0.1')}", "list")
    assert result.returncode == 1 and "cannot reach" in result.stderr


# ------------------------------------------------------------------- what games rely on


def test_ranks_records_by_rank_live_settings_attempts_owners_and_events(node):
    url = ("--url", node.url)
    with node.client() as client:
        fill_board(client, "ctl-games", 5)
    assert "p3" in ok(*url, "rank", "ctl-games", "2")
    top = ok(*url, "top", "ctl-games", "--rank", "4", "--limit", "1")
    assert " p1" in top and "next page:" in top and "previous page:" in top
    assert json.loads(ok(*url, "update", "ctl-games", "--ranks", "off", "--event-top", "3", "--json"))[
        "event_top"] == 3
    assert "ranks_disabled" in ctl(*url, "rank", "ctl-games", "1").stderr
    assert "  on  " in ok(*url, "update", "ctl-games", "--ranks", "on")
    assert ctl(*url, "update", "ctl-games").returncode == 2  # nothing to change: a usage error
    ok(*url, "tournament", "create", "ctl-attempts", "--duration", "600", "--max-num-score", "1")
    assert "may now change its score 3 times" in ok(*url, "tournament", "attempts", "ctl-attempts", "gamer", "2")
    ok(*url, "submit", "ctl-attempts", "gamer", "9")
    ok(*url, "submit", "ctl-games", "gamer", "100")
    owned = ok(*url, "owner", "records", "gamer")
    assert "ctl-games" in owned and "ctl-attempts" in owned
    assert "erased 2 records of gamer" in ok(*url, "owner", "erase", "gamer")
    assert json.loads(ok(*url, "owner", "records", "gamer", "--json"))["records"] == []
    end = int(time.time()) + 2
    ok(*url, "tournament", "create", "ctl-ends", "--duration", "600", "--end-time", str(end))
    ok(*url, "submit", "ctl-ends", "alice", "7")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LEADERBOARD_")}
    # Ctrl-C as a terminal sends it, whatever the tests run under (a script's background job
    # inherits SIGINT ignored, and so would the command)
    follow = subprocess.Popen([sys.executable, "-m", "leaderboard_client.cli", *url, "events", "--leaderboard",
                               "ctl-ends", "--follow", "--json"], stdout=subprocess.PIPE, text=True, env=environ,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert follow.stdout is not None
        event = json.loads(follow.stdout.readline())  # a JSON line as soon as the event is produced
    finally:
        follow.send_signal(signal.SIGINT)  # --follow goes on until Ctrl-C, and stops quietly
        follow.wait(timeout=10)
        follow.stdout.close()
    assert (event["kind"], event["leaderboard_id"], event["records"][0]["owner_id"]) == (
        "tournament_end", "ctl-ends", "alice")
    assert follow.returncode == 0
    listed = ok(*url, "events", "--leaderboard", "ctl-ends")
    assert "tournament_end" in listed and "first alice (7)" in listed and "next: --after " in listed
