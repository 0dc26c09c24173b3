"""Readiness follows the channel layer: LayerProbe over a real redis-server that goes away and
comes back, a layer that does not answer in time, and failures reported by callers."""

from __future__ import annotations

import asyncio
import logging

import pytest
from channelapp.health import LayerProbe
from channelapp.layer import InMemoryChannelLayer, RedisChannelLayer

from devtools.redis import RedisServer


def logged(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "channelapp.health"]


async def test_unchecked_is_not_ready() -> None:
    probe = LayerProbe(InMemoryChannelLayer())
    assert probe.problem == "channel layer not checked yet" and not probe.checked


@pytest.mark.redis
async def test_follows_a_real_shard_down_and_up(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    layer = RedisChannelLayer([redis_server.url], connect_timeout=0.5, socket_timeout=1.0)
    probe = LayerProbe(layer, interval=0.05, timeout=3.0)
    caplog.set_level(logging.INFO, "channelapp.health")
    try:
        await probe.check()
        assert probe.checked and probe.problem is None
        assert logged(caplog) == [(logging.INFO, "channel layer available")]

        redis_server.stop()
        await probe.check()
        problem = probe.problem
        assert problem and f"127.0.0.1:{redis_server.port}" in problem, problem
        await probe.check()  # still down: logged once, not per check
        assert [lvl for lvl, _ in logged(caplog)] == [logging.INFO, logging.ERROR]

        redis_server.start()
        runner = asyncio.create_task(probe.run())
        try:
            async with asyncio.timeout(15):
                while probe.problem is not None:
                    await asyncio.sleep(0.05)
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        assert logged(caplog)[-1] == (logging.INFO, "channel layer available")
    finally:
        await layer.close()


class Hanging(InMemoryChannelLayer):
    """A layer whose check never answers (a shard that accepts and then says nothing)."""

    async def unavailable(self) -> list[str]:
        await asyncio.Event().wait()
        return []


class Failing(InMemoryChannelLayer):
    def __init__(self, problems: list[str]) -> None:
        super().__init__()
        self.problems = problems

    async def unavailable(self) -> list[str]:
        return self.problems


async def test_no_answer_in_time_is_a_problem() -> None:
    probe = LayerProbe(Hanging(), timeout=0.2)
    await asyncio.wait_for(probe.check(), 5)
    assert probe.problem == "no answer within 0.2s" and probe.checked


@pytest.mark.parametrize(
    ("problems", "want"),
    [
        ([], None),
        (["shard 0 down"], "shard 0 down"),
        (["shard 0 down", "shard 2 down"], "shard 0 down; shard 2 down"),
    ],
)
async def test_problems_are_joined(problems: list[str], want: str | None) -> None:
    probe = LayerProbe(Failing(problems))
    await probe.check()
    assert probe.problem == want


async def test_a_reported_failure_holds_until_the_next_check(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "channelapp.health")
    probe = LayerProbe(InMemoryChannelLayer())
    await probe.check()
    assert probe.problem is None
    probe.failed(ConnectionError("send to shard 1 failed"))
    assert probe.problem == "send to shard 1 failed"
    probe.failed(ConnectionError("send to shard 1 failed"))  # the same: not logged again
    await probe.check()
    assert probe.problem is None
    assert logged(caplog) == [
        (logging.INFO, "channel layer available"),
        (logging.ERROR, "channel layer unavailable: send to shard 1 failed"),
        (logging.INFO, "channel layer available"),
    ]
