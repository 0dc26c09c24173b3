"""The chat example used as a person would: two tabs of a real headless Chromium.

Debian's ``chromium`` driven by playwright-core (npm, no browser download); the page is
served by a real protocol server, messages go through Redis and a real worker. The protocol
server is then restarted (SIGTERM: 1012) and both tabs rejoin their room on their own.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devtools.processes import AppProcess, running
from devtools.redis import RedisServer
from tests.support.chat_page import page_result, start_chat_page

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.redis]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHAT = "channelapp.examples.chat:app"


def test_message_typed_in_one_tab_appears_in_the_other_and_tabs_rejoin_after_a_restart(
    redis_shards: list[RedisServer], tmp_path: Path
) -> None:
    artifacts = Path(os.environ.get("CHANNELAPP_ARTIFACTS", ROOT / "artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    screenshot = artifacts / "chat-two-tabs.png"
    screenshot.unlink(missing_ok=True)
    env = {"CHANNELAPP_REDIS_URLS": ",".join(s.url for s in redis_shards)}
    proto = AppProcess("protocol", CHAT, {**env, "CHANNELAPP_DRAIN_SECONDS": "1"}, tmp_path)
    successor = AppProcess("protocol", CHAT, env, tmp_path, port=proto.port)
    with running(proto, AppProcess("worker", CHAT, env, tmp_path)):
        page = start_chat_page(proto.url, screenshot, "restart")
        try:
            assert page.stdout is not None and page.stdin is not None
            before = page.stdout.readline()  # both tabs chatted; then the server restarts
            assert before.strip() == "RESTART", before + page.communicate(timeout=30)[1]
            # A runtime upgrade: the old server closes its sockets with 1012 and exits, a new
            # one takes its place; the page reconnects on its own.
            proto.terminate()
            assert proto.wait(30) == 0
            with running(successor):
                page.stdin.write("restarted\n")
                page.stdin.flush()
                out, err = page.communicate(timeout=120)
        finally:
            if page.poll() is None:
                page.kill()
                page.wait()
    assert page.returncode == 0, out + err
    result = page_result(out)
    assert result["ok"] and result["text"] in result["bobLog"]
    assert "alice" in result["bobLog"]
    assert result["refused"].startswith("cannot join: room names are"), result["refused"]
    assert result["labels"] == ["user", "room", "message"]
    # Rejoined after the restart, and the room works again.
    assert result["again"] and result["again"] in result["bobLog"]
    assert "rejoined browsers" in result["bobLog"]
    assert screenshot.stat().st_size > 1000
