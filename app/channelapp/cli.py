"""The ``channelapp`` command: protocol, worker, dev, run, asgi and runworker."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
from typing import Any

from channelapp import __version__, event_loop, sync
from channelapp.application import App
from channelapp.loading import AppLoadError, load_app
from channelapp.settings import Settings, check_values
from channelapp.startup import StartupError

ASGI_PREFIX = "asgi:"


def _autoscale(value: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)\.\.(\d+)", value)
    if not m or int(m.group(1)) > int(m.group(2)) or int(m.group(2)) < 1:
        raise argparse.ArgumentTypeError(
            f"expected MIN..MAX with MIN <= MAX and MAX >= 1, got {value!r}"
        )
    return int(m.group(1)), int(m.group(2))


def _port(value: str) -> int:
    if not value.isdigit() or int(value) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0..65535, got {value!r}")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.ArgumentDefaultsHelpFormatter  # every option's help shows its default
    parser = argparse.ArgumentParser(
        prog="channelapp", description="Channels-style realtime apps.", formatter_class=formatter
    )
    parser.add_argument("--version", action="version", version=f"channelapp {__version__}")
    parser.add_argument("--log-level", default="INFO", help="logging level")
    sub = parser.add_subparsers(dest="command", required=True)

    app_help = (
        "the app object, as package.module:attribute, or a Django project, as "
        "django:mysite.settings (imported from the current directory too)"
    )

    def app_cmd(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, formatter_class=formatter)
        p.add_argument("app", help=app_help)
        return p

    def listen(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", default="127.0.0.1", help="address to listen on")
        p.add_argument("--port", type=_port, default=8000, help="port to listen on")

    protocol_help = "run a protocol server (HTTP and WebSocket)"
    p = sub.add_parser(
        "protocol", help=protocol_help, description=protocol_help, formatter_class=formatter
    )
    p.add_argument(
        "app",
        nargs="?",
        default=None,
        help=f"{app_help}; without it (as the operator runs it) nothing of the app is imported: "
        "its settings are the environment's, with those the app's workers publish",
    )
    listen(p)

    p = app_cmd("worker", "run a worker")
    p.add_argument("--metrics-host", default="127.0.0.1", help="address of /metrics")
    p.add_argument("--metrics-port", type=_port, default=0, help="serve /metrics here (0: off)")
    p.add_argument(
        "--concurrency",
        type=int,
        default=argparse.SUPPRESS,
        help="messages handled at once (default: CHANNELAPP_WORKER_CONCURRENCY, else 64)",
    )

    listen(app_cmd("dev", "protocol server and worker in one process, in-memory layer (no Redis)"))

    asgi_help = (
        "the ASGI application, as package.module:attribute (asgi:package.module:attribute "
        "too), e.g. a Channels 4 project's mysite.asgi:application"
    )
    serve_help = (
        "serve an ASGI 3 application in this process (HTTP, WebSocket, lifespan) with the "
        "protocol server's limits; a Channels project's CHANNEL_LAYERS is pointed at "
        "CHANNELAPP_REDIS_URLS when set"
    )
    p = sub.add_parser("asgi", help=serve_help, description=serve_help, formatter_class=formatter)
    p.add_argument("app", help=asgi_help)
    listen(p)

    runworker_help = (
        "Channels' runworker: consume the named channels through the project's "
        "ChannelNameRouter, report load for the autoscaler, drain on SIGTERM"
    )
    p = sub.add_parser(
        "runworker", help=runworker_help, description=runworker_help, formatter_class=formatter
    )
    p.add_argument("app", help=asgi_help)
    p.add_argument("channels", nargs="+", metavar="CHANNEL", help="channel names to consume")
    p.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="application instances per channel, each handling one message at a time",
    )
    p.add_argument("--metrics-host", default="127.0.0.1", help="address of /metrics")
    p.add_argument("--metrics-port", type=_port, default=0, help="serve /metrics here (0: off)")

    p = app_cmd("run", "a protocol server and a pool of worker processes on this machine")
    listen(p)
    p.add_argument(
        "--autoscale",
        type=_autoscale,
        default="1..1",
        metavar="MIN..MAX",
        help="grow and shrink the worker pool from demand and queue wait",
    )
    p.add_argument(
        "--target-utilization",
        type=float,
        default=0.9,
        help="share of the workers' capacity the steady demand may use",
    )
    p.add_argument(
        "--target-wait",
        type=float,
        default=0.5,
        help="seconds within which waiting messages should be drained",
    )
    p.add_argument(
        "--target-depth",
        type=int,
        default=10,
        help="waiting messages per worker until a handling time is measured",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="messages each worker runs at once (unset: the app's setting)",
    )
    p.add_argument(
        "--scale-down-window",
        type=float,
        default=10.0,
        help="seconds of lower need before workers are removed",
    )
    return parser


def _importable_from_cwd() -> None:
    """Let ``channelapp dev myapp:app`` import ``myapp`` from the current directory, as
    ``python -m`` and uvicorn do (a console script's sys.path starts with its bin directory)."""
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    _importable_from_cwd()
    if args.command in ("asgi", "runworker"):
        try:
            return _run_asgi(args)
        except AppLoadError as exc:
            print(f"channelapp: {exc}", file=sys.stderr)
            return 2
        except StartupError as exc:
            print(f"channelapp {args.command}: {exc}", file=sys.stderr)
            return 2
    app = None
    if args.app is not None:  # `channelapp protocol` runs without one
        try:
            app = load_app(args.app)
        except AppLoadError as exc:
            print(f"channelapp: {exc}", file=sys.stderr)
            return 2
    try:
        return _run(args, app)
    except StartupError as exc:
        # Settings (CHANNELAPP_*), Redis URLs, ports: one line, no traceback.
        print(f"channelapp {args.command}: {exc}", file=sys.stderr)
        return 2


def _exit_past_stuck_threads() -> None:
    """A sync consumer still running after the worker stopped (it outlived the shutdown
    timeout) cannot be stopped, and the interpreter would wait for its thread forever at
    exit: the process exits without it."""
    stuck = sync.busy_threads()
    if stuck:
        logging.getLogger("channelapp.worker").error(
            "stopping: %d sync consumer(s) still running past the shutdown timeout; "
            "exiting without them",
            stuck,
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def load_asgi(target: str) -> Any:
    """The ASGI application named ``package.module:attribute`` (``asgi:`` before it too)."""
    path = target.removeprefix(ASGI_PREFIX)
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise AppLoadError(
            f"an ASGI application is named as 'package.module:attribute', got {target!r}"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppLoadError(f"cannot import {module_name!r} (from {target!r}): {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise AppLoadError(f"{target!r} is not an ASGI application (not callable)")
    return obj


def _asgi_settings() -> Settings:
    try:
        settings = Settings.from_env()
        check_values(settings)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    return settings


def _run_asgi(args: argparse.Namespace) -> int:
    """``channelapp asgi`` and ``channelapp runworker``: the application is imported first
    (a Django project configures itself), then a Channels project's layer is pointed."""
    settings = _asgi_settings()
    application = load_asgi(args.app)
    # A Channels project: its module imported Channels and configured Django's settings.
    conf = sys.modules.get("django.conf")
    channels_project = "channels" in sys.modules and bool(
        conf is not None and conf.settings.configured
    )
    if channels_project:
        from channelapp import channels_project as project

        try:
            project.point_channel_layers(settings)
            settings = project.server_settings(settings)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
    if args.command == "runworker":
        if not channels_project:
            raise StartupError(
                f"{args.app!r} is not a Channels project (it configured no Django settings with Channels)"
            )
        from channelapp.channels_worker import run_channel_worker_async

        event_loop.run(
            run_channel_worker_async(
                application,
                args.channels,
                settings,
                concurrency=args.concurrency,
                metrics_host=args.metrics_host,
                metrics_port=args.metrics_port,
            )
        )
        return 0
    from channelapp.server.asgi_host import run_asgi_async

    event_loop.run(run_asgi_async(application, settings, args.host, args.port))
    return 0


def _run(args: argparse.Namespace, app: App | None) -> int:
    if args.command == "protocol":
        from channelapp.server.protocol import run_protocol_async

        event_loop.run(run_protocol_async(app, args.host, args.port))
        return 0
    assert app is not None  # every other command names its app
    if args.command == "worker":
        from channelapp.worker.main import run_worker_async

        event_loop.run(
            run_worker_async(
                app,
                metrics_host=args.metrics_host,
                metrics_port=args.metrics_port,
                concurrency=getattr(args, "concurrency", None),
            )
        )
        _exit_past_stuck_threads()
    elif args.command == "dev":
        from channelapp.dev import run_dev_async

        event_loop.run(run_dev_async(app, args.host, args.port))
        _exit_past_stuck_threads()
    elif args.command == "run":
        from channelapp.autoscale.local import run_local

        low, high = args.autoscale
        return run_local(
            args.app,
            args.host,
            args.port,
            low,
            high,
            target_depth=args.target_depth,
            scale_down_window=args.scale_down_window,
            target_utilization=args.target_utilization,
            target_queue_wait=args.target_wait,
            concurrency=args.concurrency,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
