"""``channelapp-operator``: run the ChannelApp operator.

Scope is one or more namespaces (``--namespace``, repeatable) or the whole
cluster (``--all-namespaces``). Replicas never both act: kopf peering makes the
one with the highest priority the only active one. Each replica draws a random
priority unless ``--priority`` is given (equal priorities would pause them all),
and keeps its peering record alive for ``--peering-lifetime`` seconds, so a
standby takes over within that time when the active replica dies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
import sys

import kopf
from channelapp.health import serve_metrics

from channelapp_operator.config import OperatorConfig


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="channelapp-operator", description=__doc__.splitlines()[0])
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", "-n", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument(
        "--all-namespaces",
        "-A",
        action="store_true",
        help="watch every namespace (the default when no --namespace is given)",
    )
    p.add_argument(
        "--peering",
        default="channelapp-operator",
        help="kopf peering name shared by operator replicas",
    )
    p.add_argument(
        "--standalone",
        action="store_true",
        help="no peering (a single operator; development and tests)",
    )
    p.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority of this replica (default: random, so replicas differ)",
    )
    p.add_argument(
        "--peering-lifetime",
        type=int,
        default=10,
        help="seconds a replica's peering record lives without keep-alive (takeover time)",
    )
    p.add_argument("--metrics-host", default="0.0.0.0")
    p.add_argument(
        "--metrics-port", type=int, default=8080, help="/metrics, /healthz and /readyz (0: off)"
    )
    p.add_argument(
        "--liveness-timeout",
        type=float,
        default=60.0,
        help="/healthz fails when an app's loop has not beaten for this many seconds",
    )
    p.add_argument(
        "--permission-check-interval",
        type=float,
        default=60.0,
        help="seconds between checks that the operator still holds its permissions "
        "(/readyz fails while one is missing; a refused call checks again at once)",
    )
    p.add_argument(
        "--dials-per-second",
        type=float,
        default=50.0,
        help="connection attempts to the apps' Redis shards per second, all apps together",
    )
    p.add_argument(
        "--dials-per-destination-per-second",
        type=float,
        default=2.0,
        help="connection attempts per second to any one host:port, all apps together",
    )
    p.add_argument(
        "--api-threads",
        type=int,
        default=16,
        help="threads the apps' status patches run on, all apps together",
    )
    p.add_argument(
        "--status-interval",
        type=float,
        default=10.0,
        help="seconds between status writes of an app whose queue depth, age or load "
        "figures alone changed (condition changes and scaling are written at once)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def config_from_args(args: argparse.Namespace) -> OperatorConfig:
    return OperatorConfig(
        liveness_timeout=args.liveness_timeout,
        peering_lifetime=max(2, args.peering_lifetime),
        dials_per_second=max(0.1, args.dials_per_second),
        dials_per_destination_per_second=max(0.1, args.dials_per_destination_per_second),
        permission_check_interval=max(1.0, args.permission_check_interval),
        # Cluster-wide, leave namespaces with their own namespace-scoped release alone.
        clusterwide=not args.namespace,
        api_threads=max(1, args.api_threads),
        status_interval=max(0.0, args.status_interval),
    )


async def run(args: argparse.Namespace) -> None:
    # Importing the handlers registers them with kopf.
    from channelapp_operator import handlers  # noqa: F401
    from channelapp_operator import permissions as perms
    from channelapp_operator.api_threads import size_connection_pool
    from channelapp_operator.kube import Kube, load_config
    from channelapp_operator.peering import PeeringCheck
    from channelapp_operator.runtime import OperatorRuntime

    load_config()
    config = config_from_args(args)
    # Before the client is made: it takes its connection pool's size from the configuration.
    size_connection_pool(config.api_threads)
    runtime = OperatorRuntime(config, kube=Kube())
    priority = args.priority
    if priority is None:
        priority = 0 if args.standalone else random.SystemRandom().randint(1, 2**31 - 1)
    if not args.standalone:
        logging.getLogger("channelapp.operator").info(
            "peering %r, priority %d, lifetime %d s",
            args.peering,
            priority,
            config.peering_lifetime,
        )
    ready = asyncio.Event()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    peering = None if args.standalone else PeeringCheck(Kube(), args.peering, args.namespace)
    checker = None if peering is None else asyncio.create_task(peering.run())
    permissions = perms.PermissionCheck(
        Kube().access_review,
        perms.needs_for(args.namespace, None if args.standalone else args.peering),
        lambda: Kube.forbidden,
        recheck=config.permission_check_interval,
    )
    permission_checker = asyncio.create_task(permissions.run())

    def is_ready() -> bool:
        return ready.is_set() and (peering is None or peering.ok()) and permissions.ok()

    side = None
    if args.metrics_port:
        side = await serve_metrics(
            args.metrics_host, args.metrics_port, is_ready, runtime.heartbeat.alive
        )
    try:
        await kopf.operator(
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            standalone=args.standalone,
            # Naming a peering makes it mandatory in kopf, even when standalone.
            peering_name=None if args.standalone else args.peering,
            priority=priority,
            ready_flag=ready,
            stop_flag=stop,
            # Every handler receives the runtime (a shallow copy per object) as ``memo``.
            memo=runtime,
        )
    finally:
        if checker is not None:
            checker.cancel()
        permission_checker.cancel()
        runtime.api.shutdown()
        if side is not None:
            await side.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
