"""``leaderboard-node``: serve one node.

Settings come from (weakest first) defaults, ``--config FILE`` (YAML), ``LEADERBOARD_*``
environment variables, and the flags below. ``--help`` lists every setting.

A node that cannot start with its settings (an invalid value, an unreadable key file, an
address another process holds) says so on one line that names the setting and the fix,
and exits with ``EXIT_BAD_CONFIG`` (78, ``EX_CONFIG`` of sysexits.h), so that a supervisor
can tell a configuration to fix from a crash to restart.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import sys
import types
import typing
import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from .config import ENV_PREFIX, ConfigError, DeprecatedSetting, Settings, load_settings
from .logs import configure_logging
from .version import VERSION

EXIT_FAILURE = 1  # an unexpected error (with its traceback)
EXIT_USAGE = 2  # argparse: a flag it does not know or cannot parse
EXIT_RECOVERY_REFUSED = 3  # the data directory holds a snapshot of a newer format
EXIT_BAD_CONFIG = 78  # sysexits.h EX_CONFIG
EXIT_CODES = f"""\
exit status:
  0   stopped by SIGTERM or SIGINT (after flushing to peers)
  {EXIT_FAILURE}   an unexpected error (its traceback is in the log)
  {EXIT_USAGE}   a flag it does not know or cannot parse
  {EXIT_RECOVERY_REFUSED}   recovery refused: node.data_dir holds a snapshot of a newer format (recovery_refused in the log)
  {EXIT_BAD_CONFIG}  bad configuration: an invalid setting, an unreadable key, token or certificate file, an API
      key shorter than 16 characters, an address that is taken (one line on stderr names the setting and the fix)
"""


def _choices(annotation: Any) -> list[Any] | None:
    """The allowed values of a ``Literal[...]`` setting (or of ``Literal[...] | None``)."""
    if typing.get_origin(annotation) is Literal:
        return list(typing.get_args(annotation))
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if typing.get_origin(arg) is Literal:
                return list(typing.get_args(arg))
    return None


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
        choices = _choices(annotation)
        allowed = f", one of {', '.join(str(c) for c in choices)}" if choices else ""
        lines.append(f"  {'.'.join(path)} (env {env}, default {default!r}{allowed})")
        if field.description:
            lines.append(f"      {field.description}")
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leaderboard-node",
        description="Serve one node of a replicated, in-memory leaderboard cluster.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="settings (YAML paths in --config FILE; environment variables override the file):\n"
        + "\n".join(_describe(Settings)) + "\n\n" + EXIT_CODES,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
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


def describe_invalid(exc: ValidationError) -> str:
    """Every problem of a settings validation, on one line: ``setting: problem`` joined by ``;``."""
    problems = []
    for error in exc.errors():
        setting = ".".join(str(part) for part in error["loc"]) or "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "no such setting (leaderboard-node --help lists them)"
        problems.append(f"{setting}: {message}")
    return "; ".join(problems) + "; fix the value (leaderboard-node --help lists every setting and its values)"


def _bad_config(message: str) -> SystemExit:
    print(f"leaderboard-node: bad configuration: {message}", file=sys.stderr)
    return SystemExit(EXIT_BAD_CONFIG)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings(record=True) as deprecations:
        warnings.simplefilter("always", DeprecatedSetting)
        try:
            settings = settings_from_args(args)
        except ValidationError as exc:
            raise _bad_config(describe_invalid(exc)) from None
        except ConfigError as exc:
            raise _bad_config(str(exc)) from None
    configure_logging(level=settings.log.level, fmt=settings.log.format)
    log = logging.getLogger("leaderboard_node")
    for warning in deprecations:
        if issubclass(warning.category, DeprecatedSetting):
            log.warning("setting_deprecated", extra={"problem": str(warning.message)})
    from .durability.journal import RecoveryRefused
    from .server import serve_forever

    try:
        if importlib.util.find_spec("uvloop") is not None:
            import uvloop

            uvloop.run(serve_forever(settings))
        else:  # pragma: no cover - uvloop is a dependency; this keeps odd platforms working
            asyncio.run(serve_forever(settings))
    except ConfigError as exc:
        raise _bad_config(str(exc)) from None
    except RecoveryRefused as exc:
        log.error("recovery_refused", extra={"problem": str(exc)})
        print(f"leaderboard-node: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_RECOVERY_REFUSED) from None


if __name__ == "__main__":
    main()
