"""``channelapp run APP --autoscale MIN..MAX``: a protocol server and a worker pool on one machine.

The pool grows and shrinks from demand (arrival rate x handling time) and queue
wait with the same policy and signals the operator uses, like Celery's ``--autoscale``. Workers are separate processes sharing a
Redis layer; when ``CHANNELAPP_REDIS_URLS`` is not set and ``redis-server`` is
installed, a private one is started on a free loopback port and stopped on exit.
Scale-in sends SIGTERM, so a worker finishes what it holds before it exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from channelapp.autoscale.policy import ScalingPolicy, ScalingState, decide
from channelapp.autoscale.signals import LoadTracker, Sample
from channelapp.layer import RedisChannelLayer, ShardUnavailable
from channelapp.loading import load_app
from channelapp.settings import DEVELOPMENT_SECRET_KEY, Settings

log = logging.getLogger("channelapp.autoscale")


PR_SET_PDEATHSIG = 1  # linux/prctl.h

# Run in a new interpreter before the child's own program: has the kernel send SIGTERM to it
# when its parent dies (the setting survives exec), checks that the parent is still the one
# that started it (a parent that died meanwhile would go unnoticed), then execs the program.
_ARM_AND_EXEC = f"""
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl({PR_SET_PDEATHSIG}, int(signal.SIGTERM), 0, 0, 0)
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""


def dying_with_parent(cmd: Sequence[str]) -> list[str]:
    """``cmd``, run so that the child gets SIGTERM when this process dies.

    Without it a ``channelapp run`` killed with SIGKILL would leave its protocol server,
    workers and redis-server running (and the port served). SIGTERM lets them stop as on
    a normal shutdown. The death signal is set by a small interpreter that then execs
    ``cmd`` (same process), not by a ``preexec_fn``, which is unsafe once this process has
    threads. It follows the thread that started the child, so children are started from
    the main thread. ``cmd`` unchanged where there is no prctl (not Linux).
    """
    if not sys.platform.startswith("linux"):
        return list(cmd)
    executable = shutil.which(cmd[0]) or cmd[0]
    return [sys.executable, "-I", "-c", _ARM_AND_EXEC, str(os.getpid()), executable, *cmd[1:]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class WorkerPool:
    """Worker processes of one app; removed workers drain on SIGTERM."""

    app_path: str
    env: dict[str, str]
    running: list[subprocess.Popen[bytes]] = field(default_factory=list)
    draining: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def reap(self) -> None:
        self.running = [p for p in self.running if p.poll() is None]
        self.draining = [p for p in self.draining if p.poll() is None]

    def resize(self, replicas: int) -> None:
        while len(self.running) < replicas:
            cmd = [sys.executable, "-m", "channelapp", "worker", self.app_path]
            self.running.append(subprocess.Popen(dying_with_parent(cmd), env=self.env))
        while len(self.running) > replicas:
            proc = self.running.pop()
            proc.send_signal(signal.SIGTERM)
            self.draining.append(proc)

    def stop(self, timeout: float) -> None:
        self.resize(0)
        deadline = time.monotonic() + timeout
        for proc in self.draining:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.draining.clear()


async def read_sample(layer: RedisChannelLayer, channels: Sequence[str], at: float) -> Sample:
    """One read of everything the policy needs; raises ShardUnavailable when a shard is down."""
    reading = await layer.load(channels)
    if reading.failures:
        raise reading.failures[0]
    stats = reading.channels.values()
    return Sample(
        at=at,
        depth=sum(s["messages_pending"] for s in stats),
        oldest_age=max((s["messages_max_age"] for s in stats), default=0.0),
        sent=sum(s["messages_count"] + s["channel_full_count"] for s in stats),
        workers=reading.workers,
    )


async def scale_loop(
    layer: RedisChannelLayer,
    channels: Sequence[str],
    pool: WorkerPool,
    policy: ScalingPolicy,
    stop: asyncio.Event,
    interval: float = 0.5,
) -> None:
    state = ScalingState.starting_at(len(pool.running), time.monotonic())
    tracker = LoadTracker()
    while not stop.is_set():
        pool.reap()
        try:
            sample = await read_sample(layer, channels, time.monotonic())
        except ShardUnavailable as exc:
            log.warning("load unreadable, pool left at %d: %s", len(pool.running), exc)
        else:
            load = tracker.observe(sample)
            current = len(pool.running)
            decision = decide(policy, state, load, current, sample.at)
            if decision.changes(current):
                log.info("workers %d -> %d: %s", current, decision.replicas, decision.reason)
                pool.resize(decision.replicas)
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            pass


def run_local(
    app_path: str,
    host: str,
    port: int,
    min_workers: int,
    max_workers: int,
    *,
    target_depth: int = 10,
    scale_down_window: float = 10.0,
    target_utilization: float = 0.9,
    target_queue_wait: float = 0.5,
    concurrency: int | None = None,
) -> int:
    app = load_app(app_path)
    settings = Settings.from_env(app.settings)
    env = dict(os.environ)
    if concurrency is not None:
        env["CHANNELAPP_WORKER_CONCURRENCY"] = str(concurrency)
        settings.worker_concurrency = concurrency
    redis_proc: subprocess.Popen[bytes] | None = None
    workdir = None
    if not settings.redis_urls:
        redis_bin = shutil.which("redis-server")
        if redis_bin is None:
            print(
                "channelapp run: worker processes share a Redis layer; set CHANNELAPP_REDIS_URLS "
                "or install redis-server (or use `channelapp dev` for one process, no Redis)",
                file=sys.stderr,
            )
            return 2
        redis_port = _free_port()
        workdir = tempfile.mkdtemp(prefix="channelapp-run-")
        redis_proc = subprocess.Popen(
            dying_with_parent(
                [
                    redis_bin,
                    "--port",
                    str(redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    workdir,
                ]
            ),
            stdout=subprocess.DEVNULL,
        )
        env["CHANNELAPP_REDIS_URLS"] = f"redis://127.0.0.1:{redis_port}/0"
        settings.redis_urls = [env["CHANNELAPP_REDIS_URLS"]]
        wait_for_port(redis_port)
        log.info("started redis-server on 127.0.0.1:%d", redis_port)
    if settings.secret_key == DEVELOPMENT_SECRET_KEY:
        # Processes of one run share a key of their own; cookies do not outlive the run.
        env["CHANNELAPP_SECRET_KEY"] = secrets.token_urlsafe(32)
        log.info("no CHANNELAPP_SECRET_KEY set: this run signs cookies with a random key")
    policy = ScalingPolicy(
        min_replicas=min_workers,
        max_replicas=max_workers,
        target_depth=target_depth,
        scale_down_window=scale_down_window,
        target_utilization=target_utilization,
        target_queue_wait=target_queue_wait,
        concurrency=settings.worker_concurrency,
    )
    pool = WorkerPool(app_path, env)
    protocol = subprocess.Popen(
        dying_with_parent(
            [
                sys.executable,
                "-m",
                "channelapp",
                "protocol",
                app_path,
                "--host",
                host,
                "--port",
                str(port),
            ]
        ),
        env=env,
    )
    pool.resize(min_workers)
    log.info(
        "protocol server on http://%s:%d/, workers %d..%d", host, port, min_workers, max_workers
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        layer = RedisChannelLayer(
            settings.redis_urls, prefix=settings.key_prefix, password=settings.redis_password
        )

        async def watch_protocol() -> None:
            await asyncio.to_thread(protocol.wait)
            stop.set()

        watcher = asyncio.create_task(watch_protocol())
        try:
            await scale_loop(layer, app.channels, pool, policy, stop)
        finally:
            await layer.close()
            if protocol.poll() is None:
                protocol.send_signal(signal.SIGTERM)
            await watcher

    try:
        asyncio.run(main())
    finally:
        if protocol.poll() is None:
            protocol.send_signal(signal.SIGTERM)
        pool.stop(settings.shutdown_timeout + 5)
        try:
            protocol.wait(10)
        except subprocess.TimeoutExpired:
            protocol.kill()
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    log.info("protocol server exited with status %s", protocol.returncode)
    return exit_status(protocol.returncode)


def exit_status(returncode: int | None) -> int:
    """The protocol server's status as ours; ended by the SIGTERM of a shutdown counts as clean.

    A SIGTERM to the process group reaches the server directly as well as through
    us, and the second one can land after its handler is gone.
    """
    if returncode is None or returncode == -signal.SIGTERM:
        return 0
    return 128 - returncode if returncode < 0 else returncode


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:g}s")
