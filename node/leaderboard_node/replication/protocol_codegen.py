"""Generates the BinaryLog Python code from proto/ (``./run proto``).

The generated module is committed; ``generate()`` is also what the drift test compares with.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROTO_ROOT = ROOT / "proto"
PROTO_FILE = "leaderboard/v1/binarylog.proto"
TARGET = Path(__file__).resolve().parent / "binarylog_pb2.py"
HEADER = "# Generated from proto/leaderboard/v1/binarylog.proto by `./run proto`. Do not edit.\n"


def generate() -> str:
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as out:
        code = protoc.main(["protoc", f"-I{PROTO_ROOT}", f"--python_out={out}", str(PROTO_ROOT / PROTO_FILE)])
        if code != 0:
            raise SystemExit(f"protoc failed with exit code {code}")
        generated = (Path(out) / "leaderboard" / "v1" / "binarylog_pb2.py").read_text()
    return HEADER + generated


def main() -> None:
    TARGET.write_text(generate())
    print(f"wrote {TARGET.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
