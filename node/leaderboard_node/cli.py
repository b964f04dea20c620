"""``leaderboard-node``: serve one node.

Settings come from (weakest first) defaults, ``--config FILE`` (YAML), ``LEADERBOARD_*``
environment variables, and the flags below. ``--help`` lists every setting.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .config import ENV_PREFIX, Settings, load_settings
from .logs import configure_logging


def _describe(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[str]:
    lines: list[str] = []
    for name, field in model.model_fields.items():
        path = prefix + (name,)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines.extend(_describe(annotation, path))
            continue
        default = field.get_default(call_default_factory=True) if name != "name" or prefix != ("node",) else "hostname"
        env = ENV_PREFIX + "__".join(p.upper() for p in path)
        lines.append(f"  {'.'.join(path)} (env {env}, default {default!r})")
        if field.description:
            lines.append(f"      {field.description}")
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leaderboard-node",
        description="Serve one node of a replicated, in-memory leaderboard cluster.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="settings (YAML paths in --config FILE; environment variables override the file):\n"
        + "\n".join(_describe(Settings)),
    )
    parser.add_argument("--name", help="unique node name (node.name)")
    parser.add_argument("--listen", metavar="HOST:PORT", help="client API address (node.listen)")
    parser.add_argument("--peer-listen", metavar="HOST:PORT", help="peer endpoint address (node.peer_listen)")
    parser.add_argument("--peers", metavar="NAME=HOST:PORT,...",
                        help="static peers (cluster.discovery.static.peers; sets discovery mode static)")
    parser.add_argument("--data-dir", type=Path, help="directory for the node's log and snapshots (node.data_dir)")
    parser.add_argument("--config", type=Path, help="YAML file of settings")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="log.level")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    node: dict[str, Any] = {}
    for flag, key in (("name", "name"), ("listen", "listen"), ("peer_listen", "peer_listen"), ("data_dir", "data_dir")):
        if getattr(args, flag) is not None:
            node[key] = getattr(args, flag)
    if node:
        overrides["node"] = node
    if args.peers is not None:
        peers = [p for p in args.peers.split(",") if p]
        overrides["cluster"] = {"discovery": {"mode": "static", "static": {"peers": peers}}}
    if args.log_level:
        overrides["log"] = {"level": args.log_level}
    return load_settings(config_file=args.config, overrides=overrides)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
    except (ValidationError, ValueError, OSError) as exc:
        print(f"leaderboard-node: invalid settings: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(level=settings.log.level, fmt=settings.log.format)
    from .durability.journal import RecoveryRefused
    from .server import serve_forever

    try:
        if importlib.util.find_spec("uvloop") is not None:
            import uvloop

            uvloop.run(serve_forever(settings))
        else:  # pragma: no cover - uvloop is a dependency; this keeps odd platforms working
            asyncio.run(serve_forever(settings))
    except RecoveryRefused as exc:
        logging.getLogger("leaderboard_node").error("recovery_refused", extra={"problem": str(exc)})
        print(f"leaderboard-node: {exc}", file=sys.stderr)
        raise SystemExit(3) from None


if __name__ == "__main__":
    main()
