"""The Channels tutorial's chat, as the tutorial has you try it: two tabs of a real headless
Chromium on its room page, served by ``channelapp asgi mysite.asgi:application`` over a real
redis-server; what one tab sends appears in both (Debian's ``chromium`` driven by
playwright-core)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from devtools.redis import redis_servers
from tests.support.channels4 import APP, Site
from tests.support.chat_page import BROWSER, page_result

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.redis]

ROOT = BROWSER.parents[1]


def test_two_tabs_chat_in_the_tutorials_room_page(tmp_path: Path) -> None:
    artifacts = Path(os.environ.get("CHANNELAPP_ARTIFACTS", ROOT / "artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    screenshot = artifacts / "channels4-tutorial-two-tabs.png"
    screenshot.unlink(missing_ok=True)
    node = shutil.which("node")
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium")
    assert node and chromium, "node and Debian's chromium are installed by .ci/run"
    with redis_servers(1) as (redis,):
        prefix = f"mysite{secrets.token_hex(4)}"
        env = {
            "CHANNELAPP_REDIS_URLS": redis.url,
            "CHANNELAPP_KEY_PREFIX": prefix,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "MYSITE_DATABASE": str(tmp_path / "db.sqlite3"),
        }
        site = Site(redis, prefix, env, tmp_path)
        try:
            server = site.start("asgi", APP)
            done = subprocess.run(
                [node, str(BROWSER / "tutorial_chat.mjs"), server.url, "lobby", str(screenshot)],
                capture_output=True,
                text=True,
                cwd=BROWSER,
                env={**os.environ, "CHROMIUM": chromium},
                timeout=120,
            )
        finally:
            site.stop()
    assert done.returncode == 0, done.stdout + done.stderr + server.log()
    result = page_result(done.stdout)
    assert result["ok"]
    assert result["text"] in result["aliceLog"] and result["reply"] in result["aliceLog"]
    # The page logs "Chat socket closed unexpectedly" when its socket closes (the favicon's
    # 404 is the one other error the tutorial's page shows).
    assert [e for e in result["errors"] if "favicon" not in e and "404" not in e] == []
    assert screenshot.stat().st_size > 1000
