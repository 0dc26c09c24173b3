"""The ``channelapp`` command as a newcomer meets it: --version, defaults in --help, and an
app module in the current directory (real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import channelapp

# What the installed console script runs; -P keeps the current directory off sys.path, as
# a console script's own sys.path does.
CONSOLE_SCRIPT = [sys.executable, "-P", "-c", "import sys; from channelapp.cli import main; sys.exit(main())"]  # fmt: skip


def channelapp_cmd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANNELAPP_")}
    return subprocess.run(
        [*CONSOLE_SCRIPT, *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env
    )


def test_version() -> None:
    result = channelapp_cmd("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"channelapp {channelapp.__version__}"


def test_help_shows_defaults() -> None:
    run_help = channelapp_cmd("run", "--help").stdout
    assert "(default: 8000)" in run_help and "(default: 127.0.0.1)" in run_help
    assert "(default: 1..1)" in run_help and "(default: 10)" in run_help
    worker_help = channelapp_cmd("worker", "--help").stdout
    assert "(default: 0)" in worker_help and "None" not in worker_help


def test_an_app_in_the_current_directory_is_imported(tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text("from channelapp.application import App\napp = App([])\n")
    result = channelapp_cmd("protocol", "myapp:app", cwd=tmp_path)
    # Imported: it got as far as the settings check (no Redis URL set).
    assert "cannot import" not in result.stderr, result.stderr
    assert "CHANNELAPP_REDIS_URLS" in result.stderr and result.returncode == 2
