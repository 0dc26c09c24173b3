"""channelapp protocol servers and workers as real processes, for end-to-end tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from devtools.paths import REPO
from devtools.procs import free_port

ROOT = REPO
TEST_SECRET_KEY = "tests-own-key-N4xq8ZmT2vLk9RbW7cJ3"


class ChannelappProcess:
    """``python -m channelapp ARGV...`` in ``cwd``, its output in a log file; ready once its
    ``/readyz`` on ``port`` answers 200."""

    def __init__(
        self, argv: list[str], env: dict[str, str], log_path: Path, port: int, cwd: Path = ROOT
    ) -> None:
        self.argv = argv
        self.env = {**env, "PYTHONUNBUFFERED": "1"}
        self.log_path = log_path
        self.port = port
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "channelapp", *self.argv],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.cwd,
            )
        what = " ".join(self.argv[:2])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{what} exited {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"{what} not ready in 30s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGTERM)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 30 s; the exit code (None if it was never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


class AppProcess(ChannelappProcess):
    """``python -m channelapp protocol|worker APP`` with its output kept in a log file."""

    def __init__(
        self, role: str, app: str, env: dict[str, str], log_dir: Path, port: int | None = None
    ) -> None:
        self.role = role
        self.app = app
        port = port or free_port()
        argv = [role, app]
        if role == "protocol":
            argv += ["--host", "127.0.0.1", "--port", str(port)]
        else:
            argv += ["--metrics-host", "127.0.0.1", "--metrics-port", str(port)]
        # Protocol servers and workers refuse the built-in development key.
        super().__init__(
            argv,
            {**os.environ, "CHANNELAPP_SECRET_KEY": TEST_SECRET_KEY, **env},
            log_dir / f"{role}-{port}.log",
            port,
        )


@contextmanager
def running(*procs: AppProcess) -> Iterator[tuple[AppProcess, ...]]:
    started: list[AppProcess] = []
    try:
        for p in procs:
            started.append(p.start())
        yield procs
    finally:
        for p in reversed(started):
            p.stop()
