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

from devtools.paths import REPO
from devtools.procs import free_port

ROOT = REPO
TEST_SECRET_KEY = "tests-own-key-N4xq8ZmT2vLk9RbW7cJ3"


class AppProcess:
    """``python -m channelapp protocol|worker APP`` with its output kept in a log file."""

    def __init__(
        self, role: str, app: str, env: dict[str, str], log_dir: Path, port: int | None = None
    ) -> None:
        self.role = role
        self.app = app
        # Protocol servers and workers refuse the built-in development key.
        self.env = {
            **os.environ,
            "CHANNELAPP_SECRET_KEY": TEST_SECRET_KEY,
            **env,
            "PYTHONUNBUFFERED": "1",
        }
        self.port = port or free_port()
        self.log_path = log_dir / f"{role}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AppProcess:
        argv = [sys.executable, "-m", "channelapp", self.role, self.app]
        if self.role == "protocol":
            argv += ["--host", "127.0.0.1", "--port", str(self.port)]
        else:
            argv += ["--metrics-host", "127.0.0.1", "--metrics-port", str(self.port)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=ROOT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.role} exited {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"{self.role} not ready in 30s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGTERM)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


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
