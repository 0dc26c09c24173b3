"""A protocol server started without an app (as the operator runs it): it imports nothing of
the app, and takes the app's settings from what the app's workers publish, live, with no
restart (real processes over a real redis-server)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from devtools.processes import ROOT, TEST_SECRET_KEY, AppProcess, ChannelappProcess, running
from devtools.procs import free_port
from devtools.redis import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

PARTNER = "tests.e2e.partner_app:app"
ORIGIN = "https://partner.example"

# Loaded by every Python process whose PYTHONPATH starts with its directory: on exit, the
# names of the modules the process imported go to $MODULES_OUT.
SITECUSTOMIZE = """\
import atexit, os, sys

def _dump():
    with open(os.environ["MODULES_OUT"], "w") as out:
        out.write("\\n".join(sorted(sys.modules)))

atexit.register(_dump)
"""


class Protocol(ChannelappProcess):
    """``python -m channelapp protocol [APP] --host 127.0.0.1 --port N``, output in a log; no
    CHANNELAPP_ setting of the test's own env leaks in."""

    def __init__(self, env: dict[str, str], log_dir: Path, app: str | None = None) -> None:
        port = free_port()
        argv = ["protocol", *([app] if app else []), "--host", "127.0.0.1", "--port", str(port)]
        clean = {k: v for k, v in os.environ.items() if not k.startswith("CHANNELAPP_")}
        super().__init__(
            argv,
            {**clean, "CHANNELAPP_SECRET_KEY": TEST_SECRET_KEY, **env},
            log_dir / f"protocol-{port}.log",
            port,
        )


def imported_by_a_protocol_server(
    redis_server: RedisServer, tmp_path: Path, app: str | None
) -> set[str]:
    site = tmp_path / f"site-{app is None}"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    out = tmp_path / f"modules-{app is None}.txt"
    env = {
        "CHANNELAPP_REDIS_URLS": redis_server.url,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", ""), str(ROOT)]),
        "MODULES_OUT": str(out),
    }
    proto = Protocol(env, tmp_path, app).start()
    assert proto.stop() == 0, proto.log()
    return set(out.read_text().split())


def test_a_protocol_server_without_an_app_imports_none(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with_app = imported_by_a_protocol_server(redis_server, tmp_path, PARTNER)
    assert "tests.e2e.partner_app" in with_app and "channelapp.examples.echo" in with_app
    without = imported_by_a_protocol_server(redis_server, tmp_path, None)
    assert "channelapp.server.protocol" in without  # it served
    app_modules = {m for m in without if m.startswith(("tests", "channelapp.examples", "django"))}
    assert not app_modules, app_modules


@pytest.fixture
def protocol_without_app(redis_server: RedisServer, tmp_path: Path) -> Iterator[Protocol]:
    proto = Protocol({"CHANNELAPP_REDIS_URLS": redis_server.url}, tmp_path).start()
    try:
        yield proto
    finally:
        proto.stop()


async def handshake_status(url: str) -> int:
    """101 when a socket from the partner's pages opens (and echoes), else the refusal."""
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(f"{url}/ws/echo/", headers={"Origin": ORIGIN})
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        await ws.send_str("hello")
        assert (await asyncio.wait_for(ws.receive(), 10)).data == "hello"
        await ws.close()
        return 101


async def test_an_origin_is_allowed_once_the_apps_workers_have_published_it(
    protocol_without_app: Protocol, redis_server: RedisServer, tmp_path: Path
) -> None:
    proto = protocol_without_app
    assert proto.proc is not None
    pid = proto.proc.pid
    # Defaults: pages of this machine only.
    assert await handshake_status(proto.url) == 403
    env = {"CHANNELAPP_REDIS_URLS": redis_server.url}
    with running(AppProcess("worker", PARTNER, env, tmp_path)):
        deadline = time.monotonic() + 15
        status = await handshake_status(proto.url)
        while status != 101 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            status = await handshake_status(proto.url)
        assert status == 101, proto.log()
    # The same process throughout: no restart.
    assert proto.proc.poll() is None and proto.proc.pid == pid
    assert "protocol settings from the app's workers" in proto.log()
    assert "allowed_origins" in proto.log()
