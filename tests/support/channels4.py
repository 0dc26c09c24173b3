"""The Channels 4 tutorial's project (examples/channels4/mysite) as channelapp processes:
``python -m channelapp asgi|runworker mysite.asgi:application ...`` in the project's directory,
over a real redis-server (tests/e2e/test_channels4_project.py, tests/browser)."""

from __future__ import annotations

import os
from pathlib import Path

from channelapp.channels import RedisChannelLayer

from devtools.processes import ChannelappProcess
from devtools.procs import free_port
from devtools.redis import RedisServer

PROJECT = Path(__file__).resolve().parents[2] / "examples" / "channels4" / "mysite"
APP = "mysite.asgi:application"


class ProjectProcess(ChannelappProcess):
    """``python -m channelapp asgi|runworker mysite.asgi:application ...`` in the project's
    directory, its output in a log file; ready once its /readyz answers 200."""

    def __init__(self, argv: list[str], env: dict[str, str], logs: Path) -> None:
        port = free_port()
        argv = [*argv, "--metrics-port" if argv[0] == "runworker" else "--port", str(port)]
        super().__init__(
            argv, {**os.environ, **env}, logs / f"{argv[0]}-{port}.log", port, cwd=PROJECT
        )


class Site:
    def __init__(self, redis: RedisServer, prefix: str, env: dict[str, str], logs: Path) -> None:
        self.redis = redis
        self.prefix = prefix
        self.env = env
        self.logs = logs
        self.procs: list[ProjectProcess] = []

    def start(self, *argv: str) -> ProjectProcess:
        proc = ProjectProcess(list(argv), self.env, self.logs).start()
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def layer(self) -> RedisChannelLayer:
        """A layer of the project's own kind, as the project's processes have it."""
        return RedisChannelLayer(hosts=[self.redis.url], prefix=self.prefix)
