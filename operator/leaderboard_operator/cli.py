"""
The ``leaderboard-operator`` command: kopf, embedded, plus a metrics endpoint.

Kopf normally runs as ``kopf run module.py``; here it is embedded with :func:`kopf.operator`
instead, with its own registry (:func:`.handlers.register`), so that the command is an ordinary
console script with its own flags and nothing is imported by file path.

Endpoints:

* ``http://0.0.0.0:<liveness-port>/healthz`` -- kopf's liveness probe (``--liveness-port``);
* ``http://0.0.0.0:<metrics-port>/metrics`` -- Prometheus metrics of the operator (0 disables).

The operator runs standalone (no kopf peering): deploy one replica with the ``Recreate``
strategy, as the Helm chart does, so that two operators never handle the same cluster.

Its identity (in kopf's peering and logs) is the pod's name (``POD_NAME``, from the downward
API), else the host name: never the user name, which kopf would take from the passwd entry of
the process's UID -- and runtimes such as OpenShift's run containers under arbitrary UIDs that
have none.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version

import kopf
from aiohttp import web

from leaderboard_operator import metrics as metrics_mod
from leaderboard_operator.handlers import register
from leaderboard_operator.settings import OperatorConfig


def package_version() -> str:
    """The installed version of leaderboard-cluster, from its package metadata."""
    try:
        return version("leaderboard-cluster")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leaderboard-operator",
        description="Run the LeaderboardCluster operator (settings also from LEADERBOARD_OPERATOR_* env vars).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], dest="namespaces", metavar="NS",
                       help="watch this namespace (repeatable; globs allowed); default: all namespaces")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch all namespaces (the default)")
    parser.add_argument("--liveness-port", type=int, default=8080, help="port of /healthz (0 disables)")
    parser.add_argument("--metrics-port", type=int, default=9090, help="port of /metrics (0 disables)")
    parser.add_argument("--server", default=None, help="API server URL, e.g. http://127.0.0.1:8001 (kubectl proxy)")
    parser.add_argument("--default-image", default=None, help="node image for clusters without spec.image")
    parser.add_argument("--reconcile-interval", type=float, default=None, help="seconds between drift checks")
    parser.add_argument("--poll-interval", type=float, default=None, help="seconds between member polls")
    parser.add_argument("--member-scheme", choices=("http", "https"), default=None)
    parser.add_argument("--member-port", type=int, default=None, help="port of the members' /v1/cluster")
    parser.add_argument("--identity", default=None,
                        help="the operator's identity; default: $POD_NAME, else the host name")
    parser.add_argument("--log-format", choices=("plain", "full", "json"), default="full")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    parser.add_argument("--debug", action="store_true", help="log everything, kopf's internals too")
    return parser


def config_from_args(args: argparse.Namespace) -> OperatorConfig:
    return OperatorConfig.from_env(
        server=args.server,
        default_image=args.default_image,
        reconcile_interval=args.reconcile_interval,
        poll_interval=args.poll_interval,
        member_scheme=args.member_scheme,
        member_port=args.member_port,
    )


async def serve_metrics(metrics: metrics_mod.OperatorMetrics, *, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    async def handle(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": metrics_mod.CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def identity(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> str:
    """The operator's identity (see the module docstring)."""
    env = os.environ if environ is None else environ
    return args.identity or env.get("POD_NAME") or socket.gethostname()


async def run(args: argparse.Namespace) -> None:
    config = config_from_args(args)
    registry = kopf.OperatorRegistry()
    context = register(registry, config=config)
    runner = await serve_metrics(context.metrics, port=args.metrics_port) if args.metrics_port else None
    try:
        await kopf.operator(
            registry=registry,
            standalone=True,
            identity=identity(args),  # type: ignore[arg-type]  # kopf's Identity is a NewType of str
            clusterwide=not args.namespaces,
            namespaces=args.namespaces,
            liveness_endpoint=f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port else None,
        )
    finally:
        if runner is not None:
            await runner.cleanup()
        await context.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config_from_args(args)
    except ValueError as exc:
        print(f"leaderboard-operator: {exc}", file=sys.stderr)
        return 2
    log_format = {"plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL, "json": kopf.LogFormat.JSON}
    kopf.configure(debug=args.debug, verbose=args.verbose, log_format=log_format[args.log_format])
    if not (args.debug or args.verbose):
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
