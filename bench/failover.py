"""How long the Redis layer stops sending when its master fails over (Redis Sentinel).

Each run starts a master, a replica and three sentinels on loopback (down-after-milliseconds
1000), sends through a ``redis+sentinel://`` URL from SENDERS coroutines, SIGKILLs the
master and measures the time from the kill to the first acknowledged send begun after it,
and to the sentinels naming the replica. It then counts the sends written before the
connection broke (they may have run) that were sent again with their receipts, those refused,
the messages delivered twice, and the acknowledged messages missing after the failover
(acknowledged by the old master, not yet replicated).

    python -m bench.failover [--runs 5] [--manual] [--min-replicas]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.common import machine, table
from devtools.sentinel import MASTER_NAME, SentinelGroup, sentinel_group

SENDERS = 4


async def one_run(group: SentinelGroup, *, manual: bool = False) -> dict[str, float]:
    """One failover under load: the master SIGKILLed, or (``manual``) demoted by ``SENTINEL
    FAILOVER`` while it stays up."""
    from channelapp.layer import RedisChannelLayer, ShardUnavailable

    layer = RedisChannelLayer([group.url(failover_timeout=30)], capacity=1_000_000, expiry=300)
    acked: dict[int, float] = {}  # message -> when its acknowledgement came
    began: dict[int, float] = {}  # message -> when its send began
    refused: set[int] = set()
    stop = asyncio.Event()

    async def sender(first: int) -> None:
        i = first
        while not stop.is_set():
            began[i] = time.monotonic()
            try:
                await layer.send("stream", {"type": "s", "i": i})
            except ShardUnavailable:
                refused.add(i)
            else:
                acked[i] = time.monotonic()
            i += SENDERS
            await asyncio.sleep(0.001)

    try:
        await layer.send("warm", {"type": "warm"})
        senders = [asyncio.create_task(sender(k)) for k in range(SENDERS)]
        await asyncio.sleep(1.0)
        if manual:
            with group.sentinels[0].client() as client:
                client.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
        else:
            group.kill_master()
        killed = time.monotonic()
        promoted = asyncio.create_task(asyncio.to_thread(group.wait_promoted))
        if manual:
            await asyncio.to_thread(group.wait_demoted)
        while not any(began[i] > killed for i in acked):
            await asyncio.sleep(0.005)
            if time.monotonic() - killed > 60:
                raise RuntimeError("no send was acknowledged within 60 s of the kill")
        resumed = min(t for i, t in acked.items() if began[i] > killed) - killed
        switched = await promoted
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*senders)
        received: list[int] = []
        while batch := await layer.receive_many(["stream"], 5000, timeout=1):
            received += [m["i"] for _, m in batch]
        got = set(received)
        return {
            "resumed": resumed,
            "promoted": switched,
            "refused": len(refused),
            "resent": layer.shards[0].resent_with_receipts,
            "twice": len(received) - len(got),
            "lost": len(set(acked) - got),
            "acked": len(acked),
        }
    finally:
        await layer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--manual", action="store_true", help="SENTINEL FAILOVER (the master stays up) not SIGKILL"
    )
    parser.add_argument(
        "--min-replicas", action="store_true", help="min-replicas-to-write 1 on the first master"
    )
    args = parser.parse_args()
    how = "SENTINEL FAILOVER" if args.manual else "SIGKILL of the master"
    print(f"# Sentinel failover, {how} ({machine()})")
    print(f"# down-after-milliseconds 1000, {SENDERS} senders, 1 ms between sends each")
    if args.min_replicas:
        print("# min-replicas-to-write 1 on the first master")
    results = []
    for run in range(args.runs):
        with sentinel_group() as group:
            if args.min_replicas:
                group.require_a_replica()
            result = asyncio.run(one_run(group, manual=args.manual))
        results.append(result)
        print(
            f"run {run + 1}: sending resumed {result['resumed']:.2f} s after the kill "
            f"(sentinels switched after {result['promoted']:.2f} s)",
            flush=True,
        )
    rows = [
        [
            str(i + 1),
            f"{r['resumed']:.2f}",
            f"{r['promoted']:.2f}",
            str(int(r["acked"])),
            str(int(r["resent"])),
            str(int(r["refused"])),
            str(int(r["twice"])),
            str(int(r["lost"])),
        ]
        for i, r in enumerate(results)
    ]
    resumed = [r["resumed"] for r in results]
    rows.append(
        [
            "median",
            f"{statistics.median(resumed):.2f}",
            f"{statistics.median(r['promoted'] for r in results):.2f}",
            "",
            "",
            "",
            "",
            "",
        ]
    )
    print()
    print(
        table(
            [
                "run",
                "kill -> first send acked (s)",
                "kill -> sentinels switched (s)",
                "acknowledged",
                "sent again (receipts)",
                "refused (may have run)",
                "delivered twice",
                "acknowledged, lost",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
