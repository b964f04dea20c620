"""The repository itself: what every tracked file must be."""

from __future__ import annotations


def test_no_tracked_file_holds_a_merge_conflict_marker():
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    tracked = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout.split()
    markers = ("<<<<<<< ", ">>>>>>> ")
    found = []
    for name in tracked:
        path = root / name
        if path.suffix not in (".py", ".md", ".yaml", ".yml", ".toml", ".json", ".proto", ".tpl", ".txt") or not path.is_file():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if line.startswith(markers):
                found.append(f"{name}:{number}")
    assert not found, found
