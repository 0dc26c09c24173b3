"""The chat example used as a person would: two tabs of a real headless Chromium.

Debian's ``chromium`` driven by playwright-core (npm, no browser download); the page is
served by a real protocol server, messages go through Redis and a real worker.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import AppProcess, running
from tests.support.redis_fixtures import RedisServer

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.redis]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHAT = "channelapp.examples.chat:app"


def test_message_typed_in_one_tab_appears_in_the_other(
    redis_shards: list[RedisServer], tmp_path: Path
) -> None:
    node = shutil.which("node")
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium")
    assert node and chromium, "node and Debian's chromium are installed by .ci/run"
    assert (HERE / "node_modules" / "playwright-core").is_dir(), "run: npm ci in tests/browser"
    artifacts = Path(os.environ.get("CHANNELAPP_ARTIFACTS", ROOT / "artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    screenshot = artifacts / "chat-two-tabs.png"
    screenshot.unlink(missing_ok=True)
    env = {"CHANNELAPP_REDIS_URLS": ",".join(s.url for s in redis_shards)}
    proto = AppProcess("protocol", CHAT, env, tmp_path)
    with running(proto, AppProcess("worker", CHAT, env, tmp_path)):
        proc = subprocess.run(
            [node, str(HERE / "chat.mjs"), proto.url, str(screenshot)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=HERE,
            env={**os.environ, "CHROMIUM": chromium},
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["text"] in result["bobLog"]
    assert "alice" in result["bobLog"]
    assert result["refused"].startswith("cannot join: room names are"), result["refused"]
    assert result["labels"] == ["user", "room", "message"]
    assert screenshot.stat().st_size > 1000
