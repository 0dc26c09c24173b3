"""The ChannelApp CRD and the operator run as a real process against a cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from devtools.kube import KubeCluster
from devtools.paths import REPO
from devtools.polling import wait_for
from devtools.procs import free_port

ROOT = REPO
CRD = ROOT / "operator" / "crd" / "channelapps.yaml"
EXAMPLES = ROOT / "examples"


def load_example(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


class OperatorProcess:
    """``python -m channelapp_operator`` against the test cluster, logging to a file."""

    def __init__(
        self,
        cluster: KubeCluster,
        namespace: str,
        log_dir: Path,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.log_path = log_dir / f"operator-{namespace}.log"
        self.metrics_port = free_port()
        self.extra_env = env or {}
        self.args = args if args is not None else ["--standalone", "--namespace", namespace]
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, wait_ready: bool = True) -> OperatorProcess:
        env = {**self.cluster.env, **self.extra_env, "PYTHONUNBUFFERED": "1"}
        argv = [
            sys.executable, "-m", "channelapp_operator",
            *self.args,
            "--metrics-host", "127.0.0.1", "--metrics-port", str(self.metrics_port),
        ]  # fmt: skip
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT
        )
        log.close()
        self.starts += 1
        if wait_ready:
            wait_for(self._ready, 60, what="operator /readyz")
        return self

    def _ready(self) -> bool:
        return self.probe("/readyz") == 200

    def probe(self, path: str) -> int | None:
        """HTTP status of /healthz or /readyz; None while nothing listens."""
        import urllib.error
        import urllib.request

        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"operator exited {self.proc.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}{path}", timeout=2
            ) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return None

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2
        ) as r:
            return str(r.read().decode())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()
