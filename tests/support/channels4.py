"""The Channels 4 tutorial's project (examples/channels4/mysite) as channelapp processes:
``python -m channelapp asgi|runworker mysite.asgi:application ...`` in the project's directory,
over a real redis-server (tests/e2e/test_channels4_project.py, tests/browser)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from channelapp.channels import RedisChannelLayer

from devtools.procs import free_port
from devtools.redis import RedisServer

PROJECT = Path(__file__).resolve().parents[2] / "examples" / "channels4" / "mysite"
APP = "mysite.asgi:application"


class ProjectProcess:
    """``python -m channelapp asgi|runworker mysite.asgi:application ...`` in the project's
    directory, its output in a log file; ready once its /readyz answers 200."""

    def __init__(self, argv: list[str], env: dict[str, str], logs: Path) -> None:
        self.port = free_port()
        self.argv = [
            *argv,
            "--metrics-port" if argv[0] == "runworker" else "--port",
            str(self.port),
        ]
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_path = logs / f"{argv[0]}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ProjectProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "channelapp", *self.argv],
                env=self.env,
                cwd=PROJECT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.argv} exited {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"{self.argv} not ready in 30s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGTERM)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


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
