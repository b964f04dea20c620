"""``./run``: its help and the timing of its set-up steps, run as a user runs them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _bash(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=30)


def test_help_prints_the_whole_header_and_ends_on_a_full_sentence():
    result = subprocess.run([str(REPO / "run"), "help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    text = result.stdout.strip()
    assert "./run demo" in text and "./run shell" in text
    assert text.endswith("the time the step took."), text[-200:]
    assert "set -euo" not in text  # stops at the end of the comment block


def test_an_unknown_command_prints_the_help_and_fails():
    result = subprocess.run([str(REPO / "run"), "no-such-command"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "./run demo" in result.stdout


def test_each_set_up_step_prints_one_line_with_its_time():
    result = _bash('source ./run && step "sleeping a little" sleep 0.3 && step "another step" true')
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2, lines
    seconds = float(re.fullmatch(r"\[run\] sleeping a little \.\.\. (\d+\.\d) s", lines[0]).group(1))
    assert 0.3 <= seconds < 5
    assert re.fullmatch(r"\[run\] another step \.\.\. \d+\.\d s", lines[1])


def test_what_a_step_prints_stays_out_of_its_line():
    result = _bash('source ./run && step "a noisy step" sh -c "echo WARNING: noise >&2; echo chatter"')
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"\[run\] a noisy step \.\.\. \d+\.\d s\n", result.stderr), result.stderr
    assert "chatter" not in result.stdout


def test_a_failing_step_says_so_shows_what_it_printed_and_fails_the_set_up():
    result = _bash('source ./run; set +e; step "breaking" sh -c "echo the reason >&2; exit 3"; echo "rc=$?"')
    assert re.search(r"\[run\] breaking \.\.\. failed after \d+\.\d s:\nthe reason", result.stderr), result.stderr
    assert "rc=3" in result.stdout


def test_every_set_up_command_of_the_script_runs_as_a_timed_step():
    # pip, venv, apt-get and the wheel download are the slow parts of a first set-up
    for line in (REPO / "run").read_text().replace("\\\n", " ").splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or "step " in stripped:
            continue
        assert not re.search(r"-m (pip|venv)\b|apt-get (install|update)", stripped), \
            f"a set-up command outside step(): {stripped}"
