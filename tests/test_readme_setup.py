"""The README's set-up commands, run as written: `make run` serves the chat example with no Redis
and no cluster; `bash .ci/run` is what CI runs and it calls the README's test command."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import tomllib
import urllib.request
from pathlib import Path

from devtools.procs import free_port

ROOT = Path(__file__).resolve().parents[1]


def setup_block() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"## Set up.*?```bash\n(.*?)```", text, re.S)
    assert m, "README has a Set up section with a bash block"
    return m.group(1)


def make_n(target: str) -> str:
    """The commands ``make TARGET`` would run for a checkout without its virtualenv yet."""
    # Run by `make test`, the suite is inside a make: without this the inner make prints
    # "Entering directory" lines around the commands.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", target, "VENV=/nonexistent/venv"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_readme_names_the_two_commands_and_ci_runs_the_test_command() -> None:
    block = setup_block()
    assert "make install && make run" in block
    assert "bash .ci/run" in block
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)
    assert re.search(r"^make install-dev$", ci, re.M)
    assert "python3-venv" in ci  # Debian's python3 has no venv module without it


def test_install_uses_a_virtualenv_and_only_the_runtime() -> None:
    """Debian's python3 refuses system-wide pip installs; `make run` needs no extras."""
    install = make_n("install")
    assert "-m venv /nonexistent/venv" in install
    assert "/nonexistent/venv/bin/python -m pip install" in install
    assert install.rstrip().endswith("-e .")  # no extras
    assert "-e '.[operator,test,bench]'" in make_n("install-dev")
    runtime = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    heavy = ("django", "channels", "daphne", "twisted", "kopf", "kubernetes")
    assert not [d for d in runtime if d.lower().startswith(heavy)], runtime


def test_make_run_serves_the_chat_example_without_redis_or_cluster() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANNELAPP_")}
    proc = subprocess.Popen(
        ["make", "run", f"PORT={port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        body = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    body = r.read().decode()
                    break
            except OSError:
                time.sleep(0.1)
        assert "channelapp chat" in body
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/rooms/lobby/", timeout=5) as r:
            assert b'"group": "chat.lobby"' in r.read()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def test_lint_type_checks_the_runtime_and_the_operator_strictly() -> None:
    assert "-m mypy" in make_n("lint")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config["strict"] is True
    # The dev tooling the Makefile, tests and benchmarks import is held to the same standard.
    assert config["files"] == ["app/channelapp", "operator/channelapp_operator", "devtools"]


def test_make_install_works_with_debians_own_python3(tmp_path: Path) -> None:
    """Debian 12's python3 is externally managed (pip refuses it); `make install` makes a
    virtualenv with it and installs the runtime alone, which then runs."""
    debian = Path("/usr/bin/python3")
    assert debian.exists(), "Debian's python3 (CI runs on Debian)"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    venv = tmp_path / "venv"
    make = subprocess.run(
        ["make", "install", f"SYSTEM_PYTHON={debian}", f"VENV={venv}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert make.returncode == 0, make.stdout + make.stderr
    version = subprocess.run(
        [venv / "bin" / "python", "-m", "channelapp", "--version"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert version.stdout.startswith("channelapp "), version.stderr
    listed = subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "list", "--format=freeze"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.lower()
    installed = {line.split("==")[0] for line in listed.splitlines()}
    assert not installed & {"django", "channels", "daphne", "twisted", "kopf", "kubernetes"}
    assert len(installed) < 30, sorted(installed)
